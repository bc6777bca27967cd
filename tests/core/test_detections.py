"""Detections: the contiguous label -> COCO category map."""

import numpy as np


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
