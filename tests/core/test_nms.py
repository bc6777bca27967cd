"""The numpy zoo NMS reference, and the check of an NMS result under any tie order."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from singleshot.core.nms import NmsParams, batched_nms


def brute_force(boxes, scores, p: NmsParams):
    """Textbook greedy NMS written independently: list of (score, class, index)."""
    kept_all = []
    for c in range(scores.shape[0]):
        cand = sorted([(float(scores[c, i]), i) for i in range(len(boxes)) if scores[c, i] > p.score_threshold],
                      key=lambda t: (-t[0], t[1]))
        kept = []
        for s, i in cand:
            if len(kept) == p.max_per_class:
                break
            ok = True
            for _, j in kept:
                x1, y1 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
                x2, y2 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
                inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
                ai = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
                aj = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
                if inter > 0 and inter / (ai + aj - inter) > p.iou_threshold:
                    ok = False
                    break
            if ok:
                kept.append((s, i))
        kept_all += [(s, c, i) for s, i in kept]
    kept_all.sort(key=lambda t: -t[0])
    return kept_all[: p.max_det]


def random_case(seed, n=300, classes=6):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1, (n, 2))
    wh = rng.uniform(0.02, 0.4, (n, 2))
    # clusters of heavily overlapping boxes, as detectors produce
    xy[n // 2:] = xy[: n - n // 2] + rng.normal(0, 0.01, (n - n // 2, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 0.3, (classes, n)).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("params", [NmsParams(), NmsParams(0.1, 0.3, 7, 20), NmsParams(0.2, 0.7, 200, 5)])
def test_nms_matches_brute_force(seed, params):
    boxes, scores = random_case(seed)
    idx, cls, sc = batched_nms(boxes, scores, params)
    ref = brute_force(boxes, scores, params)
    assert [(int(c), int(i)) for c, i in zip(cls, idx)] == [(c, i) for _, c, i in ref]
    np.testing.assert_allclose(sc, [s for s, _, _ in ref])
    assert np.all(np.diff(sc) <= 0)


def test_nms_empty_and_degenerate():
    boxes = np.array([[0, 0, 0, 0], [0, 0, 1, 1]], np.float32)
    idx, cls, sc = batched_nms(boxes, np.array([[0.01, 0.02]], np.float32))
    assert idx.size == 0 and sc.size == 0
    # a zero-area box never suppresses and is never suppressed (onnxruntime semantics)
    idx, cls, sc = batched_nms(np.array([[0, 0, 0, 0], [0, 0, 0, 0]], np.float32),
                               np.array([[0.9, 0.8]], np.float32))
    assert sorted(idx.tolist()) == [0, 1]


def test_nms_matches_onnxruntime():
    import onnxruntime as ort

    boxes, scores = random_case(42, n=400, classes=5)
    p = NmsParams()
    g = helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["b", "s", "m", "i", "t"], ["sel"])], "nms",
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, None, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, None, None])],
        [helper.make_tensor_value_info("sel", TensorProto.INT64, [None, 3])],
        [helper.make_tensor("m", TensorProto.INT64, [1], [p.max_per_class]),
         helper.make_tensor("i", TensorProto.FLOAT, [1], [p.iou_threshold]),
         helper.make_tensor("t", TensorProto.FLOAT, [1], [p.score_threshold])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    sel = sess.run(None, {"b": boxes[None], "s": scores[None]})[0]
    ours = batched_nms(boxes, scores, NmsParams(max_det=10_000))
    assert sorted(zip(sel[:, 1].tolist(), sel[:, 2].tolist())) == sorted(zip(ours[1].tolist(), ours[0].tolist()))


def test_nms_violations_allow_tie_order_only():
    """A valid NMS under another order of tied scores passes; a missing, extra, relabelled or
    unsuppressed detection does not."""
    from singleshot.core.nms import NmsParams, batched_nms, nms_violations

    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.5],
                      [40, 40, 50, 50]], dtype=np.float32)
    scores = np.array([[0.9, 0.9, 0.7, 0.2, 0.6], [0.01, 0.01, 0.01, 0.8, 0.01]], dtype=np.float32)
    p = NmsParams()
    idx, cls, sc = batched_nms(boxes, scores, p)
    ref = (boxes[idx], cls + 1, sc)
    assert nms_violations(ref, boxes, scores, p) == []
    # boxes 0 and 1 tie at 0.9 and overlap: keeping 1 instead of 0 is as valid
    alt = ref[0].copy()
    alt[np.flatnonzero((ref[0] == boxes[0]).all(1))[0]] = boxes[1]
    assert nms_violations((alt, ref[1], ref[2]), boxes, scores, p) == []
    drop = tuple(r[[0, 2, 3]] for r in ref)  # lose the 0.8 detection of class 2
    assert any("none kept" in m or "neither kept" in m for m in nms_violations(drop, boxes, scores, p))
    both = (np.vstack([ref[0], boxes[1:2]]), np.append(ref[1], 1), np.append(ref[2], np.float32(0.9)))
    both = tuple(np.asarray(v)[np.argsort(-both[2], kind="stable")] for v in both)
    assert any("overlap" in m for m in nms_violations(both, boxes, scores, p))
    relabel = (ref[0], np.where(ref[1] == 2, 1, ref[1]), ref[2])
    assert nms_violations(relabel, boxes, scores, p)
    low = NmsParams(max_det=2)
    assert nms_violations(tuple(r[:2] for r in ref), boxes, scores, low) == []
    assert nms_violations(tuple(r[[0, 2]] for r in ref), boxes, scores, low)
