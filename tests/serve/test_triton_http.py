"""The Triton extensions over HTTP with the official tritonclient, unchanged: model
configuration, versions in every path, repository index/load/unload, statistics, compressed
requests and responses, and an unknown output answered 400 as Triton does."""

import gzip
import json
import zlib

import numpy as np
import pytest

from test_server import _http, _Server

OUTPUT_NAMES = ("boxes", "scores", "category_ids", "num_detections")


@pytest.fixture(scope="module")
def server():
    s = _Server(max_body_mb=1, api_key=None)
    yield s
    s.close()


@pytest.fixture(scope="module")
def jpegs(scenes):
    return [p.read_bytes() for p in scenes[:2]]


def _infer(client, jpegs, **kw):
    import tritonclient.http as httpclient

    inp = httpclient.InferInput("image", [len(jpegs)], "BYTES")
    inp.set_data_from_numpy(np.array(jpegs, dtype=np.object_), binary_data=True)
    outs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in OUTPUT_NAMES]
    result = client.infer("demo", [inp], outputs=outs, **kw)
    return {n: result.as_numpy(n) for n in OUTPUT_NAMES}


def test_config_versions_and_server_metadata(server, jpegs):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server.url)
    config = client.get_model_config("demo")
    assert config["name"] == "demo" and config["max_batch_size"] == 0
    assert config["input"] == [{"name": "image", "data_type": "TYPE_STRING",
                                "format": "FORMAT_NONE", "dims": [-1]}]
    assert [o["name"] for o in config["output"]] == list(OUTPUT_NAMES)
    # a graph that takes one image per call: no batching delay by default
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    assert config["instance_group"][0]["count"] == 1
    assert client.get_model_config("demo", model_version="1") == config
    meta = client.get_model_metadata("demo", model_version="1")
    assert meta["versions"] == ["1"]
    assert meta["parameters"]["backend"] == "onnxruntime" and len(meta["parameters"]["class_names"]) > 0
    assert client.is_model_ready("demo", model_version="1")
    assert not client.is_model_ready("demo", model_version="7")
    a = _infer(client, jpegs)
    b = _infer(client, jpegs, model_version="1")
    for n in OUTPUT_NAMES:
        np.testing.assert_array_equal(a[n], b[n])
    status, body, _ = _http("GET", server.url + "/v2/models/demo/versions/7")
    assert status == 404 and "no version '7'" in json.loads(body)["error"]
    extensions = client.get_server_metadata()["extensions"]
    assert {"model_configuration", "model_repository", "statistics"} <= set(extensions)


def test_statistics_count_requests_and_stages(jpegs):
    import tritonclient.http as httpclient

    s = _Server()  # a server of its own: counts start at 0
    try:
        client = httpclient.InferenceServerClient(url=s.url)
        _infer(client, jpegs)
        _infer(client, jpegs[:1])
        (st,) = client.get_inference_statistics("demo")["model_stats"]
        assert st["name"] == "demo" and st["version"] == "1"
        assert st["inference_count"] == 3 and st["execution_count"] >= 2
        inf = st["inference_stats"]
        assert inf["success"]["count"] == 2 and inf["fail"]["count"] == 0
        for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
            assert inf[stage]["count"] == 2 and inf[stage]["ns"] > 0, stage
        parts = sum(inf[k]["ns"] for k in ("queue", "compute_input", "compute_infer",
                                           "compute_output"))
        assert parts <= inf["success"]["ns"] * 1.01
        assert sum(b["compute_infer"]["count"] for b in st["batch_stats"]) == st["execution_count"]
        assert st["last_inference"] > 0
        everything = client.get_inference_statistics()["model_stats"]
        assert [m["name"] for m in everything] == ["demo"]
        status, _, _ = _http("POST", s.url + "/v2/models/demo/infer", b"{bad",
                             {"Content-Type": "application/json"})
        assert status == 400
        (st,) = client.get_inference_statistics("demo", model_version="1")["model_stats"]
        assert st["inference_stats"]["fail"]["count"] == 1
    finally:
        s.close()


def test_repository_index_unload_and_load(jpegs):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    s = _Server()
    try:
        client = httpclient.InferenceServerClient(url=s.url)
        assert client.get_model_repository_index() == [
            {"name": "demo", "version": "1", "state": "READY", "reason": ""}]
        client.unload_model("demo")
        (entry,) = client.get_model_repository_index()
        assert entry["state"] == "UNAVAILABLE" and entry["reason"] == "unloaded"
        assert not client.is_model_ready("demo")
        with pytest.raises(InferenceServerException, match="not ready"):
            _infer(client, jpegs)
        status, _, _ = _http("POST", s.url + "/v2/models/demo/infer", b"{}",
                             {"Content-Type": "application/json"})
        assert status == 404
        client.load_model("demo")
        assert client.is_model_ready("demo")
        assert _infer(client, jpegs)["num_detections"].shape == (2,)
        with pytest.raises(InferenceServerException, match="unknown model"):
            client.load_model("nope")
    finally:
        s.close()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(server, jpegs, algorithm):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server.url)
    plain = _infer(client, jpegs)
    packed = _infer(client, jpegs, request_compression_algorithm=algorithm,
                    response_compression_algorithm=algorithm)
    for n in OUTPUT_NAMES:
        np.testing.assert_array_equal(plain[n], packed[n])
    # the response really is coded as asked
    body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "data": [__import__("base64").b64encode(jpegs[0]).decode()]}]})
    coded = gzip.compress(body.encode()) if algorithm == "gzip" else zlib.compress(body.encode())
    status, payload, headers = _http("POST", server.url + "/v2/models/demo/infer", coded,
                                     {"Content-Type": "application/json",
                                      "Content-Encoding": algorithm,
                                      "Accept-Encoding": algorithm})
    assert status == 200 and headers.get("content-encoding") == algorithm
    text = gzip.decompress(payload) if algorithm == "gzip" else zlib.decompress(payload)
    assert json.loads(text)["outputs"][3]["data"][0] == plain["num_detections"][0]


@pytest.mark.parametrize("case, status, message", [
    ("not-gzip", 400, "not valid gzip"),
    ("bomb", 413, "inflated body is over the limit"),
    ("unknown-coding", 400, "not supported"),
    ("unknown-output", 400, "unknown output 'masks'"),
])
def test_bad_codings_and_outputs_are_4xx(server, jpegs, case, status, message):
    import base64

    doc = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                       "data": [base64.b64encode(jpegs[0]).decode()]}]}
    headers = {"Content-Type": "application/json"}
    body = json.dumps(doc).encode()
    if case == "not-gzip":
        headers["Content-Encoding"] = "gzip"
    elif case == "bomb":  # 40 KB that inflate to 40 MB, over the 1 MB limit
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(b"\0" * (40 << 20))
    elif case == "unknown-coding":
        headers["Content-Encoding"] = "br"
    else:
        doc["outputs"] = [{"name": "masks"}]
        body = json.dumps(doc).encode()
    got, payload, _ = _http("POST", server.url + "/v2/models/demo/infer", body, headers)
    assert got == status and message in json.loads(payload)["error"], payload


def test_log_and_trace_settings_and_what_is_not_offered(jpegs):
    import logging

    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    s = _Server()
    try:
        client = httpclient.InferenceServerClient(url=s.url)
        assert client.get_log_settings()["log_info"] is True
        after = client.update_log_settings({"log_info": False})
        assert after["log_info"] is False and after["log_warning"] is True
        assert logging.getLogger("uvicorn.access").level == logging.WARNING  # applied
        assert client.update_log_settings({"log_verbose_level": 1})["log_verbose_level"] == 1
        assert logging.getLogger("uvicorn.error").level == logging.DEBUG
        client.update_log_settings({"log_info": True, "log_verbose_level": 0})
        assert logging.getLogger("uvicorn.error").level == logging.INFO
        for bad in ({"log_file": "/tmp/x.log"}, {"log_info": "yes"}, {"colour": True}):
            with pytest.raises(InferenceServerException):
                client.update_log_settings(bad)
        assert client.get_trace_settings()["trace_level"] == ["OFF"]
        assert client.get_trace_settings(model_name="demo")["trace_level"] == ["OFF"]
        assert client.update_trace_settings(settings={"trace_level": ["OFF"]})["trace_level"] == ["OFF"]
        with pytest.raises(InferenceServerException, match="tracing is not offered"):
            client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})
        with pytest.raises(InferenceServerException, match="systemsharedmemory extension is not offered"):
            client.get_system_shared_memory_status()
        with pytest.raises(InferenceServerException, match="cudasharedmemory extension is not offered"):
            client.register_cuda_shared_memory("r", b"\0" * 8, 0, 8)
        assert _infer(client, jpegs)["num_detections"].shape == (2,)  # still serving
    finally:
        s.close()


def test_the_batching_delay_default_follows_the_graph(tmp_path):
    from singleshot.serve.models import BATCH_DELAY_MS, Batching

    class Graph:
        def __init__(self, batch_size):
            self.batch_size = batch_size

    assert Batching().delay_for(Graph(1)) == 0.0
    assert Batching().delay_for(Graph(None)) == BATCH_DELAY_MS == 5.0  # dynamic batch
    assert Batching(max_delay_ms=7).delay_for(Graph(1)) == 7
    s = _Server(max_delay_ms=7)
    try:
        status, body, _ = _http("GET", s.url + "/v2/models/demo/config")
        assert json.loads(body)["dynamic_batching"]["max_queue_delay_microseconds"] == 7000
    finally:
        s.close()
