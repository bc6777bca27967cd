"""The SSD box coder: encode/decode round trip and a known value."""

import math

import numpy as np

from singleshot.core.anchors import DefaultBoxConfig, default_boxes
from singleshot.core.boxes import box_convert
from singleshot.core.coder import decode, encode


def test_coder_roundtrip_and_known_value():
    anchors = default_boxes(DefaultBoxConfig.ssd300())
    rng = np.random.default_rng(0)
    loc = rng.normal(0, 1, anchors.shape).astype(np.float32)
    boxes = decode(loc, anchors)
    np.testing.assert_allclose(encode(boxes, anchors), loc, atol=2e-4)
    # zero offsets decode to the anchors themselves
    np.testing.assert_allclose(decode(np.zeros_like(anchors), anchors),
                               box_convert(anchors, "cxcywh", "xyxy"), atol=1e-7)
    # dx = 10 moves the centre by one anchor width; dw = 5 multiplies w by e
    one = decode(np.array([[10, 0, 5, 0]], np.float32), np.array([[0.5, 0.5, 0.2, 0.1]], np.float32))
    w = 0.2 * math.e
    np.testing.assert_allclose(one[0], [0.7 - w / 2, 0.45, 0.7 + w / 2, 0.55], rtol=1e-6)
