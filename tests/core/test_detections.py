"""Detections: the contiguous label -> COCO category map."""

import numpy as np
import pytest


def test_label_to_coco_category_map():
    """Contiguous labels 1..80 -> COCO's non-contiguous ids 1..90, with labels that do not map
    to themselves (12 -> 13 stop sign, 80 -> 90 toothbrush)."""
    from singleshot.core.detections import Detections
    from singleshot.core.spec import zoo_spec

    boxes = np.tile([[0.1, 0.1, 0.5, 0.5]], (4, 1)).astype(np.float32)
    d = Detections.from_normalized(boxes, np.array([12, 1, 80, 26]), np.array([0.9, 0.8, 0.7, 0.6]),
                                   zoo_spec(), 100, 100)
    assert d.category_ids.tolist() == [13, 1, 90, 28]
    assert d.names == ["stop sign", "person", "toothbrush", "umbrella"]
    assert [e["category_id"] for e in d.to_coco(image_id=5)] == [13, 1, 90, 28]


def _three():
    from singleshot.core.detections import Detections
    from singleshot.core.spec import zoo_spec

    boxes = np.array([[10, 10, 50, 60], [12, 11, 52, 58], [100, 100, 150, 140]], np.float32) / 200
    return Detections.from_normalized(boxes, np.array([1, 3, 17]), np.array([0.9, 0.7, 0.5]),
                                      zoo_spec(), 200, 200, path="a.jpg")


def test_dict_json_and_pandas_carry_every_detection():
    import json

    d = _three()
    d.timings = {"inference": 1.23456}
    doc = d.to_dict()
    assert doc["path"] == "a.jpg" and (doc["width"], doc["height"]) == (200, 200)
    assert [x["category"] for x in doc["detections"]] == ["person", "car", "dog"]
    assert doc["timings"] == {"inference": 1.235} and "error" not in doc
    assert json.loads(d.to_json()) == doc
    df = d.to_pandas()
    assert list(df.columns) == ["x1", "y1", "x2", "y2", "score", "label", "category_id",
                                "category"]
    assert df["category_id"].tolist() == [1, 3, 18] and df["category"].tolist() == ["person",
                                                                                    "car", "dog"]
    assert np.allclose(df[["x1", "y1", "x2", "y2"]].to_numpy(), d.xyxy)
    assert len(d[np.zeros(3, bool)].to_pandas()) == 0


def test_supervision_round_trip():
    import sys

    import supervision as sv

    from singleshot.core.detections import Detections
    from singleshot.core.spec import zoo_spec

    d = _three()
    s = d.to_supervision()
    assert isinstance(s, sv.Detections) and len(s) == 3
    assert np.allclose(s.xyxy, d.xyxy) and np.allclose(s.confidence, d.scores)
    # supervision's convention: a 0-based index into the class names; the COCO ids in data
    assert s.class_id.tolist() == [0, 2, 16]
    assert s.data["category_id"].tolist() == [1, 3, 18]
    assert s.data["class_name"].tolist() == ["person", "car", "dog"]
    back = Detections.from_supervision(s[::-1], zoo_spec(), 200, 200)  # order restored
    assert back.names == d.names and np.allclose(back.xyxy, d.xyxy)
    assert back.labels.tolist() == d.labels.tolist()
    by_id = d.to_supervision(class_id="category_id")
    assert by_id.class_id.tolist() == [1, 3, 18]
    again = Detections.from_supervision(by_id, zoo_spec(), 200, 200, class_id="category_id")
    assert again.names == d.names
    unknown = sv.Detections(xyxy=np.zeros((1, 4)), class_id=np.array([12]))  # not a COCO id
    with pytest.raises(ValueError, match=r"class ids \[12\]"):
        Detections.from_supervision(unknown, zoo_spec(), 10, 10, class_id="category_id")
    with pytest.raises(ValueError, match=r"class ids \[80\]"):
        Detections.from_supervision(sv.Detections(xyxy=np.zeros((1, 4)), class_id=np.array([80])),
                                    zoo_spec(), 10, 10)
    assert "supervision" in sys.modules  # imported by the calls above, not by the module


def test_agnostic_nms_suppresses_across_classes_only():
    from singleshot.core.nms import agnostic_nms

    d = _three()  # person 0.9 and car 0.7 on the same object (IoU ~0.85), dog apart
    assert agnostic_nms(d.xyxy, d.scores, 0.5).tolist() == [0, 2]
    assert agnostic_nms(d.xyxy, d.scores, 0.9).tolist() == [0, 1, 2]  # IoU under it: kept
    # visiting order is by score, whatever the input order
    assert agnostic_nms(d.xyxy[::-1], d.scores[::-1], 0.5).tolist() == [0, 2]
    assert agnostic_nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_plot_and_save(tmp_path):
    import json

    from PIL import Image

    d = _three()
    img = np.zeros((200, 200, 3), np.uint8)
    drawn = d.plot(img)
    assert drawn.shape == (200, 200, 3) and drawn.dtype == np.uint8 and drawn.any()
    assert not img.any()  # a copy: the caller's image is untouched
    bare = d.plot(img, labels=False, line_width=1)
    assert bare.sum() < drawn.sum()
    Image.fromarray(img).save(tmp_path / "a.jpg")
    d.path = str(tmp_path / "a.jpg")
    assert d.plot().shape == (200, 200, 3)  # the file at d.path
    d.save(tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == (200, 200)
    d.save(tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text())["detections"] == d.to_dicts()
    d.path = None
    with pytest.raises(ValueError, match="no path"):
        d.plot()
