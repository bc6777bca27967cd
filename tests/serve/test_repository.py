"""`serve --model-repository DIR`: every model of a Triton-style folder, version policies, and
the folder watched: a version added is served (warmed first) after the poll interval, one
removed answers 404; repository load/unload through the API and the official client."""

import shutil
import time

import pytest

from singleshot.errors import UsageError
from singleshot.runtime.detector import Detector, resolve_model_path
from singleshot.serve.folder import FolderRepository, VersionPolicy, scan
from singleshot.serve.server import create_app
from test_server import _http, _Server

DEMO = resolve_model_path("demo")


def _layout(root, versions=(1,), extra=True):
    for v in versions:
        (root / "demo" / str(v)).mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO, root / "demo" / str(v) / "model.onnx")
    if extra:
        shutil.copy(DEMO, root / "other.onnx")
    (root / "notes").mkdir(exist_ok=True)  # no model file: not a model
    (root / "demo" / "latest").mkdir(exist_ok=True)  # not a version number: ignored
    return root


def _make(path):
    return [Detector(str(path), threads=1)]


def test_scan_and_version_policies(tmp_path):
    _layout(tmp_path, versions=(1, 2, 10))
    found = scan(tmp_path)
    assert sorted(found) == ["demo", "other"] and sorted(found["demo"], key=int) == ["1", "2", "10"]
    assert found["other"] == {"1": tmp_path / "other.onnx"}
    assert VersionPolicy.parse("latest:2").select(["1", "2", "10"]) == ["2", "10"]
    assert VersionPolicy.parse("latest").select(["1", "2", "10"]) == ["10"]
    assert VersionPolicy.parse("all").select(["10", "1"]) == ["1", "10"]
    assert VersionPolicy.parse("specific:1,3").select(["1", "2", "10"]) == ["1"]
    for bad in ("latest:0", "newest", "specific:", "specific:a", "all:2"):
        with pytest.raises(UsageError, match="version_policy"):
            VersionPolicy.parse(bad)
    with pytest.raises(UsageError, match="no models"):
        FolderRepository(tmp_path / "notes", _make)
    with pytest.raises(UsageError, match="no such folder"):
        FolderRepository(tmp_path / "missing", _make)


def _RepoServer(repository, **kw):
    return _Server(app=create_app(None, repository=repository, **kw))


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_watched_folder(tmp_path, scenes):
    import tritonclient.http as httpclient

    root = _layout(tmp_path / "repo")
    repo = FolderRepository(root, _make, policy=VersionPolicy.parse("latest:1"))
    s = _RepoServer(repo, poll_s=0.2)
    jpeg = scenes[0].read_bytes()
    try:
        client = httpclient.InferenceServerClient(url=s.url)
        index = client.get_model_repository_index()
        assert [(m["name"], m["version"], m["state"]) for m in index] == [
            ("demo", "1", "READY"), ("other", "1", "READY")]
        assert client.is_model_ready("other")
        # a new version: loaded and warmed, then it takes the requests without a version
        shutil.copytree(root / "demo" / "1", root / "demo" / "2")
        assert _wait(lambda: client.is_model_ready("demo", "2"))
        status, body, _ = _http("POST", s.url + "/detect?model=demo", jpeg,
                                {"Content-Type": "image/jpeg"})
        assert status == 200
        meta = client.get_model_metadata("demo")
        assert meta["versions"] == ["2"]  # latest:1 - version 1 went when 2 came
        assert _http("GET", s.url + "/v2/models/demo/versions/1")[0] == 404
        # a model removed from the folder: 404
        (root / "other.onnx").unlink()
        assert _wait(lambda: _http("GET", s.url + "/v2/models/other")[0] == 404)
        # a model added while polling is off for it: repository load finds it at once
        shutil.copy(DEMO, root / "third.onnx")
        client.load_model("third")
        assert client.is_model_ready("third")
        client.unload_model("third")
        time.sleep(0.5)  # polls pass: an unloaded model stays unloaded
        assert not client.is_model_ready("third")
        (entry,) = [m for m in client.get_model_repository_index() if m["name"] == "third"]
        assert entry["state"] == "UNAVAILABLE" and entry["reason"] == "unloaded"
    finally:
        s.close()


def test_requests_in_flight_finish_when_a_version_goes(tmp_path, scenes):
    """Version 1 removed while a request waits in its batcher (held by a 400 ms batching
    delay): that request is answered, later ones go to version 2."""
    from concurrent.futures import ThreadPoolExecutor

    from singleshot.serve.models import Batching

    root = _layout(tmp_path / "repo", extra=False)
    repo = FolderRepository(root, _make, batching=Batching(max_delay_ms=400, max_batch=64))
    s = _RepoServer(repo)
    jpeg = scenes[0].read_bytes()
    try:
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(_http, "POST", s.url + "/detect", jpeg,
                              {"Content-Type": "image/jpeg"})
            assert _wait(lambda: repo.models["demo"]["1"].batcher.waiting > 0)  # queued
            shutil.copytree(root / "demo" / "1", root / "demo" / "2")
            shutil.rmtree(root / "demo" / "1")
            assert repo.sync() == ["demo version 2: added", "demo version 1: removed"]
            assert fut.result()[0] == 200
        assert _http("GET", s.url + "/v2/models/demo/versions/2/ready")[0] == 200
    finally:
        s.close()


def test_a_request_on_its_way_when_its_version_goes_is_not_lost(tmp_path, scenes):
    """Found version 1, then version 1 unloaded before it was queued: a request that named no
    version is answered by the newest; one that named version 1 gets 404 - never a 500."""
    from singleshot.serve.service import Service, ServiceError

    root = _layout(tmp_path / "repo", versions=(1, 2), extra=False)
    repo = FolderRepository(root, _make, policy=VersionPolicy.parse("all"))
    for mv in repo.all_versions():
        mv.load()
    service = Service(repo)
    old = repo.find("demo", "1")
    old.unload()
    jpeg = scenes[0].read_bytes()
    dets, _ = _await(service.run(old, [jpeg], {"conf": 0.25}))
    assert len(dets) == 1 and len(dets[0]) > 0
    with pytest.raises(ServiceError) as err:
        _await(service.run(old, [jpeg], {"conf": 0.25}, pinned=True))
    assert err.value.status == 404
    repo.find("demo", "2").unload()


def _await(coro):
    """``coro`` run to its end on a loop of its own, in a thread (whatever runs in this one)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
