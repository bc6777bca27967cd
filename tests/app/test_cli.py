"""The command line end to end: export -> detect -> info, JSON schema, exit codes, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from helpers import lively_model, make_corpus
from singleshot.app.cli import app


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
        "from singleshot.app.cli import app\n"
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


def test_version_and_help_without_placeholders():
    from singleshot import __version__

    code, stdout, _ = run("--version")
    assert code == 0 and stdout.strip() == f"singleshot {__version__}"
    for cmd in ("detect", "eval", "demo", "quantize", "export", "bench", "train", "info",
                "download", "models"):
        res = CliRunner().invoke(app, [cmd, "--help"], terminal_width=100)
        assert res.exit_code == 0
        assert "<list" not in res.output and "<str>" not in res.output and "{" not in res.output, cmd
    res = CliRunner().invoke(app, ["data", "synth", "--help"])
    assert "--num-images" in res.output and "--images" not in res.output  # old name hidden
    res = CliRunner().invoke(app, ["export", "--help"])
    assert "--out" in res.output and "--output" not in res.output


def test_renamed_options_keep_their_old_spelling(mlperf_pth, tiny_zoo_onnx, tmp_path):
    """export/quantize --output, data synth / demo --images N still work (hidden aliases);
    the old and new name with different values is a usage error."""
    code, _, err = run("export", mlperf_pth, "--output", tmp_path / "a.onnx", "--input-size", "300")
    assert code == 0 and (tmp_path / "a.onnx").is_file(), err
    code, _, err = run("data", "synth", "--out", tmp_path / "s", "--images", "2")
    assert code == 0 and len(list((tmp_path / "s" / "images").iterdir())) == 2, err
    code, _, err = run("data", "synth", "-o", tmp_path / "t", "--num-images", "3")
    assert code == 0 and len(list((tmp_path / "t" / "images").iterdir())) == 3, err
    code, _, err = run("data", "synth", "-o", tmp_path / "u", "--num-images", "3", "--images", "2")
    assert code == 2 and "--images is the old name of --num-images" in err
    code, out, err = run("quantize", tiny_zoo_onnx, "--output", tmp_path / "q.onnx", "--calib",
                         tmp_path / "s" / "images", "--num-images", "2")
    assert code == 0 and (tmp_path / "q.onnx").is_file(), err
    code, _, err = run("demo", "--images", "1", "--no-compare", "-o", tmp_path / "d")
    assert code == 0 and len(list((tmp_path / "d" / "annotated").iterdir())) == 1, err


def test_out_naming_a_file_is_a_usage_error(tiny_zoo_onnx, photo, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    for args in (["detect", photo, "--model", tiny_zoo_onnx, "-o", taken],
                 ["demo", "--num-images", "1", "-o", taken],
                 ["data", "synth", "-o", taken, "--num-images", "1"],
                 ["bench", "demo", "--iterations", "1", "--no-throughput", "-o", taken],
                 ["eval", "-m", tiny_zoo_onnx, "--images", tmp_path, "--annotations", taken,
                  "-o", taken],
                 ["train", "--data", tmp_path, "-o", taken],
                 ["export", photo, "-o", tmp_path]):
        code, _, err = run(*args)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (args, err)
        assert str(taken) in err or str(tmp_path) in err, err
    assert taken.read_text() == "not a folder"


def test_missing_optional_packages_fail_at_option_parsing(tmp_path, monkeypatch):
    """eval --fast and bench --scenario name the extra before any work (the import of a package
    that is not installed fails, as it would without the extra)."""
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)
    code, _, err = run("eval", "--results", tmp_path / "r.json", "--annotations",
                       tmp_path / "a.json", "--fast")
    assert code == 2 and "pip install 'singleshot[fast]'" in err
    code, _, err = run("bench", "demo", "--scenario", "offline", "--iterations", "1")
    assert code == 2 and "pip install 'singleshot[loadgen]'" in err and "p50" not in err
    code, _, err = run("bench", "demo", "--scenario", "sometimes")
    assert code == 2 and "--scenario" in err
    monkeypatch.setitem(sys.modules, "ray.data", None)
    code, _, err = run("detect", tmp_path, "--engine", "ray")
    assert code == 2 and "pip install 'singleshot[ray]'" in err
    code, _, err = run("detect", tmp_path, "--workers", "2")
    assert code == 2 and "--workers only apply to --engine ray" in err
    res = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.modules['torch'] = None; "
                          "runpy.run_path('scripts/make_small_model.py', run_name='__main__')"],
                         capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode != 0 and "singleshot[torch]" in res.stderr
    assert "Traceback" not in res.stderr


def test_detect_defaults_to_conf_025_for_people(photo, tmp_path):
    """detect returns and draws detections at 0.25 by default; --conf model gives the model's
    own threshold (0.05) - the same as the library's Detector() without conf."""
    from singleshot.runtime.detector import Detector

    code, stdout, _ = run("detect", photo, "--json")
    shown = json.loads(stdout)["images"][0]["detections"]
    code2, stdout2, _ = run("detect", photo, "--json", "--conf", "model")
    every = json.loads(stdout2)["images"][0]["detections"]
    assert code == code2 == 0 and len(every) > len(shown) > 0
    assert min(d["score"] for d in shown) >= 0.25 and min(d["score"] for d in every) < 0.25
    assert len(every) == len(Detector("demo")(photo))
    code, _, err = run("detect", photo, "--conf", "high")
    assert code == 2 and "--conf" in err


def test_detect_folder_ends_with_a_summary(tiny_zoo_onnx, photo, tmp_path):
    import shutil

    for i in range(3):
        shutil.copy(photo, tmp_path / f"p{i}.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    code, stdout, stderr = run("detect", tmp_path, "--model", tiny_zoo_onnx)
    assert code == 1
    n = sum(int(line.split(": ")[1].split()[0]) for line in stdout.splitlines() if ": " in line)
    assert f"5 images, {n} detections (score >= 0.25), 1 failed" in stderr and "images/s" in stderr


def test_info_on_a_graph_that_is_not_a_detector(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g), str(path))
    for extra in ([], ["--json"]):
        code, stdout, stderr = run("info", path, *extra)
        assert code == 2 and "not a detector" in stderr and "Relu" in stdout


def test_quantize_reports_what_it_did(tiny_zoo_onnx, tmp_path):
    from singleshot.data.synth import write_dataset

    write_dataset(tmp_path / "c", 3, seed=1, workers=1)
    code, stdout, err = run("quantize", tiny_zoo_onnx, "-o", tmp_path / "q.onnx", "--calib",
                            tmp_path / "c" / "images", "--num-images", "50", "--activations", "int8")
    assert code == 0, err
    assert "on 3 images" in stdout and "int8 activations (symmetric)" in stdout
    assert "calibrating on 3 images" in err
    code, _, err = run("quantize", tiny_zoo_onnx, "-o", tmp_path / "x.onnx", "--calib",
                       tmp_path / "missing", "--format", "qdqx")
    assert code == 2 and "--format" in err and "missing" not in err  # refused before any work


def test_demo_with_a_model_of_other_classes(tmp_path):
    """An 80-class model on the demo's 6 shape classes: the clear category error eval gives,
    not mAP 0.000."""
    code, stdout, err = run("demo", "--model", "demo", "--num-images", "1", "--no-compare",
                            "-o", tmp_path / "ok")
    assert code == 0, err
    from singleshot.export.exporter import export_onnx

    export_onnx(lively_model(), tmp_path / "coco.onnx", opset=13)
    code, stdout, err = run("demo", "--model", tmp_path / "coco.onnx", "--num-images", "1",
                            "-o", tmp_path / "d")
    assert code == 2 and "categories" in err and "mAP" not in stdout


def test_detect_only_classes(photo, tiny_zoo_onnx):
    """--only-classes takes category ids and names (export --classes already means name files);
    an unknown one is a usage error before any work."""
    code, stdout, _ = run("detect", photo, "--model", tiny_zoo_onnx, "--conf", "model", "--json")
    every = json.loads(stdout)["images"][0]["detections"]
    cats = sorted({d["category_id"] for d in every})
    by_id = {d["category_id"]: d["category"] for d in every}
    keep = [cats[0], by_id[cats[-1]]]  # one by id, one by name
    code, stdout, err = run("detect", photo, "--model", tiny_zoo_onnx, "--conf", "model", "--json",
                            "--only-classes", f"{keep[0]},{keep[1]}")
    assert code == 0, err
    got = json.loads(stdout)["images"][0]["detections"]
    assert {d["category_id"] for d in got} == {cats[0], cats[-1]}
    assert len(got) >= len([d for d in every if d["category_id"] in (cats[0], cats[-1])])
    code, _, err = run("detect", photo, "--model", tiny_zoo_onnx, "--only-classes", "unicorn")
    assert code == 2 and "unknown class 'unicorn'" in err


def test_detect_out_resumes_and_redoes_changed_inputs(tiny_zoo_onnx, photo, tmp_path):
    """With --out every result is journaled as it comes; a rerun skips what is done (also
    after a kill left a line cut short), redoes a file that changed, and refuses other
    settings; detections.json is in input order either way."""
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(photo, src / f"p{i}.jpg")
    out = tmp_path / "out"
    args = ["detect", src, "--model", tiny_zoo_onnx, "--out", out, "--json"]
    code, first, err = run(*args)
    assert code == 0, err
    journal = out / "detections.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["source"]["size"] > 0 for line in lines)
    journal.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # killed mid-line
    (src / "p0.jpg").write_bytes((src / "p0.jpg").read_bytes() + b"\0")  # changed since
    code, second, err = run(*args)
    assert code == 0 and "resuming: 1 of 4 input(s) already done" in err
    assert json.loads(second) == json.loads(first)
    assert json.loads(second)["images"][0]["annotated"] == "p0.jpg"
    assert sorted(out.glob("*.jpg")) == [out / f"p{i}.jpg" for i in range(4)]
    code, _, err = run(*args, "--conf", "0.5")
    assert code == 2 and "conf" in err and "another model or settings" in err
