"""detect's outputs in the formats other tools read: YOLO txt, COCO results (read by
pycocotools), CSV, crops; each written once over a resumed run; the guard on their paths."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from singleshot.app.cli import app


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def _inputs(scenes, tmp_path, n):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for p in scenes[:n]:
        shutil.copy(p, folder / p.name)
    return folder


def test_every_format_holds_every_detection_once_over_a_resumed_run(scenes, tmp_path):
    folder = _inputs(scenes, tmp_path, 2)
    out, crops = tmp_path / "run", tmp_path / "crops"
    opts = ["--save-txt", "--save-conf", "--save-coco", tmp_path / "coco.json", "--save-csv",
            tmp_path / "dets.csv", "--save-crops", crops]
    code, _, err = _cli("detect", folder, "-o", out, *opts)
    assert code == 0, err
    first = {p: p.stat().st_mtime_ns for p in crops.rglob("*.jpg")}
    assert first
    for p in scenes[2:4]:  # two more inputs: the rerun resumes
        shutil.copy(p, folder / p.name)
    code, _, err = _cli("detect", folder, "-o", out, *opts)
    assert code == 0 and "resuming: 2 of 4" in err, err
    # crops of the first run's images were not written again
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())
    doc = json.loads((out / "detections.json").read_text())
    images = doc["images"]
    total = sum(len(e["detections"]) for e in images)
    assert len(images) == 4 and total > 0
    assert len(list(crops.rglob("*.jpg"))) == total

    for e in images:
        stem = Path(e["path"]).stem
        lines = (out / "labels" / f"{stem}.txt").read_text().splitlines()
        assert len(lines) == len(e["detections"])
        for line, d in zip(lines, e["detections"]):
            cls, cx, cy, w, h, score = line.split()
            x1, y1, x2, y2 = d["box"]
            assert int(cls) == d["category_id"] - 1  # the demo's ids are 1..6 in order
            assert np.allclose([float(cx) * e["width"], float(cy) * e["height"],
                                float(w) * e["width"], float(h) * e["height"]],
                               [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], atol=0.01)
            assert float(score) == d["score"]
            crop = Image.open(crops / d["category"] / f"{stem}_{e['detections'].index(d) + 1}.jpg")
            cw, ch = crop.size
            assert abs(cw - (min(x2, e["width"]) - max(x1, 0))) <= 2
            assert abs(ch - (min(y2, e["height"]) - max(y1, 0))) <= 2

    coco = json.loads((tmp_path / "coco.json").read_text())
    assert len(coco) == total
    # the scenes are named 000000.jpg...: numbers, so the image ids are those numbers
    assert {r["image_id"] for r in coco} <= {int(Path(e["path"]).stem) for e in images}
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {"images": [{"id": int(Path(e["path"]).stem), "width": e["width"],
                              "height": e["height"]} for e in images],
                  "categories": [{"id": i, "name": str(i)} for i in range(1, 7)],
                  "annotations": []}
    gt.createIndex()
    assert len(gt.loadRes(str(tmp_path / "coco.json")).anns) == total

    with open(tmp_path / "dets.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == total
    assert list(rows[0]) == ["path", "width", "height", "x1", "y1", "x2", "y2", "score",
                             "category_id", "category"]
    first_det = images[0]["detections"][0]
    assert rows[0]["path"] == images[0]["path"] and float(rows[0]["score"]) == first_det["score"]


def test_without_out_and_odd_uses(scenes, tmp_path):
    folder = _inputs(scenes, tmp_path, 1)
    (folder / "name with space.jpg").write_bytes((folder / scenes[0].name).read_bytes())
    code, _, err = _cli("detect", folder, "--save-coco", tmp_path / "c.json", "--save-csv",
                        tmp_path / "d.csv")
    assert code == 0, err
    coco = json.loads((tmp_path / "c.json").read_text())
    assert {r["image_id"] for r in coco} == {1, 2}  # not all names are numbers: positions
    for args, message in [
        (["--save-txt"], "--save-txt writes into --out"),
        (["-o", tmp_path / "o", "--save-conf"], "--save-conf adds the score"),
        (["--save-csv", folder / scenes[0].name], "is an input of this command"),
        (["--save-coco", tmp_path], "is a folder"),
        (["--save-crops", folder], "--save-crops"),
    ]:
        before = sorted(p.name for p in folder.iterdir())
        code, _, err = _cli("detect", folder, *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
        assert sorted(p.name for p in folder.iterdir()) == before
