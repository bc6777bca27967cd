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


def _iou_one_to_many(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` [4] with ``others`` [M, 4]; 0 where either area is <= 0 (as ORT)."""
    # ORT normalises each box to (min, max) corners before measuring.
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

