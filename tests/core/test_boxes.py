"""Box formats and IoU."""

import numpy as np
import pytest

from singleshot.core.boxes import box_convert, box_iou


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_box_convert_roundtrip(fmt):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (50, 2))
    b = np.concatenate([xy, xy + rng.uniform(1, 50, (50, 2))], 1)
    np.testing.assert_allclose(box_convert(box_convert(b, "xyxy", fmt), fmt, "xyxy"), b)


def test_box_iou_known():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(box_iou(a, b), [[25 / 175, 0, 1]])
