"""What a hostile client tried against `singleshot serve`, each a 4xx now: a pixel bomb
refused from its header, more images than the queue can ever hold, JSON nested 100,000 deep,
max_det past int64, a chunked upload past the limit; the API key's scheme and header; the
OpenAPI document describing the bodies; CORS off by default; TLS."""

import base64
import http.client
import json
import ssl
import time

import pytest

from helpers import _png_with_header_size, broken_exif
from test_server import _free_port, _http, _Server


@pytest.fixture(scope="module")
def server():
    s = _Server(max_body_mb=1, max_queue=4)
    yield s
    s.close()


@pytest.fixture(scope="module")
def jpeg(scenes):
    return scenes[0].read_bytes()


def _infer_body(images, **extra):
    return json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                                   "data": [base64.b64encode(i).decode() for i in images]}],
                       **extra}).encode()


def _post_infer(server, body, headers=None):
    status, payload, hdrs = _http("POST", server.url + "/v2/models/demo/infer", body,
                                  {"Content-Type": "application/json", **(headers or {})})
    return status, json.loads(payload), hdrs


def test_a_pixel_bomb_is_refused_from_its_header(server):
    t0 = time.perf_counter()
    status, doc, _ = _post_infer(server, _infer_body([_png_with_header_size(10000, 10000)]))
    assert status == 400 and "over the limit of 40000000" in doc["error"], doc
    assert "--max-pixels" not in doc["error"]  # the CLI's advice is not the client's
    bomb = _png_with_header_size(16000, 16000)  # 70 bytes that claim 256 MP
    status, doc, _ = _post_infer(server, _infer_body([bomb]))
    assert status == 400 and "over the limit" in doc["error"], doc  # ours, or PIL's own guard
    assert time.perf_counter() - t0 < 5
    status, payload, _ = _http("POST", server.url + "/detect", bomb, {"Content-Type": "image/png"})
    assert status == 400 and "pixels" in json.loads(payload)["error"]


def test_a_broken_exif_block_is_no_500(server):
    """A rotation tag beside a mistyped TIFF tag (PIL's exif_transpose raises on it): the image
    is taken as unrotated and answered."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="JPEG", exif=broken_exif())
    status, payload, _ = _http("POST", server.url + "/detect", buf.getvalue(),
                               {"Content-Type": "image/jpeg"})
    assert status == 200, payload
    image = json.loads(payload)["images"][0]
    assert (image["width"], image["height"]) == (64, 48)


def test_more_images_than_the_queue_is_413_up_front(server, jpeg):
    status, doc, hdrs = _post_infer(server, _infer_body([jpeg] * 5))
    assert status == 413 and "at most 4" in doc["error"] and "retry-after" not in {
        k.lower() for k in hdrs}
    assert _post_infer(server, _infer_body([jpeg] * 4))[0] == 200


def test_deep_json_and_huge_max_det_are_400(server, jpeg):
    deep = b'{"inputs": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"  # under the value bound
    status, doc, _ = _post_infer(server, deep)
    assert status == 400 and "nested too deeply" in doc["error"]
    status, doc, _ = _post_infer(server, _infer_body([jpeg], parameters={"max_det": 2 ** 63}))
    assert status == 400 and "max_det" in doc["error"], doc
    status, payload, _ = _http("POST", server.url + f"/detect?max_det={2 ** 63}", jpeg,
                               {"Content-Type": "image/jpeg"})
    assert status == 400 and "max_det" in json.loads(payload)["error"]


def test_a_chunked_upload_is_counted_as_it_arrives(server):
    """Multipart with no Content-Length, over the 1 MB limit: 413 once the limit is passed."""
    conn = http.client.HTTPConnection(*server.url.split(":"), timeout=30)
    conn.putrequest("POST", "/detect")
    conn.putheader("Content-Type", "multipart/form-data; boundary=XX")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    head = b'--XX\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
    sent, status = 0, None
    try:
        for k in range(64):  # up to 4 MB in 64 KB chunks; the server stops it past 1 MB
            chunk = (head if k == 0 else b"") + b"\0" * 65536
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = conn.getresponse()
    status, payload = resp.status, resp.read()
    conn.close()
    assert status == 413 and "limit" in json.loads(payload)["error"]


def test_the_api_key(jpeg):
    s = _Server(api_key="s3cret")
    try:
        status, _, hdrs = _http("POST", s.url + "/detect", jpeg, {"Content-Type": "image/jpeg"})
        assert status == 401 and hdrs.get("www-authenticate", "").startswith("Bearer")
        for scheme in ("Bearer", "bearer", "BEARER"):
            status, _, _ = _http("POST", s.url + "/detect", jpeg, {
                "Content-Type": "image/jpeg", "Authorization": f"{scheme} s3cret"})
            assert status == 200, scheme
        status, _, _ = _http("POST", s.url + "/detect", jpeg, {
            "Content-Type": "image/jpeg", "Authorization": "Bearer s3cre"})
        assert status == 401
        # readiness probes carry no credentials, as the health paths
        assert _http("GET", s.url + "/v2/models/demo/ready")[0] == 200
        assert _http("GET", s.url + "/v2/models/demo/versions/1/ready")[0] == 200
        assert _http("GET", s.url + "/v2/models/demo")[0] == 401
    finally:
        s.close()


def test_openapi_describes_the_bodies(server):
    status, payload, _ = _http("GET", server.url + "/openapi.json")
    doc = json.loads(payload)
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]["requestBody"]["content"]
    assert "application/json" in infer and "application/octet-stream" in infer
    assert "inputs" in infer["application/json"]["schema"]["required"]
    detect = doc["paths"]["/detect"]["post"]["requestBody"]["content"]
    assert {"image/*", "multipart/form-data"} <= set(detect)
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "text/plain" in metrics and "application/json" not in metrics


def test_cors_is_off_unless_asked(server):
    preflight = {"Origin": "http://example.test", "Access-Control-Request-Method": "POST"}
    _, _, hdrs = _http("OPTIONS", server.url + "/detect", headers=preflight)
    assert "access-control-allow-origin" not in {k.lower() for k in hdrs}
    s = _Server(cors=["http://example.test"])
    try:
        status, _, hdrs = _http("OPTIONS", s.url + "/detect", headers=preflight)
        assert status == 200 and hdrs.get("access-control-allow-origin") == "http://example.test"
        _, _, hdrs = _http("GET", s.url + "/v2", headers={"Origin": "http://other.test"})
        assert "access-control-allow-origin" not in {k.lower() for k in hdrs}
    finally:
        s.close()


def test_tls_from_the_command_line(tmp_path, jpeg):
    """`singleshot serve --ssl-certfile --ssl-keyfile`: HTTPS with a certificate a test CA
    issued; plain HTTP on that port gets nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port, gport = _free_port(), _free_port()
    exe = Path(sys.executable).with_name("singleshot")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--grpc-port", str(gport),
                             "--ssl-certfile",
                             str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())

    def get(path):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get("/v2/health/ready")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        # gRPC over TLS with the same certificate
        import tritonclient.grpc as grpcclient

        g = grpcclient.InferenceServerClient(f"127.0.0.1:{gport}", ssl=True,
                                             root_certificates=str(tmp_path / "ca.pem"))
        assert g.is_server_ready() and g.is_model_ready("demo")
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        conn.request("POST", "/detect", jpeg, {"Content-Type": "image/jpeg"})
        resp = conn.getresponse()
        assert resp.status == 200 and "detections" in json.loads(resp.read())["images"][0]
        conn.close()
        with pytest.raises((OSError, http.client.HTTPException)):
            plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            plain.request("GET", "/v2/health/live")
            if plain.getresponse().status == 200:
                raise AssertionError("plain HTTP answered on the TLS port")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("model, message", [("nope.onnx", "no such model file"),
                                            ("NOTES", "not a valid ONNX model")])
def test_a_bad_model_is_one_line_with_the_default_auto_backend(tmp_path, model, message):
    """`serve`'s default --backend auto times the model: a missing or broken file is said
    before any timing (it was a FileNotFoundError traceback)."""
    from typer.testing import CliRunner

    from singleshot.app.cli import app

    if model == "NOTES":
        model = str(tmp_path / "notes.onnx")
        (tmp_path / "notes.onnx").write_text("not a model")
    res = CliRunner().invoke(app, ["serve", "--model", model, "--port", str(_free_port()),
                                   "--no-grpc"])
    assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.output
