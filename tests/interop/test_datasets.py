"""Datasets where they meet the tools people pair us with (issue 35): every set `data convert`
writes is read by supervision and globox to the source's boxes (0.5 px) and classes, for
category ids that are sparse, start at 0, or share a name; what supervision writes is read by
us; a data.yaml is read from any working directory by ultralytics' documented rule. Category
ids are data: a class is compared by name, never by arithmetic on an id."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import globox
import numpy as np
import pytest
import supervision as sv

from helpers import cli
from singleshot.data.formats import read_dataset

SPARSE = {1: 11, 2: 3, 3: 5, 4: 7, 5: 9, 6: 1}  # data synth's ids 1..6 -> a sparse, shuffled set
ZERO = {k: k - 1 for k in range(1, 7)}  # 0..5


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("interop") / "synth"
    write_dataset(root, 8, seed=21, workers=1)
    return root


def _remapped(synth: Path, dst: Path, ids: dict[int, int], same_name: bool = False,
              crowd: bool = True) -> Path:
    """``synth`` with its category ids mapped by ``ids``, a few boxes made crowd regions, and
    (``same_name``) two classes sharing a name."""
    shutil.copytree(synth, dst)
    doc = json.loads((dst / "annotations.json").read_text())
    for c in doc["categories"]:
        if same_name and c["id"] in (2, 3):
            c["name"] = "shape"
        c["id"] = ids[c["id"]]
    for k, a in enumerate(doc["annotations"]):
        a["category_id"] = ids[a["category_id"]]
        a["iscrowd"] = int(crowd and k % 17 == 5)
    doc["categories"].reverse()  # their order in the file is not their order
    (dst / "annotations.json").write_text(json.dumps(doc))
    return dst


def _truth(coco_dir: Path) -> dict[str, list[tuple[str, tuple]]]:
    """file name -> sorted (class name with id, xyxy) of the non-crowd boxes of a COCO set."""
    doc = json.loads((coco_dir / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    out: dict[str, list] = {f: [] for f in files.values()}
    for a in doc["annotations"]:
        if not a["iscrowd"]:
            x, y, w, h = a["bbox"]
            out[files[a["image_id"]]].append((names[a["category_id"]], (x, y, x + w, y + h)))
    return {k: sorted(v) for k, v in out.items()}


def _same(got: dict, want: dict, tol: float = 0.5) -> None:
    assert set(got) == set(want)
    for name in want:
        g, w = sorted(got[name]), sorted(want[name])
        assert [c for c, _ in g] == [c for c, _ in w], name
        assert np.allclose([b for _, b in g], [b for _, b in w], atol=tol) if w else not g, name


def _stem_keyed(d: dict) -> dict:
    return {Path(k).stem: v for k, v in d.items()}


@pytest.mark.parametrize("ids", [SPARSE, ZERO], ids=["sparse", "zero-based"])
def test_yolo_we_write_is_read_by_supervision_and_globox(synth, tmp_path, ids):
    src = _remapped(synth, tmp_path / "src", ids)
    code, stdout, stderr = cli("data", "convert", src, "-o", tmp_path / "yolo", "--to", "yolo")
    assert code == 0, stderr
    assert "crowd region(s)" in stderr  # left out, and said
    want = _stem_keyed(_truth(src))
    yolo = tmp_path / "yolo"
    ds = sv.DetectionDataset.from_yolo(str(yolo / "images" / "train"),
                                       str(yolo / "labels" / "train"), str(yolo / "data.yaml"))
    got = {}
    for path, _, det in ds:
        got[Path(path).stem] = [(ds.classes[int(c)], tuple(b)) for c, b in
                                zip(det.class_id, det.xyxy)]
    _same(got, want)
    names = dict(enumerate(ds.classes))
    boxes = globox.AnnotationSet.from_yolo_v5(yolo / "labels" / "train",
                                             image_folder=yolo / "images" / "train")
    got = {Path(a.image_id).stem: [(names[int(b.label)], b.ltrb) for b in a.boxes]
           for a in boxes}
    _same(got, want)
    back = read_dataset(yolo)  # and our own reader, from the yaml with no 'path'
    back_truth = {Path(im["file_name"]).stem: sorted(
        (back.categories.name(a["category_id"]), (a["bbox"][0], a["bbox"][1],
                                                  a["bbox"][0] + a["bbox"][2],
                                                  a["bbox"][1] + a["bbox"][3]))
        for a in back.coco["annotations"] if a["image_id"] == im["id"]) for im in back.coco["images"]}
    _same(back_truth, want)


def test_voc_we_write_keeps_classes_that_share_a_name_apart(synth, tmp_path):
    src = _remapped(synth, tmp_path / "src", SPARSE, same_name=True)
    code, _, stderr = cli("data", "convert", src, "-o", tmp_path / "voc", "--to", "voc")
    assert code == 0, stderr
    want = _truth(src)
    doc = json.loads((src / "annotations.json").read_text())
    shared = [c["id"] for c in doc["categories"] if c["name"] == "shape"]
    boxes = globox.AnnotationSet.from_pascal_voc(tmp_path / "voc" / "Annotations")
    got = {a.image_id: [(b.label.split(" (id")[0], b.ltrb) for b in a.boxes] for a in boxes}
    # VOC's difficult objects are our crowd regions: globox reads them as boxes, left out here
    difficult = {(a["image_id"], tuple(a["bbox"])) for a in doc["annotations"] if a["iscrowd"]}
    assert difficult
    crowd_files = {im["file_name"] for im in doc["images"]
                   if any(i == im["id"] for i, _ in difficult)}
    got = {k: [(c, b) for c, b in v if not any(
        np.allclose(b, (x - 0, y - 0, x + w, y + h), atol=1.01) for i, (x, y, w, h) in difficult
        if k in crowd_files)] for k, v in got.items()}
    _same(got, want, tol=1.01)  # VOC's 1-based pixel indices: ours write x + 1, read x - 1
    labels = {b.label for a in boxes for b in a.boxes}
    assert {f"shape (id {i})" for i in shared} <= labels  # two classes, two names
    back = read_dataset(tmp_path / "voc")
    assert len(back.categories) == 6


def test_what_supervision_writes_is_read_by_us(synth, tmp_path):
    src = _remapped(synth, tmp_path / "src", SPARSE, crowd=False)  # supervision has none
    ds = sv.DetectionDataset.from_coco(str(src / "images"), str(src / "annotations.json"))
    out = tmp_path / "sv-yolo"
    ds.as_yolo(str(out / "images"), str(out / "labels"), str(out / "data.yaml"))
    assert "train" not in (out / "data.yaml").read_text()  # nc and names only
    code, stdout, stderr = cli("data", "convert", out, "-o", tmp_path / "back", "--to", "coco")
    assert code == 0, stderr
    want = _stem_keyed(_truth(src))
    got = _stem_keyed(_truth(tmp_path / "back"))
    _same(got, want, tol=1.0)  # supervision rounds its YOLO numbers
    voc = tmp_path / "sv-voc"
    ds.as_pascal_voc(str(voc / "JPEGImages"), str(voc / "Annotations"))
    back = read_dataset(voc)
    names = back.categories
    got = {Path(im["file_name"]).stem: sorted(
        (names.name(a["category_id"]), (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                        a["bbox"][1] + a["bbox"][3]))
        for a in back.coco["annotations"] if a["image_id"] == im["id"] and not a["iscrowd"])
        for im in back.coco["images"]}
    _same(got, want, tol=1.01)


def test_the_data_yaml_is_read_from_any_working_directory(synth, tmp_path, monkeypatch):
    """ultralytics' rule (check_det_dataset): a relative 'path' is taken against the working
    directory, a missing one means the yaml's own folder - so ours has none; read from
    elsewhere, every listed folder exists."""
    import yaml

    src = _remapped(synth, tmp_path / "src", SPARSE)
    assert cli("data", "convert", src, "-o", tmp_path / "yolo", "--to", "yolo")[0] == 0
    doc = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert "path" not in doc and doc["nc"] == len(doc["names"]) == 6
    monkeypatch.chdir(tmp_path.parent)
    base = (tmp_path / "yolo" / "data.yaml").parent  # ultralytics: yaml's folder when no path
    assert (base / doc["train"]).is_dir()
    assert len(read_dataset(tmp_path / "yolo" / "data.yaml").coco["images"]) == 8
    assert os.getcwd() != str(base)


def test_voc_written_by_globox_is_read_by_us(synth, tmp_path):
    """globox writes VOC from our COCO set (its own 1-pixel convention: xmin = x, xmax = x + w);
    read back, every box within a pixel and every class by name."""
    src = _remapped(synth, tmp_path / "src", SPARSE, crowd=False)
    voc = tmp_path / "gb-voc"
    annotations = globox.AnnotationSet.from_coco(src / "annotations.json")
    (voc / "Annotations").mkdir(parents=True)
    annotations.save_pascal_voc(voc / "Annotations")
    shutil.copytree(src / "images", voc / "JPEGImages")
    back = read_dataset(voc)
    got = {Path(im["file_name"]).stem: sorted(
        (back.categories.name(a["category_id"]), (a["bbox"][0], a["bbox"][1],
                                                  a["bbox"][0] + a["bbox"][2],
                                                  a["bbox"][1] + a["bbox"][3]))
        for a in back.coco["annotations"] if a["image_id"] == im["id"])
        for im in back.coco["images"]}
    _same(got, _stem_keyed(_truth(src)), tol=1.01)


def test_training_reads_the_same_samples_from_each_layout(synth, tmp_path):
    """`train --data` on the sparse-id COCO set and on its YOLO and VOC conversions: the same
    classes in the same order and the same (augmented) samples - so the same loss."""
    import torch

    from singleshot.training.dataset import CocoDetection, open_dataset

    src = _remapped(synth, tmp_path / "src", SPARSE)
    paths = {"coco": src}
    for to in ("yolo", "voc"):
        assert cli("data", "convert", src, "-o", tmp_path / to, "--to", to)[0] == 0
        paths[to] = tmp_path / to
    sets = {}
    for layout, path in paths.items():
        root, ann, _, _ = open_dataset(path, "train")
        sets[layout] = CocoDetection(root, ann, 300, train=True, seed=1)
    assert sets["coco"].class_names == sets["yolo"].class_names == sets["voc"].class_names
    index = {k: {Path(ds.items[i][0]).stem: i for i in range(len(ds))} for k, ds in sets.items()}
    for stem, i in index["coco"].items():
        ref = sets["coco"][i]
        for layout in ("yolo", "voc"):
            got = sets[layout][index[layout][stem]]
            torch.testing.assert_close(got[0], ref[0])
            np.testing.assert_allclose(got[1].numpy(), ref[1].numpy(), atol=2e-5)
            assert got[2].tolist() == ref[2].tolist()
