"""singleshot eval end to end: models over folders, resume, conventions, usage errors."""

import json

import pytest
from typer.testing import CliRunner

from helpers import own_detections_dataset, pycocotools_direct
from singleshot.app.cli import app
from singleshot.eval.coco import METRIC_KEYS


@pytest.fixture(scope="module")
def model_dataset(tmp_path_factory, tiny_zoo_onnx):
    """Images with ground truth made from the tiny model's own confident detections."""
    return own_detections_dataset(tmp_path_factory.mktemp("ds"), tiny_zoo_onnx)


def _eval(*args):
    res = CliRunner().invoke(app, ["eval", *[str(a) for a in args]])
    return res


def test_eval_model_end_to_end(model_dataset, tiny_zoo_onnx, tmp_path):
    out = tmp_path / "report"
    res = _eval("--model", tiny_zoo_onnx, "--images", model_dataset / "images", "--annotations",
                model_dataset / "instances.json", "--json", "--out", out)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == set(METRIC_KEYS) | {"per_class"}
    # ground truth = its own detections (image 6's are false positives): high, and exactly what
    # pycocotools gives on the detections made outside the evaluator
    assert doc["AP50"] > 0.85 and doc["AP"] > 0.85
    expected = json.loads((model_dataset / "expected_results.json").read_text())
    ref, ref_pc = pycocotools_direct(model_dataset / "instances.json", expected)
    assert {k: doc[k] for k in METRIC_KEYS} == pytest.approx(ref, abs=1e-9)
    assert len(doc["per_class"]) == 80 and -1 in doc["per_class"].values()
    sub = out / "tiny_zoo"
    for f in ("detections.jsonl", "results.json", "pr.png", "run.json"):
        assert (sub / f).is_file(), f
    assert (out / "summary.md").read_text().count("| tiny_zoo |") == 1
    lines = (sub / "detections.jsonl").read_text().splitlines()
    assert len(lines) == 8


def test_eval_resumes_and_compares_side_by_side(model_dataset, tiny_zoo_onnx, tiny_raw_onnx, tmp_path):
    out = tmp_path / "r"
    args = ["--images", model_dataset / "images", "--annotations", model_dataset / "instances.json",
            "--out", out]
    first = _eval("--model", tiny_zoo_onnx, *args, "--limit", "3", "--json")
    assert first.exit_code == 0
    jsonl = out / "tiny_zoo" / "detections.jsonl"
    assert len(jsonl.read_text().splitlines()) == 3
    with open(jsonl, "a") as f:
        f.write('{"image_id": 4, "file_na')  # a line cut by an interruption
    res = _eval("--model", tiny_zoo_onnx, "--model", tiny_raw_onnx, *args, "--json")
    assert res.exit_code == 0, res.output
    assert "resumed, 3 image(s)" in res.stderr
    doc = json.loads(res.stdout)
    zoo, raw = doc["models"]
    assert [zoo["model"], raw["model"]] == ["tiny_zoo", "tiny_raw"]
    assert raw["AP"] == pytest.approx(zoo["AP"], abs=0.02)
    fresh = _eval("--model", tiny_zoo_onnx, "--images", model_dataset / "images", "--annotations",
                  model_dataset / "instances.json", "--out", tmp_path / "fresh", "--json")
    assert json.loads(fresh.stdout)["AP"] == zoo["AP"]
    summary = json.loads((out / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["tiny_zoo", "tiny_raw"]
    assert "AP vs first" in (out / "summary.md").read_text()


def test_eval_missing_images_and_conventions(model_dataset, tiny_zoo_onnx, tmp_path):
    import shutil

    images = tmp_path / "imgs"
    shutil.copytree(model_dataset / "images", images)
    (images / "000000000001.png").unlink()
    res = _eval("--model", tiny_zoo_onnx, "--images", images, "--annotations",
                model_dataset / "instances.json", "--json", "--out", tmp_path / "o")
    assert res.exit_code == 1
    assert "000000000001.png" in res.stderr and "no such file" in res.stderr
    assert json.loads(res.stdout)["AP"] > 0.8  # the rest was evaluated
    mlperf = _eval("--model", tiny_zoo_onnx, "--images", model_dataset / "images", "--annotations",
                   model_dataset / "instances.json", "--json", "--mlperf", "--out", tmp_path / "m")
    assert mlperf.exit_code == 0
    jsonl = (tmp_path / "m" / "tiny_zoo" / "detections.jsonl").read_text().splitlines()
    gt = json.loads((model_dataset / "instances.json").read_text())
    annotated = {a["image_id"] for a in gt["annotations"]}
    assert len(jsonl) == len(annotated) < len(gt["images"])  # images without annotations dropped
    clipped = _eval("--model", tiny_zoo_onnx, "--images", model_dataset / "images", "--annotations",
                    model_dataset / "instances.json", "--json", "--clip", "--out", tmp_path / "c")
    assert clipped.exit_code == 0
    boxes = json.loads((tmp_path / "c" / "tiny_zoo" / "results.json").read_text())
    unclipped = json.loads((tmp_path / "m" / "tiny_zoo" / "results.json").read_text())
    assert min(b["bbox"][0] for b in boxes) >= 0
    assert min(b["bbox"][0] for b in unclipped) < 0  # the reference leaves boxes unclipped


def test_eval_usage_errors(tmp_path, tiny_zoo_onnx):
    res = _eval("--model", tiny_zoo_onnx, "--annotations", tmp_path / "x.json")
    assert res.exit_code == 2 and "--images" in res.stderr
    res = _eval("--annotations", tmp_path / "x.json")
    assert res.exit_code == 2


def test_eval_resumes_only_the_same_model_and_settings(model_dataset, tiny_model, make_model,
                                                       tmp_path):
    """Re-export another model to the same file name and rerun with the same --out: refused,
    naming what differs (no silent old mAP); other settings likewise; --overwrite sets the old
    run aside in OUT/previous-1/ and evaluates the new model."""
    from singleshot.export.exporter import export_onnx

    model = tmp_path / "m.onnx"
    export_onnx(tiny_model, model, opset=13)
    out = tmp_path / "out"
    args = ["--model", model, "--images", model_dataset / "images", "--annotations",
            model_dataset / "instances.json", "--out", out, "--json"]
    first = _eval(*args)
    assert first.exit_code == 0, first.output
    old_ap = json.loads(first.stdout)["AP"]
    manifest = json.loads((out / "m" / "run.json").read_text())
    assert len(manifest["model_sha256"]) == 64 and manifest["thresholds"]["conf"] == pytest.approx(0.05)
    export_onnx(make_model(seed=5), model, opset=13)  # another model, same path
    res = _eval(*args)
    assert res.exit_code == 2 and "model_sha256" in res.stderr and "--overwrite" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    lines = (out / "m" / "detections.jsonl").read_text()
    res = _eval(*args, "--backend", "openvino")
    assert res.exit_code == 2 and "backend" in res.stderr
    assert (out / "m" / "detections.jsonl").read_text() == lines  # finished work kept
    res = _eval(*args, "--overwrite")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["AP"] != old_ap
    assert (out / "previous-1" / "m" / "detections.jsonl").read_text() == lines
    again = _eval(*args, "--overwrite")
    assert again.exit_code == 0 and (out / "previous-2" / "m" / "run.json").is_file()
    assert (out / "previous-1" / "m" / "detections.jsonl").read_text() == lines


def test_eval_prints_per_class_table_and_leaves_no_empty_folder(model_dataset, tiny_zoo_onnx,
                                                                tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _eval("--model", tmp_path / "missing.onnx", "--images", model_dataset / "images",
                "--annotations", model_dataset / "instances.json")
    assert res.exit_code == 2 and "missing.onnx" in res.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs" / "eval").iterdir())
    res = _eval("--model", tiny_zoo_onnx, "--images", model_dataset / "images", "--annotations",
                model_dataset / "instances.json", "--limit", "2")
    assert res.exit_code == 0, res.output
    assert "per-class AP:" in res.stdout and "| person |" in res.stdout
