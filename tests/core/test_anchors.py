"""Default boxes: counts, golden values at 1200 and 300, generic configs."""

import math

import numpy as np
import pytest

from singleshot.core.anchors import DefaultBoxConfig, default_boxes
from singleshot.core.boxes import box_convert


def test_anchor_counts():
    assert default_boxes(DefaultBoxConfig.ssd1200()).shape == (15130, 4)
    assert default_boxes(DefaultBoxConfig.ssd300()).shape == (8732, 4)
    assert DefaultBoxConfig.ssd1200().num_anchors == 15130
    assert DefaultBoxConfig.ssd300().num_anchors_per_location() == [4, 6, 6, 6, 4, 4]


def test_anchor_golden_values_1200():
    a = default_boxes(DefaultBoxConfig.ssd1200())
    assert a.dtype == np.float32
    # level 0: fk = 1200 // 24 = 50, sk1 = 84/1200 = 0.07, sk2 = 180/1200 = 0.15
    np.testing.assert_allclose(a[0], [0.01, 0.01, 0.07, 0.07], rtol=1e-6)
    np.testing.assert_allclose(a[1], [0.03, 0.01, 0.07, 0.07], rtol=1e-6)  # next column j
    np.testing.assert_allclose(a[50], [0.01, 0.03, 0.07, 0.07], rtol=1e-6)  # next row i
    sk3 = math.sqrt(0.07 * 0.15)
    np.testing.assert_allclose(a[2500], [0.01, 0.01, sk3, sk3], rtol=1e-6)  # second size
    r2 = math.sqrt(2)
    np.testing.assert_allclose(a[9999], [0.99, 0.99, 0.07 / r2, 0.07 * r2], rtol=1e-6)
    # level 1 starts at 10000: fk = 25, sk1 = 180/1200
    np.testing.assert_allclose(a[10000], [0.02, 0.02, 0.15, 0.15], rtol=1e-6)
    # last box: level 5, fk = 1200 // 400 = 3, sk1 = 1044/1200, (w, h) = (sk1/√2, sk1·√2 -> 1)
    np.testing.assert_allclose(a[-1], [2.5 / 3, 2.5 / 3, 0.87 / r2, 1.0], rtol=1e-6)
    assert a.min() >= 0 and a.max() <= 1
    ltrb = box_convert(a, "cxcywh", "xyxy")
    assert ltrb.min() < -0.3 and ltrb.max() > 1.3  # ltrb is derived after clamping, unclipped


def test_anchor_golden_values_300():
    a = default_boxes(DefaultBoxConfig.ssd300())
    # fk = 300 / 8 = 37.5 (float): centres are off the 38-cell grid; the last clamps to 1
    np.testing.assert_allclose(a[0], [0.5 / 37.5, 0.5 / 37.5, 0.07, 0.07], rtol=1e-6)
    np.testing.assert_allclose(a[37], [1.0, 0.5 / 37.5, 0.07, 0.07], rtol=1e-6)
    assert a[-1, 0] == pytest.approx(0.5) and a[-1, 3] == 1.0  # level 5: one cell


def test_generic_config_and_json_roundtrip():
    cfg = DefaultBoxConfig.for_grid(600, (75, 38, 19, 10, 8, 6))
    assert cfg.num_anchors == default_boxes(cfg).shape[0]
    assert DefaultBoxConfig.from_json(cfg.to_json()) == cfg
    assert DefaultBoxConfig.for_grid(1200, (50, 25, 13, 7, 3, 3)) == DefaultBoxConfig.ssd1200()
    with pytest.raises(ValueError):
        DefaultBoxConfig(300, (38,), (8, 16), (1, 2), ((2,),))
