"""The command line end to end: export -> detect -> info, JSON schema, exit codes, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import lively_model, make_corpus
from typer.testing import CliRunner

from singleshot.cli import app


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def mlperf_pth(tmp_path_factory):
    """An MLPerf-style ``{"model": state_dict}`` checkpoint of a narrow 300 model."""
    path = tmp_path_factory.mktemp("ckpt") / "resnet34-ssd300.pth"
    torch.save({"model": lively_model().state_dict()}, path)
    return path


def test_export_detect_info_end_to_end(mlperf_pth, tmp_path, photo):
    out = tmp_path / "m.onnx"
    code, stdout, stderr = run("export", mlperf_pth, "-o", out, "--input-size", "300", "--opset", "12")
    assert code == 0, stderr
    assert "zoo contract" in stdout and "8732 default boxes" in stdout and "0 unmatched" in stdout
    code, stdout, stderr = run("detect", photo, "--model", out, "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    (img,) = doc["images"]
    assert img["path"] == str(photo) and (img["width"], img["height"]) == (320, 240)
    assert img["error"] is None and len(img["detections"]) > 0
    for d in img["detections"]:
        assert set(d) == {"box", "score", "category_id", "category"}
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240
        assert isinstance(d["category_id"], int) and isinstance(d["category"], str)
    scores = [d["score"] for d in img["detections"]]
    assert scores == sorted(scores, reverse=True)
    code, stdout, _ = run("info", out)
    assert code == 0 and "contract: zoo" in stdout and "NonMaxSuppression" in stdout
    assert "quantized: no" in stdout
    code, stdout, _ = run("info", out, "--json")
    info = json.loads(stdout)
    assert info["contract"] == "zoo" and info["opset"]["ai.onnx"] == 12
    assert info["nms"]["iou_threshold"] == 0.5 and info["metadata"]["contract"] == "zoo"


def test_export_raw_and_detect(mlperf_pth, tmp_path, photo):
    out = tmp_path / "raw.onnx"
    code, stdout, stderr = run("export", mlperf_pth, "-o", out, "--input-size", "300", "--raw")
    assert code == 0, stderr
    code, stdout, _ = run("info", out, "--json")
    assert json.loads(stdout)["contract"] == "raw"
    code, stdout, stderr = run("detect", photo, "--model", out, "--json", "--conf", "0.3")
    assert code == 0, stderr
    dets = json.loads(stdout)["images"][0]["detections"]
    assert dets and all(d["score"] > 0.3 for d in dets)


def test_detect_mixed_folder_reports_each_failure(tiny_zoo_onnx, tmp_path):
    good, bad = make_corpus(tmp_path / "mixed")
    out = tmp_path / "out"
    code, stdout, stderr = run("detect", tmp_path / "mixed", tmp_path / "missing.jpg",
                               "--model", tiny_zoo_onnx, "--json", "--out", out)
    assert code == 1
    doc = json.loads(stdout)
    by_name = {Path(i["path"]).name: i for i in doc["images"]}
    assert set(by_name) == set(good) | set(bad) | {"missing.jpg"}  # README.txt skipped
    for name in good:
        assert by_name[name]["error"] is None and by_name[name]["width"] > 0
    for name in [*bad, "missing.jpg"]:
        assert name in by_name[name]["error"] and by_name[name]["detections"] == []
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == len(bad) + 1
    saved = json.loads((out / "detections.json").read_text())
    assert saved["images"] == doc["images"]
    assert len(list(out.glob("*.jpg"))) == len(good)


def test_detect_human_output_and_glob(tiny_zoo_onnx, photo):
    code, stdout, _ = run("detect", str(photo.parent / "*.jpg"), "--model", tiny_zoo_onnx,
                          "--max-det", "3")
    assert code == 0 and f"{photo}: 3 detections" in stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model"], "unknown model"),
    (["--model", "missing.onnx"], "no such model file"),
    (["--model", "README.md"], "not a valid ONNX model"),
    (["--conf", "1.5"], "--conf"),
    (["--max-det", "0"], "--max-det"),
])
def test_detect_usage_errors(photo, tiny_zoo_onnx, args, message):
    if "--model" not in args:
        args = [*args, "--model", str(tiny_zoo_onnx)]
    code, stdout, stderr = run("detect", photo, *args)
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_export_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02garbage")
    code, _, stderr = run("export", bad, "-o", tmp_path / "x.onnx")
    assert code == 2 and "bad.pth" in stderr and "Traceback" not in stderr  # a model error
    assert not (tmp_path / "x.onnx").exists()


def test_models_json():
    code, stdout, _ = run("models", "--json")
    names = {m["name"]: m for m in json.loads(stdout)["models"]}
    assert code == 0 and {"ssd-10", "ssd-12", "ssd-12-int8", "ssd-12-qdq"} <= set(names)
    assert names["ssd-10"]["sha256"].startswith("80013dd9") and names["ssd-10"]["card_map"] == 0.195
    assert names["ssd-12"]["size"] == 80366315


def test_console_script_runs(tiny_zoo_onnx, photo):
    """The installed entry point, in a real subprocess."""
    exe = Path(sys.executable).with_name("singleshot")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "singleshot"]
    res = subprocess.run([*cmd, "detect", str(photo), "--model", str(tiny_zoo_onnx), "--json"],
                         capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["images"][0]["error"] is None


def test_inference_needs_no_torch(tiny_zoo_onnx, photo):
    """detect / info / models / demo work with torch made unimportable (the README's quick start
    installs no torch)."""
    code = (
        "import sys, json; sys.modules['torch'] = None\n"
        "from typer.testing import CliRunner\n"
        "from singleshot.cli import app\n"
        f"r = CliRunner().invoke(app, ['detect', {str(photo)!r}, '--model', {str(tiny_zoo_onnx)!r}, '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"assert CliRunner().invoke(app, ['info', {str(tiny_zoo_onnx)!r}]).exit_code == 0\n"
        "assert CliRunner().invoke(app, ['models']).exit_code == 0\n"
        f"d = CliRunner().invoke(app, ['demo', '--images', '2', '--out', {str(photo.parent / 'demo')!r}])\n"
        "assert d.exit_code == 0, d.output\n"
        "print(len(json.loads(r.stdout)['images'][0]['detections']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) > 0
