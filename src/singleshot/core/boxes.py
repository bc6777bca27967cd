"""Box formats and IoU in numpy.

Formats (each row one box, float):
- ``xyxy``: (x1, y1, x2, y2), corners, also called ltrb;
- ``xywh``: (x1, y1, w, h), COCO's bbox;
- ``cxcywh``: (cx, cy, w, h), the default boxes' native format.
Whether coordinates are normalised to [0, 1] or absolute pixels is up to the caller and named in
variable names (``boxes_xyxy_norm``, ``boxes_xyxy_abs``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]


def box_convert(boxes: np.ndarray, in_fmt: BoxFormat, out_fmt: BoxFormat) -> np.ndarray:
    """Convert ``boxes`` [..., 4] from ``in_fmt`` to ``out_fmt``; dtype is kept."""
    boxes = np.asarray(boxes)
    if in_fmt == out_fmt:
        return boxes.copy()
    a, b, c, d = (boxes[..., i] for i in range(4))
    if in_fmt == "xyxy":
        x1, y1, x2, y2 = a, b, c, d
    elif in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    else:
        raise ValueError(f"unknown box format {in_fmt!r}")
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    elif out_fmt == "cxcywh":
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    else:
        raise ValueError(f"unknown box format {out_fmt!r}")
    return np.stack(out, axis=-1).astype(boxes.dtype, copy=False)


def box_area(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Area of ``boxes_xyxy`` [N, 4]; boxes with x2 < x1 or y2 < y1 have area 0."""
    w = np.clip(boxes_xyxy[..., 2] - boxes_xyxy[..., 0], 0, None)
    h = np.clip(boxes_xyxy[..., 3] - boxes_xyxy[..., 1], 0, None)
    return w * h


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``a_xyxy`` [N, 4] and ``b_xyxy`` [M, 4] -> [N, M]; 0 where a union is 0."""
    a = np.asarray(a_xyxy, dtype=np.float64)[:, None, :]
    b = np.asarray(b_xyxy, dtype=np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = box_area(a) + box_area(b) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def clip_boxes(boxes_xyxy_abs: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip absolute ``boxes_xyxy_abs`` [N, 4] to the image [0, width] x [0, height]."""
    out = boxes_xyxy_abs.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 0, width)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, height)
    return out
