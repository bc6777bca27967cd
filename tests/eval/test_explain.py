"""eval --report: report.html, report.json and the PNGs for two models side by side; the HTML
renders in headless Chromium with every image loaded and no script error; the numbers agree
with their definitions (confusion matrix totals, F1 at the printed threshold)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("explain")
    write_dataset(root / "set", 12, seed=9, workers=1)
    res = CliRunner().invoke(app, [
        "eval", "-m", "demo", "--images", str(root / "set" / "images"), "--annotations",
        str(root / "set" / "annotations.json"), "-o", str(root / "ev"), "--results",
        str(_results_file(root)), "--report-worst", "3"])
    assert res.exit_code == 0, res.output
    (root / "printed.txt").write_text(res.stdout)
    return root


def _results_file(root):
    """A results file with every ground truth found exactly plus one background box per image:
    its errors are known in advance."""
    ann = json.loads((root / "set" / "annotations.json").read_text())
    res = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
            "score": 0.9} for a in ann["annotations"]]
    res += [{"image_id": im["id"], "category_id": 1, "bbox": [0, 0, 3, 3], "score": 0.95}
            for im in ann["images"]]
    (root / "exact.json").write_text(json.dumps(res))
    return root / "exact.json"


def test_report_files_and_numbers(evaluated):
    out = evaluated / "ev"
    doc = json.loads((out / "report.json").read_text())
    assert [m["model"] for m in doc["models"]] == ["demo", "exact"]
    demo, exact = doc["models"]
    # the results file: only background errors, one per image (12), and nothing missed
    assert exact["tide"]["counts"] == {"cls": 0, "loc": 0, "both": 0, "dupl": 0, "bkg": 12,
                                       "miss": 0}
    assert exact["tide"]["dAP"]["bkg"] == pytest.approx(1 - exact["tide"]["AP50"])
    ann = json.loads((evaluated / "set" / "annotations.json").read_text())
    counts = np.asarray(demo["confusion"]["counts"])
    # every non-crowd ground truth is in exactly one cell of its row
    assert counts[:-1].sum() == sum(1 for a in ann["annotations"] if not a.get("iscrowd"))
    assert demo["confusion"]["labels"][-1] == "background"
    assert demo["tide"]["AP50"] == pytest.approx(demo["metrics"]["AP50"], abs=0.02)
    best = demo["f1_optimal"]["all"]
    assert 0 < best["conf"] < 1 and best["f1"] == pytest.approx(
        2 * best["precision"] * best["recall"] / (best["precision"] + best["recall"]))
    assert set(demo["ap_by_size"]) == {"APs", "APm", "APl"}
    assert [b["objects"] for b in demo["ap_by_count"]] == ["1", "2-5", "6-10", "11+"]
    assert len(demo["worst_images"]) == 3
    assert all(a["dAP"] >= b["dAP"] for a, b in zip(demo["worst_images"], demo["worst_images"][1:]))
    printed = (evaluated / "printed.txt").read_text()
    assert f"demo: best --conf by F1 {best['conf']:.2f}" in printed
    files = {p.name for p in (out / "report").iterdir()}
    assert {"tide.png", "demo-confusion.png", "demo-pr.png", "demo-f1.png", "demo-worst-1.jpg",
            "exact-confusion.png"} <= files


def test_report_renders_in_chromium(evaluated, browser):
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((evaluated / "ev" / "report.html").as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
    assert len(images) >= 1 + 2 * 3 + 3  # TIDE + per model PR/F1/confusion + worst images
    assert all(done and width > 0 for done, width, _ in images), images
    assert "Why the AP is what it is" in page.inner_text("h1")
    assert not problems, problems
    page.close()


def test_report_off_without_out_and_with_no_report(evaluated, tmp_path):
    res = CliRunner().invoke(app, [
        "eval", "--results", str(evaluated / "exact.json"), "--annotations",
        str(evaluated / "set" / "annotations.json"), "-o", str(tmp_path / "plain"),
        "--no-report"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "plain" / "report.html").exists()
