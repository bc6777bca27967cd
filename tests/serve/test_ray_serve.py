"""serve --engine ray on a real local Ray instance (2 CPUs, replicas of half a CPU): the same
answers as local serve (tritonclient HTTP binary and JSON, gRPC through Ray's gRPC proxy,
/detect byte for byte), the same 4xx for bad requests, a replica SIGKILLed under load, a
rolling update to another model file under load, autoscaling 1 -> 2 -> 1, and the command's
--detach / --stop / foreground / --write-config."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from test_server import BAD_REQUESTS, _free_port, _http, _infer_json, _Server, send_bad_request

ray = pytest.importorskip("ray")  # an extra of `all`: CI installs it, so this never skips there

from singleshot.serve import ray_serve  # noqa: E402
from singleshot.serve.build import ServerConfig, build_app  # noqa: E402

ARTIFACTS = Path(os.environ.get("SINGLESHOT_TEST_ARTIFACTS", "runs/test-artifacts"))
CONFIG = dict(backend="onnxruntime", preprocess="card", max_body_mb=1)  # as the local server


@pytest.fixture(scope="module")
def cluster():
    """One Ray instance for the module, Serve's proxies on free loopback ports."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    http, grpc = _free_port(), _free_port()
    ray_serve.start("127.0.0.1", http, grpc)
    yield {"address": ray.get_runtime_context().gcs_address, "http": f"127.0.0.1:{http}",
           "grpc": f"127.0.0.1:{grpc}", "http_port": http, "grpc_port": grpc}
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def jpegs(scenes):
    return [p.read_bytes() for p in scenes[:3]]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two model files told apart by the name /detect reports: fp32 and int8 of the demo."""
    from singleshot.runtime.detector import resolve_model_path

    root = tmp_path_factory.mktemp("ray-models")
    a, b = root / "model_a.onnx", root / "model_b.onnx"
    shutil.copy(resolve_model_path("demo"), a)
    shutil.copy(Path(resolve_model_path("demo")).with_name("demo-int8-qdq.onnx"), b)
    return a, b


def _deploy(model="demo", **scaling):
    scaling.setdefault("cpus_per_worker", 0.5)
    config = ray_serve.check_model(ServerConfig(model=str(model), name="demo", **CONFIG))
    ray_serve.deploy(config, ray_serve.Scaling(**scaling))


@pytest.fixture
def app(cluster):
    yield
    if ray_serve.APP_NAME in ray_serve.applications():
        ray_serve.delete(ray_serve.APP_NAME)


def _replica_pids(name=ray_serve.APP_NAME) -> list[int]:
    """The replicas' processes (Ray titles them ``ray::ServeReplica:APP:DEPLOYMENT``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if f"ServeReplica:{name}:{ray_serve.DEPLOYMENT}" in cmd:
                pids.append(int(entry.name))
    return pids


def _running(name=ray_serve.APP_NAME) -> int:
    return ray_serve.replica_counts(name).get("RUNNING", 0)


def _wait(predicate, timeout_s: float) -> float:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout_s, "timed out"
        time.sleep(0.1)
    return time.monotonic() - t0


class Load:
    """``clients`` closed-loop clients POSTing a JPEG to /detect; each answer recorded as
    (time, status, the model file's stem or the error); a request that does not come back within 30 s counts
    as hung. Also polls readiness, which must stay 200."""

    def __init__(self, url: str, jpeg: bytes, clients: int = 8) -> None:
        self.url, self.jpeg, self.results, self.ready = url, jpeg, [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True)
                        for _ in range(clients)]
        self.threads.append(threading.Thread(target=self._probe, daemon=True))
        for t in self.threads:
            t.start()

    def _client(self) -> None:
        import urllib.error
        import urllib.request

        while not self.stop.is_set():
            req = urllib.request.Request(f"http://{self.url}/detect", data=self.jpeg,
                                         headers={"Content-Type": "image/jpeg"})
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    doc = json.loads(resp.read())
                    self.results.append((t0, resp.status, Path(doc["model"]).stem))
            except urllib.error.HTTPError as err:
                self.results.append((t0, err.code, err.read()[:200]))
            except TimeoutError as err:  # no answer within 30 s: hung
                self.results.append((t0, "timeout", repr(err)))
            except (OSError, http.client.HTTPException) as err:  # the connection cut mid-answer
                hung = isinstance(getattr(err, "reason", None), TimeoutError)
                self.results.append((t0, "timeout" if hung else "cut", repr(err)[:200]))

    def _probe(self) -> None:
        while not self.stop.is_set():
            try:
                code = _http("GET", self.url + "/v2/health/ready")[0]
            except OSError:  # nothing listening
                code = None
            self.ready.append((time.monotonic(), code))
            time.sleep(0.2)

    def finish(self) -> list:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=40)
        assert not any(t.is_alive() for t in self.threads), "a client hung"
        return self.results


def _record(name: str, doc: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"ray-serve-{name}.json").write_text(json.dumps(doc, indent=2))


def test_answers_equal_local_serve(app, cluster, scenes, jpegs):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    local = _Server(app=build_app(ServerConfig(model="demo", **CONFIG)))
    try:
        _deploy(replicas=1)
        for path in ("/v2", "/v2/models/demo", "/v2/health/ready"):
            assert _http("GET", cluster["http"] + path)[:2] == _http("GET", local.url + path)[:2]
        configs = [json.loads(_http("GET", url + "/v2/models/demo/config")[1])
                   for url in (local.url, cluster["http"])]
        counts = [c.pop("instance_group")[0]["count"] for c in configs]
        assert configs[0] == configs[1] and counts == [2, 1]  # 2 in a local process, 1/replica
        # /detect: the JSON document byte for byte (it holds no timing or path)
        for data in jpegs:
            got = [_http("POST", url + "/detect?conf=0.3", data, {"Content-Type": "image/jpeg"})
                   for url in (local.url, cluster["http"])]
            assert got[0][0] == got[1][0] == 200 and got[0][1] == got[1][1]
        assert _http("GET", cluster["http"] + "/")[0] == 200  # the page
        images = np.array([jpegs], dtype=np.object_)
        # OIP infer in JSON: the response document byte for byte
        body = _infer_json([base64.b64encode(d).decode() for d in jpegs],
                           parameters={"conf": 0.3})
        got = [_http("POST", url + "/v2/models/demo/infer", body,
                     {"Content-Type": "application/json"})[:2]
               for url in (local.url, cluster["http"])]
        assert got[0][0] == 200 and got[0] == got[1]
        # binary tensors with tritonclient: the JSON header and every tensor equal
        answers = []
        for url in (local.url, cluster["http"]):
            client = httpclient.InferenceServerClient(url=url)
            inp = httpclient.InferInput("image", [len(jpegs)], "BYTES")
            inp.set_data_from_numpy(images[0], binary_data=True)
            answers.append(client.infer("demo", [inp], parameters={"conf": 0.3}))
        assert answers[0].get_response() == answers[1].get_response()
        for name in ("boxes", "scores", "category_ids", "num_detections"):
            np.testing.assert_array_equal(answers[0].as_numpy(name), answers[1].as_numpy(name))
        # gRPC through Ray's gRPC proxy: the tensors local serve's HTTP endpoint gives
        client = grpcclient.InferenceServerClient(url=cluster["grpc"])
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_model_metadata("demo").name == "demo"
        inp = grpcclient.InferInput("image", [len(jpegs)], "BYTES")
        inp.set_data_from_numpy(images[0])
        res = client.infer("demo", [inp], parameters={"conf": 0.3})
        want = httpclient.InferenceServerClient(url=local.url)
        hin = httpclient.InferInput("image", [len(jpegs)], "BYTES")
        hin.set_data_from_numpy(images[0])
        ref = want.infer("demo", [hin], parameters={"conf": 0.3})
        for name in ("boxes", "scores", "category_ids", "num_detections"):
            np.testing.assert_array_equal(res.as_numpy(name), ref.as_numpy(name))
        from tritonclient.utils import InferenceServerException

        with pytest.raises(InferenceServerException, match="unknown model"):
            client.infer("nope", [inp])
    finally:
        local.close()


def test_bad_requests_get_what_local_serve_gives(app, cluster, jpegs):
    local = _Server(app=build_app(ServerConfig(model="demo", **CONFIG)))
    try:
        _deploy(replicas=1)
        for case, status, message in BAD_REQUESTS:
            want = send_bad_request(local.url, jpegs[0], case)
            got = send_bad_request(cluster["http"], jpegs[0], case)
            assert want[0] == status and got == want, (case, got, want)
    finally:
        local.close()


def test_a_replica_killed_under_load_is_replaced(app, cluster, jpegs):
    _deploy(replicas=2)
    assert _running() == 2
    victim = _replica_pids()[0]
    load = Load(cluster["http"], jpegs[0])
    time.sleep(3)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: victim not in _replica_pids(), 10)
    back_s = _wait(lambda: _running() == 2 and len(_replica_pids()) == 2, 90)
    time.sleep(3)
    results = load.finish()
    after = [r for r in results if r[0] > killed + back_s + 1]
    failed = [r for r in results if r[1] != 200]
    _record("replica-killed", {"requests": len(results), "failed": len(failed),
                               "statuses": sorted({str(r[1]) for r in failed}),
                               "bodies": sorted({str(r[2])[:120] for r in failed}),
                               "replica_back_s": round(back_s, 2),
                               "ready_codes": sorted({c for _, c in load.ready})})
    # only requests in flight on the killed replica may fail (8 clients: at most 8), each a 5xx
    # or a connection closed mid-answer (Ray's proxy had begun the response), both retryable;
    # none hung; the server stayed ready; after the replacement every request succeeds
    assert len(failed) <= 8, failed
    assert all(r[1] == "cut" or (isinstance(r[1], int) and r[1] >= 500) for r in failed), failed
    # a readiness probe is a request too: one on the killed replica fails as the others do
    # (seen once in CI: a 500 while the replica died); the server answered ready before and
    # after, and every probe after the replacement is 200
    bad_ready = [(t, c) for t, c in load.ready if c != 200]
    assert len(bad_ready) <= 2 and all(isinstance(c, int) and c >= 500 and t >= killed - 0.5
                                       for t, c in bad_ready), bad_ready
    assert all(c == 200 for t, c in load.ready if t > killed + back_s + 1)
    assert after and all(r[1] == 200 for r in after)


def test_rolling_update_to_another_model_drops_nothing(app, cluster, jpegs, models):
    a, b = models
    _deploy(a, replicas=2)
    load = Load(cluster["http"], jpegs[0])
    time.sleep(2)
    t0 = time.monotonic()
    _deploy(b, replicas=2)  # returns when the new replicas run
    deployed_s = time.monotonic() - t0
    _wait(lambda: any(r[2] == "model_b" for r in load.results[-8:]) and
          all(r[2] == "model_b" for r in load.results[-8:]), 60)
    time.sleep(1)
    results = load.finish()
    names = [r[2] for r in results]
    first_b = min(r[0] for r in results if r[2] == "model_b")
    last_a = max(r[0] for r in results if r[2] == "model_a")
    starts = sorted(r[0] for r in results)
    _record("rolling-update", {
        "requests": len(results), "failed": sum(r[1] != 200 for r in results),
        "deploy_s": round(deployed_s, 2),  # the redeploy call, until the new replicas run
        "first_new_answer_s": round(first_b - t0, 2), "last_old_answer_s": round(last_a - t0, 2),
        "longest_gap_between_requests_s": round(max(np.diff(starts)), 3)})
    assert all(r[1] == 200 for r in results), [r for r in results if r[1] != 200][:3]
    assert set(names) == {"model_a", "model_b"}  # every answer from exactly one of the two
    assert _http("GET", cluster["http"] + "/v2/health/ready")[0] == 200


def test_autoscaling_follows_a_burst(app, cluster, jpegs):
    _deploy(autoscale=(1, 2), target_ongoing_requests=1, upscale_delay_s=0.5,
            downscale_delay_s=2, metrics_interval_s=0.5)
    counts, t0 = [], time.monotonic()

    def note():  # the replica count, recorded when it changes
        n = _running()
        if not counts or counts[-1][1] != n:
            counts.append((round(time.monotonic() - t0, 1), n))
        return n

    assert note() == 1
    load = Load(cluster["http"], jpegs[0])
    _wait(lambda: note() == 2, 60)
    results = load.finish()
    counts.append((round(time.monotonic() - t0, 1), "load stopped"))
    _wait(lambda: note() == 1, 60)
    _record("autoscale", {"replicas_over_time": counts, "requests": len(results)})
    assert all(r[1] == 200 for r in results)
    assert min(n for _, n in counts if isinstance(n, int)) >= 1


def _cli(*args, timeout=120):
    exe = Path(sys.executable).with_name("singleshot")
    return subprocess.run([str(exe), "serve", "--engine", "ray", *args], capture_output=True,
                          text=True, timeout=timeout)


def _error(res) -> str:
    """The command's one error line (Ray's own start-up notes may come before it)."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_the_command_detaches_stops_and_writes_a_config(cluster, jpegs, tmp_path):
    where = ["--address", cluster["address"], "--port", str(cluster["http_port"]),
             "--grpc-port", str(cluster["grpc_port"])]
    res = _cli("--model", "demo", "--backend", "onnxruntime", "--replicas", "1",
               "--cpus-per-worker", "0.5", "--app-name", "cli", "--detach", *where)
    assert res.returncode == 0, res.stderr
    assert f"http://127.0.0.1:{cluster['http_port']}/" in res.stdout
    assert "--stop cli" in res.stdout and "Traceback" not in res.stderr
    assert "cli" in ray_serve.applications()
    code, body, _ = _http("POST", cluster["http"] + "/detect", jpegs[0],
                          {"Content-Type": "image/jpeg"})
    assert code == 200 and json.loads(body)["images"][0]["detections"]
    res = _cli("--stop", "cli", "--address", cluster["address"])
    assert res.returncode == 0 and "stopped" in res.stdout, res.stderr
    assert "cli" not in ray_serve.applications()
    res = _cli("--stop", "cli", "--address", cluster["address"])
    assert res.returncode == 2 and _error(res).startswith("error: no application 'cli'")
    # foreground: serves until SIGTERM, then the application goes with it (exit 0)
    exe = Path(sys.executable).with_name("singleshot")
    proc = subprocess.Popen([str(exe), "serve", "--engine", "ray", "--backend", "onnxruntime",
                             "--cpus-per-worker", "0.5", "--app-name", "fg", *where],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stdout.readline, "")
        out = "".join(next(lines) for _ in range(3))
        assert "127.0.0.1" in out and "Ctrl-C stops it" in next(lines)  # printed once running
        assert _running("fg") == 1
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "fg" not in ray_serve.applications()
    # a config file Ray Serve's own schema accepts, whose builder makes the application
    from ray.serve.schema import ServeDeploySchema

    cfg = tmp_path / "serve.yaml"
    res = _cli("--write-config", str(cfg), "--autoscale", "1,3", "--max-batch", "4")
    assert res.returncode == 0, res.stderr
    import yaml

    doc = yaml.safe_load(cfg.read_text())
    ServeDeploySchema.model_validate(doc) if hasattr(ServeDeploySchema, "model_validate") \
        else ServeDeploySchema.parse_obj(doc)
    (entry,) = doc["applications"]
    assert entry["deployments"][0]["autoscaling_config"]["max_replicas"] == 3
    assert entry["args"]["server"]["max_batch"] == 4
    assert ray_serve.build(entry["args"]) is not None
    # odd input: one line, exit 2, no traceback
    for args, message in ((["--autoscale", "2"], "MIN,MAX"),
                          (["--replicas", "2", "--autoscale", "1,2"], "give one"),
                          (["--model", str(tmp_path / "none.onnx")], "no such model file"),
                          (["--head-timeout-s", "3"], "local serve only"),
                          (["--write-config", str(cfg.with_suffix(".onnx")), "--model",
                            str(cfg.with_suffix(".onnx"))], "")):
        res = _cli(*args, "--address", cluster["address"])
        assert res.returncode == 2 and message in _error(res), (args, res.stderr)
