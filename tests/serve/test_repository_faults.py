"""A model repository whose files go wrong while it serves (issue 34): a half-copied or broken
new version, a model file that would take gigabytes to load, a link out of the folder, a
repository where nothing loads. The versions serving keep serving through every one of them."""

import json
import shutil
import threading
import time

import onnx
import pytest
from onnx import TensorProto, helper
from test_repository import _wait
from test_server import _http, _Server, serve_process

from singleshot.runtime.detector import Detector, resolve_model_path
from singleshot.serve.folder import FolderRepository, VersionPolicy
from singleshot.serve.server import create_app

DEMO = resolve_model_path("demo")


def _bomb(path):
    """100 bytes that onnxruntime would spend 78 s and 2.2 GB folding."""
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"],
                            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
    graph = helper.make_graph([node], "bomb", [], [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [50000, 50000])])
    onnx.save(helper.make_model(graph), str(path))


class Load:
    """Clients posting /detect without a version until stopped; counts what failed."""

    def __init__(self, url, jpeg, clients=3):
        self.url, self.jpeg, self.stop = url, jpeg, threading.Event()
        self.ok, self.failed = 0, []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop.is_set():
            status, body, _ = _http("POST", self.url + "/detect?model=demo", self.jpeg,
                                    {"Content-Type": "image/jpeg"})
            if status == 200:
                self.ok += 1
            else:
                self.failed.append((status, body[:200]))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        return self.failed


def _index(url):
    status, body, _ = _http("POST", url + "/v2/repository/index", b"{}",
                            {"Content-Type": "application/json"})
    assert status == 200
    return {(m["name"], m["version"]): m for m in json.loads(body)}


def test_a_broken_new_version_never_fails_a_request(tmp_path, scenes):
    root = tmp_path / "repo"
    (root / "demo" / "1").mkdir(parents=True)
    shutil.copy(DEMO, root / "demo" / "1" / "model.onnx")
    loads = []

    def make(path):
        loads.append(path.parent.name)
        return [Detector(str(path), threads=1)]

    repo = FolderRepository(root, make, policy=VersionPolicy.parse("latest:1"))
    s = _Server(app=create_app(None, repository=repo, poll_s=0.2))
    load = Load(s.url, scenes[0].read_bytes())
    try:
        # half a file copied: version 2 fails to load, version 1 keeps serving
        (root / "demo" / "2").mkdir()
        data = DEMO.read_bytes()
        (root / "demo" / "2" / "model.onnx").write_bytes(data[: len(data) // 2])
        assert _wait(lambda: ("demo", "2") in _index(s.url))
        entry = _index(s.url)[("demo", "2")]
        assert entry["state"] == "UNAVAILABLE" and entry["reason"].startswith("failed to load")
        assert "\n" not in entry["reason"] and str(root) not in entry["reason"]
        assert _index(s.url)[("demo", "1")]["state"] == "READY"
        tries = loads.count("2")
        time.sleep(1.0)  # five polls: the unchanged broken file is not tried again
        assert loads.count("2") == tries
        # a new model beside the broken version is picked up by the same polls
        shutil.copy(DEMO, root / "zzz.onnx")
        assert _wait(lambda: _http("GET", s.url + "/v2/models/zzz/ready")[0] == 200)
        # the copy finishes: version 2 loads, warms, then takes over from version 1
        shutil.copy(DEMO, root / "demo" / "2" / "model.onnx")
        assert _wait(lambda: _http("GET", s.url + "/v2/models/demo/versions/2/ready")[0] == 200)
        assert _wait(lambda: ("demo", "1") not in _index(s.url))
        time.sleep(0.5)
    finally:
        failed = load.finish()
        s.close()
    assert failed == [] and load.ok > 10, (failed[:3], load.ok)


def test_start_up_serves_what_loads(tmp_path, scenes):
    """One unreadable file, a load bomb and a link out of the folder beside a good model:
    the server starts, serves the good one, reports the others; an explicit load of a broken
    one is 400 with the reason."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(DEMO, root / "good.onnx")
    (root / "broken.onnx").write_bytes(b"\x08\x07not an onnx file")
    _bomb(root / "bomb.onnx")
    outside = tmp_path / "outside.onnx"
    shutil.copy(DEMO, outside)
    (root / "linked.onnx").symlink_to(outside)
    proc, url = serve_process("--no-grpc", "--model-repository", str(root))
    try:
        assert proc.poll() is None and _http("GET", url + "/v2/health/ready")[0] == 200
        index = _index(url)
        assert index[("good", "1")]["state"] == "READY"
        for name, words in (("broken", "not a valid ONNX"), ("bomb", "--max-model-mb"),
                            ("linked", "--follow-symlinks")):
            entry = index[(name, "1")]
            assert entry["state"] == "UNAVAILABLE" and words in entry["reason"], entry
            assert str(tmp_path) not in entry["reason"]
        status, body, _ = _http("POST", url + "/detect?model=good", scenes[0].read_bytes(),
                                {"Content-Type": "image/jpeg"})
        assert status == 200
        status, body, _ = _http("POST", url + "/v2/repository/models/broken/load", b"", {})
        assert status == 400 and "not a valid ONNX" in json.loads(body)["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_repository_where_nothing_loads_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from test_server import _free_port

    root = tmp_path / "repo"
    root.mkdir()
    (root / "broken.onnx").write_bytes(b"nothing")
    exe = Path(sys.executable).with_name("singleshot")
    res = subprocess.run([str(exe), "serve", "--no-grpc", "--port", str(_free_port()),
                          "--model-repository", str(root)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    assert "error: no model could be loaded: broken version 1: failed to load" in res.stderr


def test_a_model_over_the_size_limit_is_refused_before_loading(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from test_server import _free_port

    exe = Path(sys.executable).with_name("singleshot")  # a process: a server that starts ends
    res = subprocess.run([str(exe), "serve", "--no-grpc", "--port", str(_free_port()),
                          "--max-model-mb", "0.01"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--max-model-mb" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_follow_symlinks_serves_a_linked_file(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "linked.onnx").symlink_to(DEMO)
    refused = FolderRepository(root, lambda p: [Detector(str(p), threads=1)])
    refused.sync()
    assert refused.find("linked").state == "UNAVAILABLE"
    followed = FolderRepository(root, lambda p: [Detector(str(p), threads=1)],
                                follow_symlinks=True)
    followed.sync()
    assert followed.find("linked").state == "READY"
    followed.find("linked").unload()


@pytest.mark.parametrize("override", [{"config": "{}"}, {"file:1/model.onnx": "eA=="}])
def test_grpc_load_overrides_are_refused(override):
    from singleshot.serve.grpc_service import InferenceServicer  # noqa: F401 - the same check
    from singleshot.serve.service import ServiceError, check_load_request

    with pytest.raises(ServiceError) as err:
        check_load_request({"parameters": override})
    assert err.value.status == 400 and "not supported" in err.value.message
