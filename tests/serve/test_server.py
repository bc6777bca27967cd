"""singleshot serve: a real uvicorn server on 127.0.0.1 (an ephemeral port), the official
tritonclient HTTP client in binary and JSON modes, the plain /detect, and every error status."""

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import uvicorn
from typer.testing import CliRunner

from singleshot.app.cli import app
from singleshot.runtime.detector import Detector
from singleshot.serve.server import create_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """uvicorn in a thread, bound to loopback; stops by itself at teardown."""

    def __init__(self, app=None, **kw):
        self.port = _free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.app = app or create_app(Detector("demo"), "demo", **kw)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_process(*args: str, port: int | None = None, env: dict | None = None, stderr=None):
    """`singleshot serve --port PORT ARGS` in a process of its own, once it answers ready;
    returns (process, "127.0.0.1:PORT"). The caller terminates it. ``env``: added to this
    process's environment; ``stderr``: where its log goes (none by default)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    port = port or _free_port()
    exe = Path(sys.executable).with_name("singleshot")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    url = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _http("GET", url + "/v2/health/ready")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    return proc, url


@pytest.fixture(scope="module")
def server():
    s = _Server(max_body_mb=1, api_key=None)
    yield s
    s.close()


def _http(method, url, data=None, headers=None):
    req = urllib.request.Request("http://" + url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


@pytest.fixture(scope="module")
def jpegs(scenes):
    return [p.read_bytes() for p in scenes[:3]]


def _detect_cli(paths, *extra):
    res = CliRunner().invoke(app, ["detect", *map(str, paths), "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["images"]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_gets_what_detect_gives(server, scenes, binary):
    """The official client, unchanged: metadata calls, then a batch of 3 JPEGs gives the same
    detections as `singleshot detect --json` on the files (conf 0.25, EXIF on), at detect's
    rounding, in binary and in JSON mode."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server.url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("demo")
    meta = client.get_model_metadata("demo")
    assert meta["inputs"][0]["name"] == "image" and meta["inputs"][0]["datatype"] == "BYTES"
    assert {o["name"] for o in meta["outputs"]} == {"boxes", "scores", "category_ids",
                                                    "num_detections"}
    assert client.get_server_metadata()["name"] == "singleshot"
    files = scenes[:3]
    data = [p.read_bytes() for p in files]
    if not binary:  # JSON elements are base64 text
        data = [base64.b64encode(d) for d in data]
    inp = httpclient.InferInput("image", [len(files)], "BYTES")
    inp.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
    outs = [httpclient.InferRequestedOutput(n, binary_data=binary)
            for n in ("boxes", "scores", "category_ids", "num_detections")]
    result = client.infer("demo", [inp], outputs=outs, parameters={"conf": 0.25})
    boxes, scores = result.as_numpy("boxes"), result.as_numpy("scores")
    cats, count = result.as_numpy("category_ids"), result.as_numpy("num_detections")
    assert boxes.shape == (3, max(count), 4) and boxes.dtype == np.float32
    for i, ref in enumerate(_detect_cli(files)):
        n = int(count[i])
        dets = ref["detections"]
        assert n == len(dets) > 0
        assert cats[i, :n].tolist() == [d["category_id"] for d in dets]
        np.testing.assert_allclose(np.round(scores[i, :n], 5), [d["score"] for d in dets], atol=1e-5)
        np.testing.assert_allclose(np.round(boxes[i, :n], 2), [d["box"] for d in dets], atol=0.011)
        assert not boxes[i, n:].any() and not scores[i, n:].any()  # zero padding


def test_plain_detect_endpoint(server, scenes):
    """POST /detect with the image as the body or as multipart field 'image' -> the document
    `detect --json` gives (one image, path null); query parameters apply to that request."""
    data = scenes[0].read_bytes()
    status, body, _ = _http("POST", server.url + "/detect", data,
                            {"Content-Type": "image/jpeg"})
    doc = json.loads(body)
    assert status == 200 and len(doc["images"]) == 1 and doc["images"][0]["path"] is None
    ref = _detect_cli([scenes[0]])[0]
    assert doc["images"][0]["detections"] == ref["detections"]
    assert (doc["images"][0]["width"], doc["images"][0]["height"]) == (ref["width"], ref["height"])
    boundary = "singleshotboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    status, body, _ = _http("POST", server.url + "/detect?max_det=2&conf=0.1", form,
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    dets = json.loads(body)["images"][0]["detections"]
    assert status == 200 and len(dets) == 2
    cat = ref["detections"][0]["category"]
    status, body, _ = _http("POST", server.url + f"/detect?classes={cat}", data,
                            {"Content-Type": "application/octet-stream"})
    assert status == 200 and {d["category"] for d in json.loads(body)["images"][0]["detections"]} == {cat}
    # conf=model: the model's own threshold, as the CLI's --conf model (0.05 < the default 0.25)
    status, body, _ = _http("POST", server.url + "/detect?conf=model", data,
                            {"Content-Type": "image/jpeg"})
    scores = [d["score"] for d in json.loads(body)["images"][0]["detections"]]
    assert status == 200 and len(scores) > len(ref["detections"]) and min(scores) < 0.25
    # agnostic: what `detect --agnostic-nms` gives; a value that is not a boolean is a 400
    status, body, _ = _http("POST", server.url + "/detect?conf=model&agnostic=true", data,
                            {"Content-Type": "image/jpeg"})
    agnostic = json.loads(body)["images"][0]["detections"]
    assert status == 200 and len(agnostic) < len(scores)
    assert agnostic == _detect_cli([scenes[0]], "--conf", "model", "--agnostic-nms")[0]["detections"]
    status, body, _ = _http("POST", server.url + "/detect?agnostic=maybe", data,
                            {"Content-Type": "image/jpeg"})
    assert status == 400 and "agnostic must be true or false" in json.loads(body)["error"]


def _infer_json(elements, datatype="BYTES", shape=None, parameters=None):
    req = {"inputs": [{"name": "image", "datatype": datatype,
                       "shape": shape or [len(elements)], "data": elements}]}
    if parameters:
        req["parameters"] = parameters
    return json.dumps(req).encode()


BAD_REQUESTS = [
    ("corrupt", 400, "image 0"),
    ("base64", 400, "base64"),
    ("datatype", 400, "BYTES"),
    ("shape", 400, "shape"),
    ("param", 400, "conf"),
    ("json", 400, "JSON"),
    ("header", 400, "Inference-Header-Content-Length"),
    ("model", 404, "unknown model"),
    ("too_big", 413, "limit"),
    ("detect_type", 415, "image/*"),
    ("detect_class", 400, "class"),
    ("detect_empty", 400, "image 0"),
]


def send_bad_request(url: str, jpeg: bytes, case: str) -> tuple[int, bytes]:
    """One of :data:`BAD_REQUESTS` to the server at ``url`` (a server with max_body_mb=1):
    its (status, body)."""
    good = base64.b64encode(jpeg).decode()
    path, headers = "/v2/models/demo/infer", {"Content-Type": "application/json"}
    body = {
        "corrupt": _infer_json([base64.b64encode(b"not an image at all").decode()]),
        "base64": _infer_json(["%%% not base64 %%%"]),
        "datatype": _infer_json([good], datatype="FP32"),
        "shape": _infer_json([good], shape=[2]),
        "param": _infer_json([good], parameters={"conf": 7}),
        "json": b"{not json",
        "header": _infer_json([good]),
        "model": _infer_json([good]),
        "too_big": b"x" * (1024 * 1024 + 10),
        "detect_type": b"hello",
        "detect_class": jpeg,
        "detect_empty": b"",
    }[case]
    if case == "header":
        headers["Inference-Header-Content-Length"] = "999999"
    if case == "model":
        path = "/v2/models/nope/infer"
    if case.startswith("detect"):
        path = "/detect" + ("?classes=nonesuch" if case == "detect_class" else "")
        headers = {"Content-Type": "text/plain" if case == "detect_type" else "image/jpeg"}
    if case == "too_big":  # refused on the header, before the body is read
        import http.client

        conn = http.client.HTTPConnection(*url.split(":"), timeout=30)
        conn.putrequest("POST", path)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:1024])
        resp = conn.getresponse()
        got, payload = resp.status, resp.read()
        conn.close()
        return got, payload
    return _http("POST", url + path, body, headers)[:2]


@pytest.mark.parametrize("case, status, message", BAD_REQUESTS)
def test_bad_requests_get_a_4xx_and_the_server_goes_on(server, jpegs, case, status, message):
    got, payload = send_bad_request(server.url, jpegs[0], case)
    assert got == status and message in json.loads(payload)["error"], payload
    good = base64.b64encode(jpegs[0]).decode()
    ok, payload, _ = _http("POST", server.url + "/v2/models/demo/infer", _infer_json([good]),
                           {"Content-Type": "application/json"})
    assert ok == 200 and json.loads(payload)["outputs"][3]["data"][0] > 0  # still serving


def test_detect_content_types_and_api_key(jpegs):
    s = _Server(api_key="s3cret")
    try:
        status, _, _ = _http("GET", s.url + "/v2/health/ready")
        assert status == 200  # health needs no key
        status, body, _ = _http("POST", s.url + "/detect", jpegs[0], {"Content-Type": "image/jpeg"})
        assert status == 401 and "API key" in json.loads(body)["error"]
        auth = {"Authorization": "Bearer s3cret"}
        status, body, _ = _http("POST", s.url + "/detect", b"hello",
                                {"Content-Type": "text/plain", **auth})
        assert status == 415 and "image/*" in json.loads(body)["error"]
        status, _, _ = _http("POST", s.url + "/detect", jpegs[0],
                             {"Content-Type": "image/jpeg", **auth})
        assert status == 200
        status, _, _ = _http("GET", s.url + "/v2/models/demo", None, {"Authorization": "Bearer x"})
        assert status == 401
    finally:
        s.close()


def test_metrics_and_batching(server, jpegs):
    """/metrics (no key needed) counts requests by outcome and records batch sizes; concurrent
    requests share batches."""
    from concurrent.futures import ThreadPoolExecutor

    def one(k):
        return _http("POST", server.url + "/detect", jpegs[k % 3], {"Content-Type": "image/jpeg"})[0]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(24))) == {200}
    status, body, headers = _http("GET", server.url + "/metrics")
    text = body.decode()
    assert status == 200 and "text/plain" in headers["content-type"]
    assert 'singleshot_requests_total{endpoint="/detect",status="200"}' in text
    count = float(next(line.split()[-1] for line in text.splitlines()
                       if line.startswith("singleshot_batch_images_count")))
    total = float(next(line.split()[-1] for line in text.splitlines()
                       if line.startswith("singleshot_batch_images_sum")))
    assert total >= 24 and count >= 1 and "singleshot_queue_seconds_bucket" in text
    assert 'singleshot_batch_images_count{model="demo",version="1"}' in text  # per version


def test_a_burst_beyond_the_queue_gets_503_then_recovers(jpegs):
    from concurrent.futures import ThreadPoolExecutor

    s = _Server(max_queue=2, max_batch=1, max_delay_ms=0)
    try:
        body = _infer_json([base64.b64encode(jpegs[0]).decode()] * 2)

        def one(_):
            status, payload, headers = _http("POST", s.url + "/v2/models/demo/infer", body,
                                             {"Content-Type": "application/json"})
            return status, headers.get("Retry-After") or headers.get("retry-after")

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(36)))
        assert {st for st, _ in results} <= {200, 503}
        assert any(st == 503 for st, _ in results) and any(st == 200 for st, _ in results)
        assert all(ra == "1" for st, ra in results if st == 503)
        assert all(one(0)[0] == 200 for _ in range(3))  # recovered
        assert _http("GET", s.url + "/v2/health/ready")[0] == 200
    finally:
        s.close()


def test_fuzzed_requests_never_get_a_500(server, jpegs):
    """Bounded fuzzing (hypothesis) of bodies, content types, headers and parameters: a 4xx or
    a 200, never a 500, and the server goes on serving."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    good = base64.b64encode(jpegs[1]).decode()
    bodies = st.one_of(st.binary(max_size=300), st.just(jpegs[1][:500]),
                       st.builds(lambda e, s, p: _infer_json(e, shape=s, parameters=p),
                                 st.lists(st.one_of(st.just(good), st.text(max_size=20)),
                                          max_size=3),
                                 st.one_of(st.none(), st.lists(st.integers(-2, 4), max_size=2)),
                                 st.dictionaries(st.sampled_from(["conf", "iou", "max_det",
                                                                  "classes"]),
                                                 st.one_of(st.integers(-5, 500),
                                                           st.floats(allow_nan=True),
                                                           st.text(max_size=8)), max_size=3)))
    paths = st.sampled_from(["/detect", "/detect?conf=2", "/detect?max_det=-1",
                             "/detect?classes=zebra", "/v2/models/demo/infer"])
    ctypes = st.sampled_from(["image/jpeg", "application/json", "text/plain",
                              "application/octet-stream", "multipart/form-data; boundary=x", ""])
    header = st.one_of(st.none(), st.text(alphabet="0123456789-x", max_size=6))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(bodies, paths, ctypes, header)
    def check(body, path, ctype, ihcl):
        headers = {"Content-Type": ctype} if ctype else {}
        if ihcl is not None:
            headers["Inference-Header-Content-Length"] = ihcl
        status, payload, _ = _http("POST", server.url + path, body, headers)
        assert status < 500, (status, payload[:200])
        if status >= 400:
            assert "error" in json.loads(payload)

    check()
    assert _http("POST", server.url + "/detect", jpegs[0], {"Content-Type": "image/jpeg"})[0] == 200


def test_sigterm_drains_and_exits_0(tmp_path, jpegs):
    """`singleshot serve` in its own process: a request in flight when SIGTERM arrives is
    answered, then the process exits 0."""
    import os
    import signal
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    port = _free_port()
    exe = Path(sys.executable).with_name("singleshot")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--max-delay-ms", "300",
                             "--max-batch", "64"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _http("GET", f"127.0.0.1:{port}/v2/health/ready")[0] == 200:
                    break
            except urllib.error.URLError:
                time.sleep(0.2)
        with ThreadPoolExecutor(1) as pool:  # held ~300 ms by the batching delay
            fut = pool.submit(_http, "POST", f"127.0.0.1:{port}/detect", jpegs[0],
                              {"Content-Type": "image/jpeg"})
            time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert fut.result()[0] == 200
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bench_server_load_generator(server, jpegs):
    """bench --server: a closed-loop load generator with real JPEGs; counts, percentiles,
    errors by status, readiness polled during the run."""
    res = CliRunner().invoke(app, ["bench", "--server", f"http://{server.url}", "--clients", "3",
                                   "--requests", "30", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["requests"] == 30 and doc["errors"] == 0 and doc["status"] == {"200": 30}
    assert doc["throughput_rps"] > 0 and 0 < doc["latency_ms"]["p50"] <= doc["latency_ms"]["p99"]
    res = CliRunner().invoke(app, ["bench", "--server", "ftp://x"])
    assert res.exit_code == 2 and "--server" in res.stderr
    res = CliRunner().invoke(app, ["bench"])
    assert res.exit_code == 2 and "MODEL" in res.stderr
