"""Result files where they meet pycocotools and supervision (issue 35): `detect --save-coco` on a
`data synth` set or any subset of it joins the set's image ids (taken from its annotations by
file name, never computed from a file name) and pycocotools scores it to the AP `eval` reports
for the same boxes (`eval --clip`: detect clips boxes to the image, the reference evaluation
does not); supervision's class indices map through the model's classes both ways."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from helpers import cli


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "set"
    code, _, err = cli("data", "synth", "-o", root, "--num-images", "8", "--seed", "4")
    assert code == 0, err
    return root


def _pycocotools_ap(gt_file, results_file, img_ids=None) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        e = COCOeval(gt, gt.loadRes(str(results_file)), "bbox")
        if img_ids is not None:
            e.params.imgIds = sorted(img_ids)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return float(e.stats[0]), float(e.stats[1])


def _eval_ap(images, annotations, out) -> tuple[float, float]:
    code, out, err = cli("eval", "-m", "demo", "--images", images, "--annotations", annotations,
                         "--clip", "--json", "-o", out, "--no-report")
    assert code == 0, err
    doc = json.loads(out)
    return doc["AP"], doc["AP50"]


def test_the_whole_set_scores_as_eval_does(synth, tmp_path):
    results = tmp_path / "r.json"
    code, _, err = cli("detect", synth / "images", "--conf", "model", "--save-coco", results)
    assert code == 0, err
    assert "image ids from" in err and "annotations.json" in err  # found by itself, and said
    got = _pycocotools_ap(synth / "annotations.json", results)
    want = _eval_ap(synth / "images", synth / "annotations.json", tmp_path / "ev")
    assert got == pytest.approx(want, abs=1e-9) and want[1] > 0.5


def test_a_subset_joins_the_sets_ids(synth, tmp_path):
    """Three images of the set: before, their ids were 0, 1, 2 against the set's 1..8, and
    pycocotools silently scored AP50 0.0."""
    doc = json.loads((synth / "annotations.json").read_text())
    chosen = doc["images"][2:5]
    results = tmp_path / "r.json"
    code, _, err = cli("detect", *[synth / "images" / im["file_name"] for im in chosen],
                       "--conf", "model", "--save-coco", results)
    assert code == 0, err
    ids = {im["id"] for im in chosen}
    assert {r["image_id"] for r in json.loads(results.read_text())} <= ids
    sub = dict(doc, images=chosen, annotations=[a for a in doc["annotations"]
                                                if a["image_id"] in ids])
    (tmp_path / "sub.json").write_text(json.dumps(sub))
    got = _pycocotools_ap(synth / "annotations.json", results, ids)
    want = _eval_ap(synth / "images", tmp_path / "sub.json", tmp_path / "ev")
    assert got == pytest.approx(want, abs=1e-9) and got[1] > 0.5


def test_images_elsewhere_join_through_annotations(synth, tmp_path):
    copies = tmp_path / "copies"
    copies.mkdir()
    for name in ("000001.jpg", "000006.jpg"):
        shutil.copy(synth / "images" / name, copies / name)
    stray = copies / "stray.jpg"
    shutil.copy(synth / "images" / "000000.jpg", stray)
    results = tmp_path / "r.json"
    code, _, err = cli("detect", copies, "--save-coco", results, "--annotations", synth)
    assert code == 0, err
    doc = json.loads((synth / "annotations.json").read_text())
    by_name = {im["file_name"]: im["id"] for im in doc["images"]}
    got = {r["image_id"] for r in json.loads(results.read_text())}
    assert got == {by_name["000001.jpg"], by_name["000006.jpg"]}
    assert "1 input not in the annotations" in err
    code, _, err = cli("detect", copies, "--annotations", synth)
    assert code == 2 and "--save-coco" in err


def test_supervision_class_indices_map_through_the_models_classes(scenes):
    import supervision as sv

    from singleshot import Detector
    from singleshot.core.detections import Detections

    det = Detector("demo")
    d = det(str(scenes[0]))
    assert len(d) > 1
    s = d.to_supervision()
    names = list(det.spec.class_names)
    # supervision's own convention: class_id indexes a class list (0-based)
    assert [names[i] for i in s.class_id] == list(d.names)
    w, h = d.width, d.height
    back = Detections.from_supervision(s, det.spec, w, h)
    assert np.array_equal(back.category_ids, d.category_ids) and list(back.names) == list(d.names)
    # a detection of class 0 (the first class), as supervision's loaders give it
    first = sv.Detections(xyxy=np.array([[1.0, 2.0, 30.0, 40.0]]), class_id=np.array([0]),
                          confidence=np.array([0.9]))
    one = Detections.from_supervision(first, det.spec, w, h)
    assert list(one.names) == [names[0]] and int(one.category_ids[0]) == det.spec.category_ids[0]
    # a dataset loaded by supervision: its classes list names them
    ds_names = ["triangle", "circle"]
    loaded = sv.Detections(xyxy=np.array([[0.0, 0.0, 5.0, 5.0]] * 2), class_id=np.array([0, 1]))
    mapped = Detections.from_supervision(loaded, det.spec, w, h, classes=ds_names)
    assert list(mapped.names) == ds_names
