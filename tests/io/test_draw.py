"""Drawing that stays legible: labels clear of each other and inside the image on a crowded
scene, text in proportion to the image, the higher score on top, the style options."""

import numpy as np

from singleshot.core.detections import Detections
from singleshot.core.spec import ModelSpec
from singleshot.io.draw import DrawStyle, _colour, annotate, label_layout

SPEC = ModelSpec(class_names=("circle", "square", "triangle", "star", "cross", "hexagon"),
                 category_ids=(1, 2, 3, 4, 5, 6))


def _crowd(w, h, n=30, seed=0):
    """``n`` overlapping boxes packed into the middle of a w x h image, near its border too."""
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(0.05, 0.95, n) * w, rng.uniform(0.05, 0.95, n) * h
    bw, bh = rng.uniform(0.08, 0.25, n) * w, rng.uniform(0.08, 0.25, n) * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) / [w, h, w, h]
    return Detections.from_normalized(boxes, rng.integers(1, 7, n),
                                      np.sort(rng.uniform(0.3, 1, n))[::-1], SPEC, w, h)


def _overlap(a, b):
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def test_labels_of_a_crowded_scene_do_not_overlap_and_stay_inside():
    for w, h, seed in ((640, 480, 0), (640, 480, 1), (1920, 1080, 2)):
        det = _crowd(w, h, seed=seed)
        texts, rects, _ = label_layout(det, w, h)
        assert len(rects) == len(det) == 30
        for i, a in enumerate(rects):
            assert 0 <= a[0] and 0 <= a[1] and a[2] <= w and a[3] <= h, (i, a)
            for b in rects[i + 1:]:
                assert _overlap(a, b) == 0, (a, b)
        # what a naive top-left placement would have done: overlaps (the test has teeth)
        naive = [(x1, y1 - (r[3] - r[1]), x1 + r[2] - r[0], y1)
                 for (x1, y1, _, _), r in zip(det.xyxy, rects)]
        assert any(_overlap(a, b) > 0 for i, a in enumerate(naive) for b in naive[i + 1:])


def test_text_height_is_proportional_to_the_image():
    small, big = DrawStyle().sizes(640, 480)[1], DrawStyle().sizes(12000, 9000)[1]
    assert abs(big / small - 9000 / 480) < 0.1 * 9000 / 480
    # the drawn label's coloured background, measured in the image
    for w, h in ((640, 480), (12000, 9000)):
        det = Detections.from_normalized(np.array([[0.3, 0.4, 0.6, 0.7]]), np.array([1]),
                                         np.array([0.9]), SPEC, w, h)
        img = np.asarray(annotate(np.zeros((h, w, 3), np.uint8), det))
        rows = np.where((img == _colour(1)).all(-1).sum(1) > w * 0.02)[0]
        label_rows = rows[rows < 0.4 * h]  # the label sits above the box's top (0.4 h)
        ratio = len(label_rows) / h
        assert 0.02 < ratio < 0.04, (w, h, ratio)
    # never below a readable size
    assert DrawStyle().sizes(64, 48)[1] >= 11


def test_higher_score_is_drawn_on_top_and_style_options_apply():
    boxes = np.array([[0.2, 0.2, 0.6, 0.6], [0.2, 0.2, 0.6, 0.6]])  # the same place
    det = Detections.from_normalized(boxes, np.array([1, 2]), np.array([0.9, 0.4]), SPEC, 400, 400)
    img = np.asarray(annotate(np.zeros((400, 400, 3), np.uint8), det, style=DrawStyle(
        line_width=3)))
    assert (img[239, 200] == _colour(1)).all()  # the 0.9 circle's edge over the 0.4 square's
    bare = np.asarray(annotate(np.zeros((400, 400, 3), np.uint8), det[:1],
                               style=DrawStyle(line_width=3, labels=False)))
    assert (bare[:78] == 0).all()  # nothing above the box: no label
    texts, _, size = label_layout(det, 400, 400, DrawStyle(conf=False, font_size=30))
    assert texts == ["circle", "square"] and size == 30
