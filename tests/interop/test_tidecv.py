"""TIDE against tidecv 1.0.1 itself (issue 35): every error type's count equal and every dAP
within 1e-4 (as fractions; tidecv prints percent), on three sets - the demo model's detections
on generated scenes, a noisy set with crowd regions, sparse category ids and a class without
objects, and random boxes with wrong classes and duplicates.

tidecv needs NumPy < 2 (and OpenCV): it runs in a venv of its own, ``.venv-tide``, which
.ci/run builds (``SINGLESHOT_TIDECV_VENV``); the test builds it when it is missing."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import synthetic_coco
from singleshot.app.cli import app
from singleshot.eval.annotations import load_annotations
from singleshot.eval.tide import analyse

REPO = Path(__file__).resolve().parents[2]
NAMES = {"Cls": "cls", "Loc": "loc", "Both": "both", "Dupe": "dupl", "Bkg": "bkg", "Miss": "miss"}

SCRIPT = """
import json, sys
from tidecv import TIDE, datasets
gt, res = datasets.COCO(sys.argv[1]), datasets.COCOResult(sys.argv[2])
t = TIDE()
run = t.evaluate(gt, res, mode=TIDE.BOX)
name = next(iter(t.runs))
print(json.dumps({"ap": run.ap, "main": t.get_main_errors()[name],
                  "special": t.get_special_errors()[name],
                  "counts": {k.short_name: v for k, v in run.count_errors().items()}}))
"""


@functools.lru_cache(maxsize=1)
def tidecv_python() -> Path:
    venv = Path(os.environ.get("SINGLESHOT_TIDECV_VENV", REPO / ".venv-tide"))
    python = venv / "bin" / "python"
    if subprocess.run([python, "-c", "import tidecv"], capture_output=True).returncode != 0 \
            if python.exists() else True:
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "tidecv==1.0.1", "numpy<2",
                        "pycocotools", "opencv-python-headless", "matplotlib", "appdirs"],
                       check=True, timeout=900)
    return python


def _tidecv(gt_file: Path, results_file: Path, tmp_path: Path) -> dict:
    """tidecv's numbers; its COCO loader wants a segmentation on every object: the box's."""
    doc = json.loads(gt_file.read_text())
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        a.setdefault("segmentation", [[x, y, x + w, y, x + w, y + h, x, y + h]])
    fixed = tmp_path / "gt-with-segmentation.json"
    fixed.write_text(json.dumps(doc))
    out = subprocess.run([tidecv_python(), "-c", SCRIPT, fixed, results_file],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _compare(gt_file: Path, results_file: Path, tmp_path: Path) -> dict:
    theirs = _tidecv(gt_file, results_file, tmp_path)
    ours = analyse(load_annotations(gt_file), json.loads(results_file.read_text()))
    assert {NAMES[k]: v for k, v in theirs["counts"].items()} == ours.counts
    assert ours.ap == pytest.approx(theirs["ap"] / 100, abs=1e-4)
    for short, ours_key in NAMES.items():
        assert ours.dap[ours_key] == pytest.approx(theirs["main"][short] / 100, abs=1e-4), short
    assert ours.dap["FP"] == pytest.approx(theirs["special"]["FalsePos"] / 100, abs=1e-4)
    assert ours.dap["FN"] == pytest.approx(theirs["special"]["FalseNeg"] / 100, abs=1e-4)
    return {"ours": ours.to_dict(), "tidecv": theirs}


def test_the_demo_models_detections(tmp_path):
    code = CliRunner().invoke(app, ["data", "synth", "-o", str(tmp_path / "set"),
                                    "--num-images", "24", "--seed", "9"]).exit_code
    assert code == 0
    res = CliRunner().invoke(app, ["eval", "-m", "demo", "--images", str(tmp_path / "set" / "images"),
                                   "--annotations", str(tmp_path / "set" / "annotations.json"),
                                   "-o", str(tmp_path / "ev"), "--no-report"])
    assert res.exit_code == 0, res.output
    got = _compare(tmp_path / "set" / "annotations.json", tmp_path / "ev" / "demo" / "results.json",
                   tmp_path)
    assert sum(got["ours"]["counts"].values()) > 20  # every type has something to say


def test_a_noisy_set_with_crowds_and_sparse_ids(tmp_path):
    gt, dets = synthetic_coco(seed=3, n_images=30, n_classes=5)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(dets))
    _compare(tmp_path / "gt.json", tmp_path / "r.json", tmp_path)


def test_random_boxes_with_wrong_classes_and_duplicates(tmp_path):
    rng = np.random.default_rng(11)
    images = [{"id": i, "width": 300, "height": 300, "file_name": f"{i}.jpg"} for i in range(1, 41)]
    anns, results = [], []
    for im in images:
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 220, 2)
            w, h = rng.uniform(12, 80, 2)
            cat = int(rng.choice([2, 5, 9]))
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": cat,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            for _ in range(int(rng.integers(0, 4))):  # duplicates, shifted, some mislabelled
                jx, jy = rng.normal(0, 0.25 * w, 2)
                results.append({"image_id": im["id"], "bbox": [x + jx, y + jy, w, h],
                                "category_id": cat if rng.random() < 0.7 else int(rng.choice([2, 5, 9])),
                                "score": round(float(rng.uniform(0, 1)), 3)})  # ties too
        for _ in range(int(rng.integers(0, 3))):
            results.append({"image_id": im["id"], "bbox": [*rng.uniform(0, 250, 2), 40, 40],
                            "category_id": int(rng.choice([2, 5, 9])), "score": float(rng.uniform(0, 1))})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"c{c}"} for c in (2, 5, 9)]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(results))
    _compare(tmp_path / "gt.json", tmp_path / "r.json", tmp_path)
