"""gRPC (OIP v2 / Triton GRPCInferenceService) with the official tritonclient.grpc, unchanged:
health, metadata, config, statistics, repository, infer and stream_infer giving the tensors the
HTTP endpoint gives, and the refusals as gRPC status codes."""

import queue

import numpy as np
import pytest

from test_server import _Server

OUTPUT_NAMES = ("boxes", "scores", "category_ids", "num_detections")


@pytest.fixture(scope="module")
def server():
    s = _Server(max_body_mb=1, grpc_port=0, max_queue=4)
    yield s
    s.close()


@pytest.fixture(scope="module")
def jpegs(scenes):
    return [p.read_bytes() for p in scenes[:3]]


def _grpc(server, **kw):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.app.state.grpc_port}", **kw)


def _inputs(module, jpegs):
    inp = module.InferInput("image", [len(jpegs)], "BYTES")
    inp.set_data_from_numpy(np.array(jpegs, dtype=np.object_))
    return [inp]


def _tensors(result):
    return {n: result.as_numpy(n) for n in OUTPUT_NAMES}


def test_grpc_and_http_give_identical_tensors(server, jpegs):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    g = _grpc(server)
    assert g.is_server_live() and g.is_server_ready() and g.is_model_ready("demo")
    assert g.is_model_ready("demo", "1") and not g.is_model_ready("demo", "9")
    assert not g.is_model_ready("nope")
    meta = g.get_model_metadata("demo", as_json=True)
    assert meta["inputs"][0] == {"name": "image", "datatype": "BYTES", "shape": ["-1"]}
    assert [o["name"] for o in meta["outputs"]] == list(OUTPUT_NAMES)
    assert "statistics" in g.get_server_metadata(as_json=True)["extensions"]
    config = g.get_model_config("demo", as_json=True)["config"]
    assert config["name"] == "demo" and config["input"][0]["data_type"] == "TYPE_STRING"
    assert config["dynamic_batching"].get("max_queue_delay_microseconds", "0") == "0"
    h = httpclient.InferenceServerClient(url=server.url)
    params = {"conf": 0.3, "max_det": 20}
    a = _tensors(g.infer("demo", _inputs(grpcclient, jpegs), parameters=params))
    b = _tensors(h.infer("demo", _inputs(httpclient, jpegs), parameters=params))
    assert a["num_detections"].tolist() == b["num_detections"].tolist()
    assert max(a["num_detections"]) <= 20 and min(a["num_detections"]) > 0
    for n in OUTPUT_NAMES:
        assert a[n].dtype == b[n].dtype
        np.testing.assert_array_equal(a[n], b[n])
    # one output asked for, by version
    one = g.infer("demo", _inputs(grpcclient, jpegs[:1]), model_version="1", parameters=params,
                  outputs=[grpcclient.InferRequestedOutput("num_detections")])
    assert one.as_numpy("num_detections").tolist() == a["num_detections"][:1].tolist()
    assert one.as_numpy("boxes") is None


def test_stream_infer(server, jpegs):
    import tritonclient.grpc as grpcclient

    g = _grpc(server)
    results: queue.Queue = queue.Queue()
    g.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for k in range(3):
            g.async_stream_infer("demo", _inputs(grpcclient, jpegs[k:k + 1]), request_id=str(k))
        g.async_stream_infer("demo", _inputs(grpcclient, [b"not an image"]), request_id="bad")
        got = [results.get(timeout=60) for _ in range(4)]
    finally:
        g.stop_stream()
    ok = [r for r, e in got if e is None]
    assert sorted(r.get_response().id for r in ok) == ["0", "1", "2"]
    errors = [e for r, e in got if e is not None]
    assert len(errors) == 1 and "image 0" in str(errors[0])


def test_statistics_and_repository(jpegs):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    s = _Server(grpc_port=0)
    try:
        g = _grpc(s)
        g.infer("demo", _inputs(grpcclient, jpegs[:2]))
        (st,) = g.get_inference_statistics("demo", as_json=True)["model_stats"]
        assert st["inference_count"] == "2" and st["inference_stats"]["success"]["count"] == "1"
        assert int(st["inference_stats"]["compute_infer"]["ns"]) > 0
        index = g.get_model_repository_index(as_json=True)["models"]
        assert index == [{"name": "demo", "version": "1", "state": "READY"}]
        g.unload_model("demo")
        assert not g.is_model_ready("demo")
        with pytest.raises(InferenceServerException) as err:
            g.infer("demo", _inputs(grpcclient, jpegs[:1]))
        assert err.value.status() == "StatusCode.NOT_FOUND"
        g.load_model("demo")
        assert g.is_model_ready("demo")
        assert g.infer("demo", _inputs(grpcclient, jpegs[:1])).as_numpy("num_detections")[0] > 0
    finally:
        s.close()


@pytest.mark.parametrize("case, code, message", [
    ("corrupt", "INVALID_ARGUMENT", "image 0"),
    ("param", "INVALID_ARGUMENT", "conf"),
    ("model", "NOT_FOUND", "unknown model"),
    ("version", "NOT_FOUND", "no version"),
    ("output", "INVALID_ARGUMENT", "unknown output 'masks'"),
    ("too_many", "INVALID_ARGUMENT", "at most 4"),
    ("too_big", "RESOURCE_EXHAUSTED", ""),
])
def test_refusals_are_grpc_status_codes(server, jpegs, case, code, message):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    g = _grpc(server)
    images, kw = jpegs[:1], {}
    if case == "corrupt":
        images = [b"not an image at all"]
    elif case == "param":
        kw["parameters"] = {"conf": 7.0}
    elif case == "output":
        kw["outputs"] = [grpcclient.InferRequestedOutput("masks")]
    elif case == "version":
        kw["model_version"] = "3"
    elif case == "too_many":
        images = jpegs[:1] * 5
    elif case == "too_big":  # over the 1 MB message limit (--max-body-mb)
        images = [b"\0" * (2 << 20)]
    with pytest.raises(InferenceServerException) as err:
        g.infer("nope" if case == "model" else "demo", _inputs(grpcclient, images), **kw)
    assert err.value.status() == f"StatusCode.{code}", err.value
    assert message in err.value.message()
    assert g.infer("demo", _inputs(grpcclient, jpegs[:1])).as_numpy("num_detections")[0] > 0


def test_api_key_over_grpc(jpegs):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    s = _Server(grpc_port=0, api_key="s3cret")
    try:
        g = _grpc(s)
        assert g.is_server_ready() and g.is_model_ready("demo")  # probes: no key
        with pytest.raises(InferenceServerException) as err:
            g.infer("demo", _inputs(grpcclient, jpegs[:1]))
        assert err.value.status() == "StatusCode.UNAUTHENTICATED"
        result = g.infer("demo", _inputs(grpcclient, jpegs[:1]),
                         headers={"authorization": "bearer s3cret"})
        assert result.as_numpy("num_detections")[0] > 0
    finally:
        s.close()


def test_settings_over_grpc():

    from tritonclient.utils import InferenceServerException

    s = _Server(grpc_port=0)
    try:
        g = _grpc(s)
        log = g.get_log_settings(as_json=True)["settings"]
        assert log["log_info"] == {"bool_param": True}
        after = g.update_log_settings({"log_warning": False}, as_json=True)["settings"]
        assert after["log_warning"] == {"bool_param": False}
        assert g.get_trace_settings(as_json=True)["settings"]["trace_level"] == {"value": ["OFF"]}
        with pytest.raises(InferenceServerException) as err:
            g.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException) as err:
            g.get_system_shared_memory_status()
        assert err.value.status() == "StatusCode.UNIMPLEMENTED"
    finally:
        s.close()


def test_a_burst_beyond_the_queue_is_resource_exhausted_then_recovers(jpegs):
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    s = _Server(max_queue=2, max_batch=1, max_delay_ms=0, grpc_port=0)
    try:
        def one(_):
            g = _grpc(s)
            try:
                g.infer("demo", _inputs(grpcclient, jpegs[:1] * 2))
                return "OK"
            except InferenceServerException as err:
                return err.status()

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(36)))
        assert set(results) <= {"OK", "StatusCode.RESOURCE_EXHAUSTED"}
        assert "OK" in results and "StatusCode.RESOURCE_EXHAUSTED" in results
        assert all(one(0) == "OK" for _ in range(3))  # recovered
    finally:
        s.close()
