"""serve --engine ray --proxy haproxy: a local Ray instance started with Ray Serve's HAProxy
ingress answers /detect byte for byte as local serve does, and gRPC too; a cluster that is
already running is not changed behind the user's back (one line)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from test_server import _free_port, _http, _Server

ray = pytest.importorskip("ray")  # an extra of `all`: CI installs it, so this never skips there

from singleshot.errors import UsageError  # noqa: E402
from singleshot.serve import ray_serve  # noqa: E402
from singleshot.serve.build import ServerConfig, build_app  # noqa: E402

CONFIG = dict(model="demo", backend="onnxruntime", preprocess="card")


def _haproxy_running() -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                exe = os.readlink(entry / "exe")
            except OSError:
                continue
            if Path(exe).name == "haproxy":
                return True
    return False


def test_haproxy_ingress_on_a_local_instance(scenes):
    if ray.is_initialized():  # another module's instance: this test starts its own
        ray.shutdown()
    local = _Server(app=build_app(ServerConfig(**CONFIG)))
    http, grpc = _free_port(), _free_port()
    try:
        deployed = ray_serve.run(ServerConfig(**CONFIG),
                                 ray_serve.Scaling(replicas=1, cpus_per_worker=0.5),
                                 port=http, grpc_port=grpc, proxy="haproxy")
        assert not deployed.joined and _haproxy_running()
        for path in scenes[:2]:
            got = [_http("POST", url + "/detect", path.read_bytes(),
                         {"Content-Type": "image/jpeg"})[:2]
                   for url in (local.url, f"127.0.0.1:{http}")]
            assert got[0][0] == 200 and got[0] == got[1]
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc}")
        inp = grpcclient.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([scenes[0].read_bytes()], dtype=np.object_))
        assert client.infer("demo", [inp]).as_numpy("num_detections")[0] > 0
        # with a cluster running, the flag is refused rather than silently not applied
        with pytest.raises(UsageError, match="RAY_SERVE_ENABLE_HA_PROXY=1 ray start"):
            ray_serve.run(ServerConfig(**CONFIG), ray_serve.Scaling(), proxy="haproxy")
    finally:
        local.close()
        os.environ.pop(ray_serve.HAPROXY_ENV, None)
        if ray.is_initialized():
            from ray import serve

            serve.shutdown()
            ray.shutdown()
