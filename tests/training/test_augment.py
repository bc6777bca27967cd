"""SSD augmentations keep boxes on their pixels."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from singleshot.training.augment import hflip, random_crop, train_transform


def _scene_with_boxes(rng, n):
    """An image with n non-overlapping boxes, each filled with its own flat colour."""
    h, w = int(rng.integers(60, 200)), int(rng.integers(60, 200))
    img = np.zeros((h, w, 3), np.uint8)
    boxes, colours = [], []
    for k in range(n):
        for _ in range(50):
            bw, bh = rng.uniform(8, w / 2), rng.uniform(8, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            b = np.array([x, y, x + bw, y + bh], np.float32)
            if all(b[2] < o[0] or o[2] < b[0] or b[3] < o[1] or o[3] < b[1] for o in boxes):
                boxes.append(b)
                colours.append((40 * (k + 1), 255 - 30 * k, 100 + 20 * k))
                img[int(np.ceil(y)):int(y + bh), int(np.ceil(x)):int(x + bw)] = colours[-1]
                break
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.arange(1, len(boxes) + 1), colours


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4))
def test_crop_and_flip_keep_boxes_on_their_pixels(seed, n):
    rng = np.random.default_rng(seed)
    img, boxes, labels, colours = _scene_with_boxes(rng, n)
    out, ob, ol = random_crop(img, boxes, labels, rng)
    if rng.uniform() < 0.5:
        out, ob = hflip(out, ob)
    h, w = out.shape[:2]
    assert len(ob) == len(ol) >= 1 and set(ol.tolist()) <= set(labels.tolist())
    assert (ob[:, 0] >= 0).all() and (ob[:, 2] <= w).all() and (ob[:, 1] >= 0).all() and (ob[:, 3] <= h).all()
    assert (ob[:, 2] >= ob[:, 0]).all() and (ob[:, 3] >= ob[:, 1]).all()
    for b, lab in zip(ob, ol):
        if b[2] - b[0] >= 3 and b[3] - b[1] >= 3:  # the box centre still shows that box's colour
            cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
            assert tuple(out[cy, cx]) == colours[lab - 1]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_train_transform_output(seed):
    rng = np.random.default_rng(seed)
    img, boxes, labels, _ = _scene_with_boxes(rng, 3)
    out, nb, nl = train_transform(img, boxes, labels, 96, rng)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert len(nb) == len(nl) >= 1
    assert (nb >= 0).all() and (nb <= 1).all() and (nb[:, 2:] >= nb[:, :2]).all()


def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    img, boxes, _, _ = _scene_with_boxes(rng, 3)
    i2, b2 = hflip(*hflip(img, boxes))
    assert np.array_equal(i2, img) and np.allclose(b2, boxes)
