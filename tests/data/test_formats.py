"""The dataset layouts: one synthetic set written as COCO, YOLO and Pascal VOC (by `data
convert`) gives the same training samples and the same AP from each; training runs on a YOLO
set; malformed entries are reported with their file and line and the rest is used (or
--strict refuses); the layout is detected and said."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app
from singleshot.data.formats import detect_layout, read_dataset
from singleshot.errors import UsageError


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """A synthetic COCO set (train 10 + val 6 scenes) and its YOLO and VOC conversions."""
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("formats")
    write_dataset(root / "coco", 10, seed=5, workers=1)
    write_dataset(root / "coco" / "val", 6, seed=6, workers=1)
    out = {"coco": root / "coco"}
    for to in ("yolo", "voc"):
        code, stdout, stderr = cli("data", "convert", root / "coco", "-o", root / to, "--to", to)
        assert code == 0, stderr
        assert "train: 10 images" in stdout and "val: 6 images" in stdout
        out[to] = root / to
    return out


def test_the_layout_is_detected(three):
    assert [detect_layout(three[k]) for k in ("coco", "yolo", "voc")] == ["coco", "yolo", "voc"]
    assert detect_layout(three["yolo"] / "data.yaml") == "yolo"
    with pytest.raises(UsageError, match="data.yaml"):
        detect_layout(three["coco"] / "images")


def test_the_three_layouts_give_the_same_samples(three):
    torch = pytest.importorskip("torch")  # an extra of `all`: CI has it
    from singleshot.training.dataset import CocoDetection, open_dataset

    sets = {}
    for layout, path in three.items():
        root, ann, got_layout, problems = open_dataset(path, "train")
        assert got_layout == layout and problems == []
        sets[layout] = CocoDetection(root, ann, 300, train=True, seed=1)
    names = {k: ds.class_names for k, ds in sets.items()}
    assert names["coco"] == names["yolo"] == names["voc"]  # the dataset's class order, kept
    by_name = {k: {Path(ds.items[i][0]).name: i for i in range(len(ds))} for k, ds in sets.items()}
    assert by_name["coco"].keys() == by_name["yolo"].keys() == by_name["voc"].keys()
    for name, i in by_name["coco"].items():
        ref = sets["coco"][i]
        for layout in ("yolo", "voc"):
            got = sets[layout][by_name[layout][name]]
            torch.testing.assert_close(got[0], ref[0])  # the same augmented image
            np.testing.assert_allclose(got[1].numpy(), ref[1].numpy(), atol=2e-5)  # rounding
            assert got[2].tolist() == ref[2].tolist()


def test_the_three_layouts_evaluate_to_the_same_ap(three):
    from singleshot.eval.annotations import check_annotations
    from singleshot.eval.coco import coco_score

    rng = np.random.default_rng(0)
    ref = read_dataset(three["coco"], "val").coco
    # detections made once from the COCO ground truth: jittered boxes, random scores, by name
    dets = {}
    for a in ref["annotations"]:
        name = next(im["file_name"] for im in ref["images"] if im["id"] == a["image_id"])
        x, y, w, h = a["bbox"]
        dets.setdefault(Path(name).name, []).append(
            (a["category_id"], [x + rng.normal(0, 2), y + rng.normal(0, 2), w, h],
             float(rng.uniform(0.3, 1))))
    aps = {}
    for layout, path in three.items():
        split = read_dataset(path, "val")
        gt = check_annotations(split.coco, layout)
        # VOC keeps both splits in one JPEGImages/: the converter named val's images val_*
        results = [{"image_id": im["id"], "category_id": c, "bbox": b, "score": s}
                   for im in gt.images for c, b, s in
                   dets.get(Path(im["file_name"]).name.removeprefix("val_"), [])]
        aps[layout] = coco_score(gt, results).metrics["AP"]
    assert aps["coco"] > 0.3
    assert aps["yolo"] == pytest.approx(aps["coco"], abs=1e-3)
    assert aps["voc"] == pytest.approx(aps["coco"], abs=1e-9)


def test_training_runs_on_a_yolo_set_and_says_its_layout(three, tmp_path):
    pytest.importorskip("torch")
    code, stdout, stderr = cli("train", "--data", three["yolo"] / "data.yaml", "--val",
                               three["yolo"], "-o", tmp_path / "run", "--width", "0.125",
                               "--batch", "4", "--max-steps", "2", "--workers", "0",
                               "--eval-images", "2", "--json")
    assert code == 0, stderr
    assert "a YOLO set, 10 image(s)" in stderr
    assert json.loads(stdout)["last"].endswith("last.pt")


def _yolo_with_problems(root: Path) -> Path:
    from PIL import Image

    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for k in range(4):
        Image.new("RGB", (100, 80), (k * 40, 90, 90)).save(root / "images" / "train" / f"{k}.jpg")
    labels = {0: "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n",  # line 2: 4 numbers
              1: "1 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n",  # line 2: class past names
              2: "0 0.95 0.5 0.3 0.2\n",  # outside the image
              3: "1 0.25 0.25 0.1 0.1\n"}
    for k, text in labels.items():
        (root / "labels" / "train" / f"{k}.txt").write_text(text)
    (root / "train.txt").write_text("".join(f"images/train/{k}.jpg\n" for k in range(4))
                                    + "images/train/missing.jpg\n")
    (root / "data.yaml").write_text("path: .\ntrain: train.txt\nval: train.txt\n"
                                    "names: [square, circle]\n")
    return root / "data.yaml"


def test_malformed_entries_are_reported_with_file_and_line(tmp_path):
    ds = read_dataset(_yolo_with_problems(tmp_path / "y"), "train")
    text = "\n".join(ds.problems)
    assert "0.txt:2: 4 numbers" in text and "1.txt:2: class 7" in text
    assert "2.txt:1: box outside the image" in text and "missing.jpg: missing image" in text
    assert len(ds.coco["images"]) == 4 and len(ds.coco["annotations"]) == 3  # the rest kept
    # VOC: an XML without <size>, and a difficult box kept as a crowd region
    voc = tmp_path / "v"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    from PIL import Image

    for stem in ("a", "b"):
        Image.new("RGB", (50, 40)).save(voc / "JPEGImages" / f"{stem}.jpg")
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>dog</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object></annotation>")
    (voc / "Annotations" / "b.xml").write_text(
        "<annotation><filename>b.jpg</filename><size><width>50</width><height>40</height>"
        "</size><object><name>dog</name><difficult>1</difficult><bndbox><xmin>5</xmin><ymin>5"
        "</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object></annotation>")
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    vds = read_dataset(voc, "train")
    assert any("a.xml: no <size>" in p for p in vds.problems)
    assert vds.class_names[:3] == ["aeroplane", "bicycle", "bird"]  # the VOC classes' order
    (ann,) = vds.coco["annotations"]
    assert ann["iscrowd"] == 1 and ann["bbox"] == [4.0, 4.0, 16.0, 26.0]


def test_strict_refuses_and_data_convert_reports(tmp_path):
    pytest.importorskip("torch")
    data = _yolo_with_problems(tmp_path / "y")
    code, _, stderr = cli("train", "--data", data, "-o", tmp_path / "run", "--width", "0.125",
                          "--batch", "2", "--max-steps", "1", "--workers", "0", "--strict")
    assert code == 2 and "4 malformed entries" in stderr and "--strict" in stderr
    assert "Traceback" not in stderr
    code, stdout, stderr = cli("data", "convert", data, "-o", tmp_path / "c", "--to", "coco")
    assert code == 0 and "8 malformed entries left out" in stdout  # 4 in each split
    assert stderr.count("note: left out") == 8  # train and val (the same list) each say them
    doc = json.loads((tmp_path / "c" / "annotations.json").read_text())
    assert len(doc["annotations"]) == 3
    code, _, stderr = cli("data", "convert", tmp_path / "nothing", "-o", tmp_path / "d")
    assert code == 2 and stderr.startswith("error: ") and "no such" in stderr
