"""What an attacker on loopback tried against `singleshot serve` (issue 34), each now bounded by
one mechanism and measured here against the real command in its own process:

- requests whose parsing grows with their size (a gzip JSON of millions of strings, millions of
  empty BYTES elements, over HTTP and gRPC) are refused while health probes keep answering;
- images admitted by their pixels per request and in flight, memory handed back after;
- connections and bodies bounded on both protocols (a slow body, one client's flood, idle gRPC
  sockets past the cap);
- cross-site requests and foreign Host names refused, security headers, readiness without
  the key saying nothing more, keys from a file and the environment;
- every listener on loopback.

The repository's failure semantics are in test_repository_faults.py. Probe latencies are
written to runs/test-artifacts/hostile.json; the assertion is a bound well above what was
measured (tens of ms) and below the stalls these cases caused before (5-28 s), so that a busy
CI machine does not fail it.
"""

import gzip
import http.client
import json
import os
import socket
import struct
import threading
import time
from pathlib import Path

import grpc
import pytest
from test_connections import _closed_within
from test_server import _free_port, _http, serve_process

ARTIFACTS = Path(os.environ.get("SINGLESHOT_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "runs" / "test-artifacts"))
# a liveness guard, not a speed goal: measured 0.05-0.34 s (hostile.json, bench/RESULTS.md),
# the stalls these attacks caused before were 5-28 s; a busy machine stays far below this
PROBE_BOUND_S = 3.0
MEASURED: dict = {}


@pytest.fixture(scope="module")
def served():
    grpc_port = _free_port()
    proc, url = serve_process("--grpc-port", str(grpc_port), "--max-connections", "40",
                              "--max-connections-per-client", "20", "--head-timeout-s", "2",
                              "--read-timeout-s", "2", "--body-timeout-s", "3",
                              "--max-pixels-in-flight", "80000000")
    assert proc.poll() is None, "the server did not start"
    yield {"proc": proc, "url": url, "port": int(url.rsplit(":", 1)[1]), "grpc_port": grpc_port}
    proc.terminate()
    proc.wait(timeout=60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "hostile.json").write_text(json.dumps(MEASURED, indent=1))


class Probes:
    """Health probes every 50 ms over HTTP (a new connection each) and gRPC while a block
    runs; ``worst`` is the slowest answer of each (a probe that fails counts as infinite)."""

    def __init__(self, url: str, grpc_port: int | None = None) -> None:
        self.url, self.grpc_port = url, grpc_port
        self.worst = {"http": 0.0, "grpc": 0.0}
        self.count = {"http": 0, "grpc": 0}
        self._stop = threading.Event()

    def __enter__(self):
        self.threads = [threading.Thread(target=self._http, daemon=True)]
        if self.grpc_port is not None:
            self.threads.append(threading.Thread(target=self._grpc, daemon=True))
        for t in self.threads:
            t.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        time.sleep(0.2)
        self._stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _note(self, kind: str, seconds: float) -> None:
        self.worst[kind] = max(self.worst[kind], seconds)
        self.count[kind] += 1

    def _http(self) -> None:
        host, port = self.url.rsplit(":", 1)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                conn.request("GET", "/v2/health/ready")
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            self._note("http", time.perf_counter() - t0 if ok else float("inf"))
            time.sleep(0.05)

    def _grpc(self) -> None:
        from singleshot.serve.proto import inference_pb2 as pb
        from singleshot.serve.proto import inference_pb2_grpc as pb_grpc

        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
                except grpc.RpcError:
                    ok = False
                self._note("grpc", time.perf_counter() - t0 if ok else float("inf"))
                time.sleep(0.05)

    def check(self, case: str) -> None:
        MEASURED[case] = {"worst_probe_s": self.worst, "probes": self.count}
        assert self.count["http"] > 0 and (self.grpc_port is None or self.count["grpc"] > 0)
        assert max(self.worst.values()) < PROBE_BOUND_S, (case, self.worst)


def _post(url, path, body, headers):
    return _http("POST", url + path, body, headers)


def _bomb_json() -> bytes:
    """47 KB of gzip that inflates to ~32 MB of JSON: 4.6 million base64 strings."""
    head = b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ['
    body = head + b'"AA==",' * 4_600_000 + b'"AA=="]}]}'
    return gzip.compress(body, 9)


def test_a_json_bomb_is_refused_and_probes_answer(served):
    bomb = _bomb_json()
    assert len(bomb) < 200_000
    with Probes(served["url"], served["grpc_port"]) as probes:
        for _ in range(5):  # five in a row stalled the server for 28 s before
            status, payload, _ = _post(served["url"], "/v2/models/demo/infer", bomb,
                                       {"Content-Type": "application/json",
                                        "Content-Encoding": "gzip"})
            assert status == 400 and "too many JSON values" in json.loads(payload)["error"]
    probes.check("gzip JSON of 4.6 M strings, 5 in a row (HTTP)")


def _bytes_body(n_elements: int, shape: int) -> tuple[bytes, dict]:
    blob = struct.pack("<I", 0) * n_elements
    head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [shape],
                                   "parameters": {"binary_data_size": len(blob)}}]}).encode()
    return head + blob, {"Content-Type": "application/octet-stream",
                         "Inference-Header-Content-Length": str(len(head))}


def test_millions_of_empty_bytes_elements_cost_nothing(served):
    with Probes(served["url"], served["grpc_port"]) as probes:
        body, headers = _bytes_body(8_000_000, 8_000_000)  # 32 MB: the shape says it all
        status, payload, _ = _post(served["url"], "/v2/models/demo/infer", body, headers)
        assert status == 413 and "images in one request" in json.loads(payload)["error"]
        body, headers = _bytes_body(8_000_000, 1)  # a shape that lies: split stops at 2
        status, payload, _ = _post(served["url"], "/v2/models/demo/infer", body, headers)
        assert status == 400 and "more elements" in json.loads(payload)["error"]
    probes.check("binary infer of 8 M empty BYTES elements (HTTP)")


def test_the_same_over_grpc(served):
    from singleshot.serve.proto import inference_pb2 as pb
    from singleshot.serve.proto import inference_pb2_grpc as pb_grpc

    with Probes(served["url"], served["grpc_port"]) as probes, \
            grpc.insecure_channel(f"127.0.0.1:{served['grpc_port']}", options=[
                ("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        raw = pb.ModelInferRequest(model_name="demo")
        raw.inputs.add(name="image", datatype="BYTES", shape=[1])
        raw.raw_input_contents.append(struct.pack("<I", 0) * 8_000_000)
        listed = pb.ModelInferRequest(model_name="demo")
        listed.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents \
            .extend([b""] * 8_000_000)
        for request in (raw, listed):
            with pytest.raises(grpc.RpcError) as err:
                stub.ModelInfer(request, timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "elements" in err.value.details()
    probes.check("gRPC infer of 8 M empty BYTES elements")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _flat_png(side: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 200)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def test_decoded_pixels_are_bounded_and_memory_comes_back(served):
    """8 flat 39.7 MP PNGs in one 1 MB request took the server to 1.9 GB, three at once to
    4.2 GB, and RSS stayed at 2 GB: now 413 from the headers, concurrent large images share
    the in-flight budget (80 MP here: two at a time, the others wait or get 503), and the
    memory goes back."""
    import base64
    from concurrent.futures import ThreadPoolExecutor

    pid, url = served["proc"].pid, served["url"]
    png = _flat_png(6300)  # 39.69 MP
    eight = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [8],
                                    "data": [base64.b64encode(png).decode()] * 8}]}).encode()
    assert len(eight) < 2_000_000
    start = _rss_mb(pid)
    status, payload, _ = _post(url, "/v2/models/demo/infer", eight,
                               {"Content-Type": "application/json"})
    assert status == 413 and "pixels" in json.loads(payload)["error"]
    assert _rss_mb(pid) - start < 100  # refused before decoding
    peak, stop = [start], threading.Event()

    def watch():
        while not stop.is_set():
            peak.append(_rss_mb(pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: _post(url, "/detect", png, {"Content-Type": "image/png"}),
                                range(3)))
    stop.set()
    watcher.join()
    statuses = sorted(r[0] for r in results)
    assert set(statuses) <= {200, 503} and 200 in statuses, statuses
    for status, _, headers in results:
        if status == 503:
            assert {k.lower(): v for k, v in headers.items()}.get("retry-after") == "1"
    time.sleep(0.5)
    after = _rss_mb(pid)
    MEASURED["three 39.7 MP PNGs at once"] = {"rss_start_mb": round(start), "rss_peak_mb":
                                              round(max(peak)), "rss_after_mb": round(after),
                                              "statuses": statuses}
    assert max(peak) - start < 1200, MEASURED  # two decoded at a time, not three or eight
    assert after - start < 200, MEASURED


def test_a_slow_body_is_cut_at_its_deadline(served):
    sock = socket.create_connection(("127.0.0.1", served["port"]))
    try:
        sock.sendall(b"POST /detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        t0, closed = time.monotonic(), False
        while time.monotonic() - t0 < 10:  # a byte a second: never idle 2 s, never done
            try:
                sock.send(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_within(sock, 1.0):
                closed = True
                break
        # --body-timeout-s 3: closed within the 10 s the loop sends (the whole body would take
        # 1,000 s at this pace)
        assert closed
    finally:
        sock.close()


def test_one_clients_flood_leaves_room_for_another(served):
    port = served["port"]
    flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(5)
        assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        extra.close()
        # another address (the loopback range is all this machine's): served
        other = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
        other.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        other.settimeout(5)
        assert other.recv(4096).startswith(b"HTTP/1.1 200")
        other.close()
    finally:
        for s in flood:
            s.close()


def test_idle_grpc_connections_are_capped_and_closed(served):
    """1,100 idle TCP connections to the gRPC port took every descriptor before: now past 40
    they are refused at accept, and those that never start HTTP/2 are closed after the
    2 s handshake deadline; HTTP and gRPC clients are served meanwhile."""
    from singleshot.serve.proto import inference_pb2 as pb
    from singleshot.serve.proto import inference_pb2_grpc as pb_grpc

    idle = []
    for _ in range(120):
        try:
            idle.append(socket.create_connection(("127.0.0.1", served["grpc_port"]), timeout=2))
        except OSError:
            pass
    try:
        assert _http("GET", served["url"] + "/v2/health/live")[0] == 200
        t0 = time.monotonic()
        assert all(_closed_within(s, 8) for s in idle)
        MEASURED["120 idle gRPC sockets: all closed after s"] = round(time.monotonic() - t0, 2)
        with grpc.insecure_channel(f"127.0.0.1:{served['grpc_port']}") as channel:
            assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(
                pb.ServerLiveRequest(), timeout=10).live
    finally:
        for s in idle:
            s.close()


def test_browsers_on_other_sites_cannot_change_state(served):
    url = served["url"]
    for path, body, headers in (
            ("/v2/repository/models/demo/unload", b"", {"Origin": "http://evil.example"}),
            ("/v2/logging", b'{"log_info": false}', {"Content-Type": "text/plain"}),
            ("/v2/trace/setting", b"{}", {"Content-Type": "application/x-www-form-urlencoded"}),
            ("/v2/repository/models/demo/load", b"{}", {"Origin": "null"})):
        status, payload, _ = _post(url, path, body, headers)
        assert status == 403, (path, status, payload)
    assert _http("GET", url + "/v2/models/demo/ready")[0] == 200  # still loaded
    # the same changes from the server's own page, or a client that is no browser, pass
    own = {"Origin": f"http://{url}", "Content-Type": "application/json"}
    assert _post(url, "/v2/logging", b'{"log_info": true}', own)[0] == 200
    assert _post(url, "/v2/repository/models/demo/load", b"", {})[0] == 200  # curl -X POST
    status, payload, _ = _post(url, "/v2/repository/models/demo/unload", b"{}", {})  # curl -d
    assert status == 403 and "Content-Type: application/json" in json.loads(payload)["error"]
    # a rebound DNS name: refused
    status, payload, _ = _http("GET", url + "/v2", headers={"Host": f"evil.example:{served['port']}"})
    assert status == 400 and "allowed-hosts" in json.loads(payload)["error"]
    assert _http("GET", url + "/v2", headers={"Host": f"localhost:{served['port']}"})[0] == 200


def test_the_page_has_security_headers(served):
    status, _, headers = _http("GET", served["url"] + "/")
    headers = {k.title(): v for k, v in headers.items()}
    assert status == 200
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert {k.lower(): v for k, v in _http("GET", served["url"] + "/v2")[2].items()}[
        "x-content-type-options"] == "nosniff"


def test_load_overrides_and_odd_bodies_are_refused_not_ignored(served):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url=served["url"])
    with pytest.raises(InferenceServerException, match="not supported"):
        client.load_model("demo", config=json.dumps({"max_batch_size": 4}))
    with pytest.raises(InferenceServerException, match="not supported"):
        client.load_model("demo", config="{}", files={"file:1/model.onnx": b"x"})
    client.load_model("demo")  # the plain load: fine
    status, payload, _ = _post(served["url"], "/v2/repository/models/demo/load", b"not json",
                               {"Content-Type": "application/json"})
    assert status == 400 and "JSON" in json.loads(payload)["error"]


def test_every_listener_is_on_loopback(served):
    import psutil  # the test extra
    proc = psutil.Process(served["proc"].pid)
    listening = [c.laddr for p in [proc, *proc.children(recursive=True)]
                 for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    ports = {a.port for a in listening}
    assert {served["port"], served["grpc_port"]} <= ports
    assert all(a.ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for a in listening), listening


def test_keys_from_a_file_and_the_environment(tmp_path):
    """Two keys (a rotation) from --api-key-file and one from SINGLESHOT_API_KEY: each is
    accepted; a probe without a key learns ready or not and nothing else."""
    keys = tmp_path / "keys"
    keys.write_text("# rotation\nold-key\nnew-key\n")
    proc, url = serve_process("--no-grpc", "--api-key-file", str(keys),
                              env={"SINGLESHOT_API_KEY": "env-key"})
    try:
        assert proc.poll() is None
        for key in ("old-key", "new-key", "env-key"):
            assert _http("GET", url + "/v2", headers={"Authorization": f"Bearer {key}"})[0] == 200
        assert _http("GET", url + "/v2", headers={"Authorization": "Bearer other"})[0] == 401
        status, payload, _ = _http("GET", url + "/v2/models/nope/ready")
        assert status == 503 and json.loads(payload) == {"ready": False}  # no model names
        status, payload, _ = _http("GET", url + "/v2/models/demo/ready")
        assert status == 200 and json.loads(payload) == {"ready": True}
        status, payload, _ = _http("GET", url + "/v2/models/nope/ready",
                                   headers={"Authorization": "Bearer new-key"})
        assert status == 404 and "demo" in json.loads(payload)["error"]  # with the key: why
    finally:
        proc.terminate()
        proc.wait(timeout=60)
