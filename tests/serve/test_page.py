"""The page at `/`, in a real browser (Debian's Chromium under Playwright) against a real
`singleshot serve` process on 127.0.0.1: an uploaded scene's table equals `singleshot detect
--json` on the file, the confidence slider and a class filter re-run it, a non-image shows the
server's 415, the API key field, the fake webcam with at most one request in flight, phone
width; a screenshot of each state, and no console errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app
from test_server import serve_process

ARTIFACTS = Path(os.environ.get("SINGLESHOT_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "runs" / "test-artifacts"))


def _serve(*extra):
    # the server's detector as `detect`'s defaults, so that the two documents can be compared
    proc, url = serve_process("--no-grpc", "--backend", "onnxruntime", "--preprocess", "card",
                              *extra)
    return proc, "http://" + url + "/"


@pytest.fixture(scope="module")
def served():
    proc, url = _serve()
    yield url
    proc.terminate()
    proc.wait(timeout=60)


class Console:
    """Console errors and uncaught exceptions of a page; ``expect(status)`` lets the browser's
    own line for one expected HTTP error status through."""

    def __init__(self, page):
        self.errors, self.allowed = [], set()
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def expect(self, status: int) -> None:
        self.allowed.add(f"status of {status}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


def _wait(page, expression: str, timeout_s: float = 30.0) -> None:
    """Until ``expression`` is true in the page. Polled from here with ``evaluate``: the page's
    Content-Security-Policy (no eval) refuses Playwright's own wait_for_function, and the
    tests keep that policy on, as users get it."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true within {timeout_s} s: {expression}"
        time.sleep(0.05)


def _rows(page):
    return page.eval_on_selector_all("#table tbody tr", "rows => rows.map(r => "
                                     "[...r.cells].map(c => c.textContent))")


def _shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)


def _detect(path, *extra):
    res = CliRunner().invoke(app, ["detect", str(path), "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["images"][0]["detections"]


def test_an_image_its_options_and_errors(browser, served, scenes, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console = Console(page)
    page.goto(served)
    _wait(page, "document.getElementById('model-info').textContent.includes('demo')")
    assert "onnxruntime" in page.text_content("#model-info")
    assert page.locator("#classes input").count() > 0  # the model's class names
    # one scene: the table is `detect --json` on the file (conf 0.25, the document's rounding)
    scene = scenes[1]
    page.set_input_files("#files", str(scene))
    page.wait_for_selector("#table tbody tr")
    expected = _detect(scene)
    rows = _rows(page)
    assert len(rows) == len(expected) > 1
    for row, d in zip(rows, expected):
        assert row[1] == d["category"] and float(row[2]) == pytest.approx(d["score"], abs=1e-5)
        assert [float(v) for v in row[3].split(",")] == pytest.approx(d["box"], abs=0.011)
    _shot(page, "detections")
    assert not page.is_disabled("#save-png") and not page.is_disabled("#save-json")
    # the confidence slider re-runs the image (debounced): fewer rows
    high = sorted(d["score"] for d in expected)[len(expected) // 2]
    conf = f"{min(0.99, round(high + 0.005, 2)):.2f}"
    page.fill("#conf", conf)
    want = [d for d in expected if d["score"] >= float(conf)]
    _wait(page, f"document.querySelectorAll('#table tbody tr').length === {len(want)}")
    assert page.text_content("#conf-value") == conf
    _shot(page, "confidence")
    # one class picked: only it remains
    page.fill("#conf", "0.25")
    _wait(page, f"document.querySelectorAll('#table tbody tr').length === {len(rows)}")
    top = max({d["category"] for d in expected}, key=[d["category"] for d in expected].count)
    page.fill("#class-search", top)
    page.check(f"#classes label:has-text('{top}') input")
    _wait(page, 
        f"[...document.querySelectorAll('#table tbody tr')].every(r => r.cells[1].textContent === {json.dumps(top)})"
        f" && document.querySelectorAll('#table tbody tr').length === {sum(d['category'] == top for d in expected)}")
    _shot(page, "one-class")
    # hovering a row highlights it
    page.hover("#table tbody tr >> nth=0")
    assert "hot" in page.get_attribute("#table tbody tr >> nth=0", "class")
    # NMS across classes: the rows `detect --agnostic-nms` gives, at a low threshold where the
    # demo model reports some objects as two classes
    page.uncheck(f"#classes label:has-text('{top}') input")
    page.fill("#conf", "0.05")
    low = _detect(scene, "--conf", "0.05")
    _wait(page, f"document.querySelectorAll('#table tbody tr').length === {len(low)}")
    agnostic = _detect(scene, "--conf", "0.05", "--agnostic-nms")
    assert len(agnostic) < len(low)
    page.check("#agnostic")
    _wait(page, 
        f"document.querySelectorAll('#table tbody tr').length === {len(agnostic)}")
    assert [r[1] for r in _rows(page)] == [d["category"] for d in agnostic]
    _shot(page, "agnostic")
    # a non-image: the server's 415, one line, and the page keeps working
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    console.expect(415)
    page.set_input_files("#files", str(text))
    page.wait_for_selector("#error:not([hidden])")
    message = page.text_content("#error")
    assert message.startswith("415:") and "image" in message and "\n" not in message
    _shot(page, "error-415")
    page.click("#strip button >> nth=0")
    page.wait_for_selector("#error", state="hidden")
    assert len(_rows(page)) > 0
    assert console.unexpected() == []
    page.close()


def test_the_webcam_keeps_one_request_in_flight(browser, served):
    context = browser.new_context(permissions=["camera"])
    page = context.new_page()
    console = Console(page)
    page.goto(served)
    _wait(page, "document.getElementById('model-info').textContent.includes('demo')")
    page.click("#camera")
    _wait(page, "window.singleshotStats.answered >= 5", timeout_s=60)
    stats = page.evaluate("window.singleshotStats")
    assert stats["maxInFlight"] == 1 and stats["frames"] >= 5
    assert "frames/s" in page.text_content("#status")
    _shot(page, "webcam")
    page.click("#camera")  # stop
    assert page.get_attribute("#camera", "aria-pressed") == "false"
    assert console.unexpected() == []
    context.close()


def test_the_api_key_field_and_phone_width(browser, scenes):
    proc, url = _serve("--api-key", "s3cret")
    try:
        page = browser.new_page(viewport={"width": 390, "height": 800})
        console = Console(page)
        console.expect(401)
        page.goto(url)  # the page itself needs no key
        page.wait_for_selector("#error:not([hidden])")
        assert page.text_content("#error").startswith("401:")
        page.click("summary")
        page.fill("#api-key", "s3cret")
        page.press("#api-key", "Enter")
        page.dispatch_event("#api-key", "change")
        _wait(page, "document.getElementById('model-info').textContent.includes('demo')")
        assert page.evaluate("sessionStorage.getItem('singleshot-api-key')") == "s3cret"
        assert "s3cret" not in page.url
        page.set_input_files("#files", str(scenes[2]))
        page.wait_for_selector("#table tbody tr")
        # phone width: nothing wider than the screen
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        _shot(page, "phone")
        assert console.unexpected() == []
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
