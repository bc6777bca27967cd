import math

import numpy as np
import pytest

from singleshot.core.anchors import DefaultBoxConfig, default_boxes
from singleshot.core.boxes import box_convert, box_iou
from singleshot.core.coder import decode, encode


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


def test_head_layout_matches_default_box_order():
    """Head channel ``coord*nd + k`` lands in the anchor block ``k*H*W ...`` of its level (box size
    major, then row, column: the order the default boxes are generated in), levels in order."""
    import torch  # the test extra installs it with every other extra

    from singleshot.model import build_model

    model = build_model("300", width=0.125).eval()
    grids = model.cfg.grid_sizes()
    nd = model.cfg.num_anchors_per_location
    with torch.no_grad():
        for head in model.loc:
            head.weight.zero_()
            head.bias.copy_(torch.arange(head.bias.numel(), dtype=torch.float32))
        loc, _ = model(torch.zeros(1, 3, 300, 300))
    start = 0
    for level, (g, n) in enumerate(zip(grids, nd)):
        for k in (0, n - 1):
            for coord in range(4):
                anchor = start + k * g * g + (g - 1) * g + (g - 1)  # bottom-right cell
                assert loc[0, coord, anchor].item() == coord * n + k
        start += n * g * g
    assert start == loc.shape[2] == default_boxes(model.cfg.default_boxes()).shape[0]
