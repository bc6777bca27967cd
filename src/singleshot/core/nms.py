"""Per-class NMS with the zoo graph's semantics (ONNX NonMaxSuppression + TopK), in numpy.

Per class: candidates with score > ``score_threshold``, visited in descending score (ties: lower
box index first, as onnxruntime does); a candidate is dropped when its IoU with an already kept box
of the class is > ``iou_threshold``; at most ``max_per_class`` kept. Then the ``max_det``
highest-scoring kept boxes over all classes, sorted by descending score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .coder import decode, softmax

SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.5
MAX_PER_CLASS = 200
MAX_DET = 200


@dataclass(frozen=True)
class NmsParams:
    """The zoo graph's post-processing constants (defaults = the published models)."""

    score_threshold: float = SCORE_THRESHOLD
    iou_threshold: float = IOU_THRESHOLD
    max_per_class: int = MAX_PER_CLASS
    max_det: int = MAX_DET
    agnostic: bool = False  # then suppression across classes too (:func:`agnostic_nms`)


def _iou_one_to_many(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` [4] with ``others`` [M, 4]; 0 where either area is <= 0 (as ORT)."""
    # Not core.boxes.box_iou: this reproduces onnxruntime's NonMaxSuppression arithmetic (each
    # box normalised to (min, max) corners, float32), which decides the cases at the threshold.
    bx1, bx2 = min(box[0], box[2]), max(box[0], box[2])
    by1, by2 = min(box[1], box[3]), max(box[1], box[3])
    ox1, ox2 = np.minimum(others[:, 0], others[:, 2]), np.maximum(others[:, 0], others[:, 2])
    oy1, oy2 = np.minimum(others[:, 1], others[:, 3]), np.maximum(others[:, 1], others[:, 3])
    iw = np.clip(np.minimum(bx2, ox2) - np.maximum(bx1, ox1), 0, None)
    ih = np.clip(np.minimum(by2, oy2) - np.maximum(by1, oy1), 0, None)
    inter = iw * ih
    area_b = (bx2 - bx1) * (by2 - by1)
    area_o = (ox2 - ox1) * (oy2 - oy1)
    union = area_b + area_o - inter
    ok = (area_b > 0) & (area_o > 0) & (inter > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / np.where(ok, union, 1), 0.0)


def nms_single_class(boxes_xyxy: np.ndarray, scores: np.ndarray, score_threshold: float,
                     iou_threshold: float, max_keep: int) -> np.ndarray:
    """Greedy NMS of one class. ``boxes_xyxy`` [A, 4], ``scores`` [A] -> kept indices, best first."""
    cand = np.flatnonzero(scores > score_threshold)
    if cand.size == 0 or max_keep <= 0:
        return np.empty(0, dtype=np.int64)
    order = cand[np.argsort(-scores[cand], kind="stable")]
    cand_boxes = boxes_xyxy[order]
    alive = np.ones(order.size, dtype=bool)
    kept: list[int] = []
    for i in range(order.size):
        if not alive[i]:
            continue
        kept.append(i)
        if len(kept) == max_keep:
            break
        rest = np.flatnonzero(alive[i + 1:]) + i + 1
        if rest.size:
            alive[rest[_iou_one_to_many(cand_boxes[i], cand_boxes[rest]) > iou_threshold]] = False
    return order[np.asarray(kept, dtype=np.int64)]


def batched_nms(boxes_xyxy: np.ndarray, class_scores: np.ndarray,
                params: NmsParams = NmsParams()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zoo post-processing of one image.

    ``boxes_xyxy`` [A, 4] (shared by all classes), ``class_scores`` [C, A] (background removed).
    Returns (box indices [K], class indices [K] 0-based, scores [K]), K <= max_det, by descending
    score.
    """
    idx_parts, cls_parts = [], []
    for c in range(class_scores.shape[0]):
        keep = nms_single_class(boxes_xyxy, class_scores[c], params.score_threshold,
                                params.iou_threshold, params.max_per_class)
        idx_parts.append(keep)
        cls_parts.append(np.full(keep.size, c, dtype=np.int64))
    if not idx_parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    idx = np.concatenate(idx_parts)
    cls = np.concatenate(cls_parts)
    sc = class_scores[cls, idx]
    top = np.argsort(-sc, kind="stable")[: params.max_det]
    return idx[top], cls[top], sc[top].astype(np.float32)


def postprocess_raw(loc: np.ndarray, conf: np.ndarray, anchors_cxcywh: np.ndarray,
                    params: NmsParams = NmsParams()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw head outputs of one image -> the zoo outputs.

    ``loc`` [4, A] offsets, ``conf`` [C+1, A] logits (class 0 = background),
    ``anchors_cxcywh`` [A, 4]. Returns (boxes [K, 4] xyxy normalised unclipped, labels [K] int64
    contiguous 1..C, scores [K] float32), exactly what the zoo graph outputs (without batch dim).
    """
    boxes = decode(loc.T, anchors_cxcywh)  # [A, 4]
    probs = softmax(conf, axis=0)[1:]  # [C, A], background dropped
    idx, cls, sc = batched_nms(boxes, probs, params)
    return boxes[idx], cls + 1, sc



def nms_violations(result: tuple[np.ndarray, np.ndarray, np.ndarray], boxes_xyxy: np.ndarray,
                   class_scores: np.ndarray, params: NmsParams = NmsParams(), *,
                   score_tol: float = 1e-5, box_tol: float = 1e-4,
                   iou_margin: float = 1e-4) -> list[str]:
    """What makes ``result`` (boxes [K, 4], labels [K] 1..C, scores [K]) not a zoo NMS of the
    candidates ``boxes_xyxy`` [A, 4], ``class_scores`` [C, A] under *some* order of tied scores.
    Empty when it is one. Which of two tied boxes survives is undefined (onnxruntime and numpy
    may visit them in different orders), so this checks what holds under every order:

    - every detection is a candidate: its class's score at a box equal to it, above the threshold;
    - scores are descending, at most ``max_det`` in all and ``max_per_class`` per class;
    - no two kept boxes of a class overlap by more than ``iou_threshold``;
    - every candidate scoring above the cut-off (the lowest kept score when the ``max_det`` cap is
      full, else the threshold) that was not kept is suppressed: a kept box of its class with a
      score at least as high overlaps it by more than ``iou_threshold``.

    ``iou_margin`` absorbs float rounding of IoUs right at the threshold."""
    from .boxes import box_iou

    boxes, labels, scores = (np.asarray(r) for r in result)
    problems: list[str] = []
    k = len(scores)
    if k > params.max_det:
        problems.append(f"{k} detections, over the cap of {params.max_det}")
    if k > 1 and (np.diff(scores) > score_tol).any():
        problems.append("scores are not in descending order")
    kept: dict[int, list[int]] = {}
    for i in range(k):
        c = int(labels[i]) - 1
        if not 0 <= c < class_scores.shape[0]:
            problems.append(f"detection {i} has label {labels[i]}, outside 1..{class_scores.shape[0]}")
            continue
        taken = set(kept.get(c, ()))
        cand = np.flatnonzero((np.abs(class_scores[c] - scores[i]) <= score_tol)
                              & (np.abs(boxes_xyxy - boxes[i]).max(axis=1) <= box_tol)
                              & (class_scores[c] > params.score_threshold))
        cand = [a for a in cand if a not in taken]
        if not cand:
            problems.append(f"detection {i} (label {labels[i]}, score {scores[i]:.6f}) matches no "
                            "candidate box of its class")
            continue
        kept.setdefault(c, []).append(int(cand[0]))
    cutoff = float(scores.min()) + score_tol if k >= params.max_det and k else params.score_threshold
    for c, idx in kept.items():
        if len(idx) > params.max_per_class:
            problems.append(f"class {c + 1}: {len(idx)} kept, over {params.max_per_class} per class")
        kb = boxes_xyxy[idx]
        ious = box_iou(kb, kb)
        np.fill_diagonal(ious, 0.0)
        if (ious > params.iou_threshold + iou_margin).any():
            problems.append(f"class {c + 1}: two kept boxes overlap above IoU {params.iou_threshold}")
    for c in range(class_scores.shape[0]):
        idx = kept.get(c, [])
        if len(idx) >= params.max_per_class:
            continue  # the class's own cap ended its NMS
        s = class_scores[c]
        left = np.setdiff1d(np.flatnonzero(s > cutoff), idx)
        if not left.size:
            continue
        if not idx:
            problems.append(f"class {c + 1}: {left.size} candidate(s) above {cutoff:.4f}, none kept")
            continue
        over = box_iou(boxes_xyxy[left], boxes_xyxy[idx]) > params.iou_threshold - iou_margin
        higher = s[np.asarray(idx)][None, :] >= s[left][:, None] - score_tol
        loose = int((~(over & higher).any(axis=1)).sum())
        if loose:
            problems.append(f"class {c + 1}: {loose} candidate(s) above {cutoff:.4f} neither kept "
                            "nor suppressed by a kept box")
    return problems


def agnostic_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Suppression across classes, on a result already suppressed per class: boxes [K, 4] xyxy,
    scores [K] -> the indices kept (ascending, so a score-sorted result stays sorted). A box is
    dropped when its IoU with a kept box of higher score (ties: lower index), whatever the class,
    is > ``iou_threshold``.

    The zoo graphs suppress per class only and cap the result (``max_det``) in the graph, so this
    runs on their outputs: a box the cap already dropped does not come back, and the result can
    hold fewer than ``max_det`` boxes.
    """
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    kept: list[int] = []
    for i in order:
        if not kept or (_iou_one_to_many(boxes[i], boxes[kept]) <= iou_threshold).all():
            kept.append(int(i))
    return np.asarray(sorted(kept), np.int64)
