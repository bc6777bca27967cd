"""Triton's perf_analyzer, unchanged, against `singleshot serve` over HTTP and gRPC with real
JPEG inputs, and the exact bytes its --input-data convention sends, built with tritonclient's
own encoder.

perf_analyzer ships as a binary in the tritonclient 2.48.0 wheel (PyPI's perf-analyzer is a
placeholder); it needs libcudart (the nvidia-cuda-runtime-cu12 wheel) and libb64 (Debian's
libb64-0d), and that tritonclient wants NumPy < 2: a venv of its own, ``.venv-pa``, which
.ci/run builds; the test builds it when it is missing. libb64, when the system lacks it, is
unpacked from Debian's package into that venv (apt-get download needs no root)."""

from __future__ import annotations

import base64
import ctypes
import functools
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from test_server import _free_port, _http, serve_process

REPO = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def perf_analyzer() -> tuple[Path, dict]:
    venv = Path(os.environ.get("SINGLESHOT_PERF_ANALYZER_VENV", REPO / ".venv-pa"))
    exe = venv / "bin" / "perf_analyzer"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet",
                        "tritonclient==2.48.0", "nvidia-cuda-runtime-cu12", "numpy<2"],
                       check=True, timeout=900)
    libs = [str(p.parent) for p in venv.glob("lib/python3*/site-packages/nvidia/cuda_runtime/"
                                             "lib/libcudart.so.12")]
    extra = venv / "extra-libs"
    try:  # what the dynamic loader finds, as perf_analyzer will look for it
        ctypes.CDLL("libb64.so.0d")
        has_b64 = True
    except OSError:
        has_b64 = False
    if not has_b64 and not list(extra.glob("**/libb64.so.0d")):
        extra.mkdir(exist_ok=True)
        subprocess.run(["apt-get", "download", "libb64-0d"], cwd=extra, check=True, timeout=300)
        (deb,) = extra.glob("libb64-0d*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(extra)], check=True)
    libs += sorted({str(p.parent) for p in extra.glob("**/libb64.so.0d")})
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(
        [*libs, *filter(None, [os.environ.get("LD_LIBRARY_PATH")])])}
    return exe, env


def _input_data(path: Path, jpeg: bytes) -> None:
    """perf_analyzer's --input-data for a BYTES input: "b64" of the serialized tensor, i.e.
    each element as a 4-byte little-endian length and its bytes (Triton's layout)."""
    from tritonclient.utils import serialize_byte_tensor

    blob = serialize_byte_tensor(np.array([jpeg], dtype=np.object_)).item()
    assert blob == struct.pack("<I", len(jpeg)) + jpeg  # the convention, checked
    path.write_text(json.dumps({"data": [{"image": {"b64": base64.b64encode(blob).decode(),
                                                    "shape": [1]}}]}))


def test_the_bytes_perf_analyzer_sends_are_understood(scenes):
    """The request perf_analyzer builds from that input data (binary tensor data, the
    serialized element as the tensor's bytes) gives the detections of the JPEG itself."""
    from tritonclient.utils import serialize_byte_tensor

    from test_server import _Server

    jpeg = scenes[0].read_bytes()
    blob = serialize_byte_tensor(np.array([jpeg], dtype=np.object_)).item()
    head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "parameters": {"binary_data_size": len(blob)}}],
                       "outputs": [{"name": "num_detections"}]}).encode()
    s = _Server()
    try:
        status, body, _ = _http("POST", s.url + "/v2/models/demo/infer", head + blob, {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(head))})
        assert status == 200, body
        n = json.loads(body)["outputs"][0]["data"][0]
        plain = _http("POST", s.url + "/detect?conf=model", jpeg, {"Content-Type": "image/jpeg"})
        assert n == len(json.loads(plain[1])["images"][0]["detections"]) > 0
    finally:
        s.close()


def test_perf_analyzer_runs_over_http_and_grpc(tmp_path, scenes):
    exe, env = perf_analyzer()
    data = tmp_path / "images.json"
    _input_data(data, scenes[0].read_bytes())
    gport = _free_port()
    server, url = serve_process("--grpc-port", str(gport))
    port = int(url.rsplit(":", 1)[1])
    try:
        for protocol, p in (("http", port), ("grpc", gport)):
            res = subprocess.run([str(exe), "-m", "demo", "-u", f"127.0.0.1:{p}", "-i", protocol,
                                  "--input-data", str(data), "--concurrency-range", "1:16:15",
                                  "--measurement-interval", "1000", "--max-trials", "4",
                                  "--stability-percentage", "50"],
                                 capture_output=True, text=True, timeout=180, env=env)
            out = res.stdout + res.stderr
            assert res.returncode == 0, out[-3000:]
            rates = [float(x) for x in re.findall(r"Concurrency: \d+, throughput: ([\d.]+)", out)]
            assert len(rates) == 2 and min(rates) > 0, out[-2000:]
            # it read the statistics extension: the server's side of each measurement
            assert "compute infer" in out and "Server:" in out
            assert not re.search(r"[1-9]\d* errors?", out.split("Inferences/Second")[0]), out
    finally:
        server.terminate()
        server.wait(timeout=60)
