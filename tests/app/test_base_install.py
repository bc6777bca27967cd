"""On the base install (``pip install -e .``, no extras) every command and source kind that
needs an extra names it at option parsing - before any work and before any folder is made -
and URL sources work (fsspec is in the base install). Runs in a second venv: ``.venv-base``,
which .ci/run builds; the test builds it when it is missing (about a minute)."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.baseinstall


@functools.lru_cache(maxsize=1)
def base_python() -> Path:
    venv = Path(os.environ.get("SINGLESHOT_BASE_VENV", REPO / ".venv-base"))
    python = venv / "bin" / "python"
    if not (python.exists() and subprocess.run(
            [python, "-c", "import singleshot"], capture_output=True).returncode == 0):
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "-e", str(REPO)], check=True,
                       timeout=900)
    return python


def run(*args, cwd):
    python = base_python()
    res = subprocess.run([python, "-m", "singleshot", *map(str, args)], cwd=cwd,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "SINGLESHOT_HOME": str(cwd / "home")})
    return res.returncode, res.stdout, res.stderr


def test_the_base_venv_has_no_extras():
    code = subprocess.run([base_python(), "-c", "import importlib.util as u, sys; sys.exit("
                           "any(u.find_spec(m) for m in ('torch', 'av', 'fastapi', 'ray', "
                           "'openvino', 'mlperf_loadgen', 'cv2')))"]).returncode
    assert code == 0


@pytest.mark.parametrize("args, extra", [
    (["video", "clip.mp4", "-o", "OUT"], "video"),
    (["data", "synth-video", "-o", "OUT"], "video"),
    (["serve"], "serve"),
    (["data", "convert", "set", "--to", "yolo", "-o", "OUT"], "yolo"),
    (["detect", "photo.jpg", "--engine", "ray", "-o", "OUT"], "ray"),
    (["eval", "-m", "demo", "--images", ".", "--annotations", "a.json", "--engine", "ray",
      "-o", "OUT"], "ray"),
    (["detect", "photo.jpg", "--backend", "openvino", "-o", "OUT"], "openvino"),
    (["bench", "demo", "--scenario", "offline", "-o", "OUT"], "loadgen"),
    (["bench", "demo", "--backend", "onnxruntime,openvino", "-o", "OUT"], "openvino"),
    (["export", "x.pth", "-o", "OUT/x.onnx"], "torch"),
    (["train", "--data", ".", "-o", "OUT"], "torch"),
    (["eval", "--results", "r.json", "--annotations", "a.json", "--fast", "-o", "OUT"], "fast"),
])
def test_a_missing_extra_is_named_before_any_work(tmp_path, args, extra):
    code, stdout, stderr = run(*args, cwd=tmp_path)
    assert code == 2, stderr
    assert f"'{extra}' extra" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "OUT").exists()


def test_url_sources_on_the_base_install(tmp_path):
    from singleshot.perf.bench import sample_image

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.jpg").write_bytes(sample_image(320, 240))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/a.jpg"
        code, stdout, stderr = run("detect", url, "--json", cwd=tmp_path)
        assert code == 0, stderr
        assert '"error": null' in stdout and url in stdout
    finally:
        server.shutdown()
