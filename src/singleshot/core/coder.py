"""The SSD box coder (MLPerf: scale_xy 0.1, scale_wh 0.2) in numpy.

Invariant: ``decode(encode(g, a), a) == g`` up to float rounding, for boxes with positive size.
"""

from __future__ import annotations

import numpy as np

SCALE_XY = 0.1
SCALE_WH = 0.2


def decode(loc: np.ndarray, anchors_cxcywh: np.ndarray) -> np.ndarray:
    """Offsets ``loc`` [..., A, 4] (dx, dy, dw, dh) -> boxes [..., A, 4] xyxy normalised, unclipped.

    Operation order follows the reference so float32 results match it bit for bit where possible:
    ``cx = (0.1 * dx) * aw + acx``, ``w = exp(0.2 * dw) * aw``.
    """
    loc = np.asarray(loc, dtype=np.float32)
    a = anchors_cxcywh.astype(np.float32, copy=False)
    xy = (np.float32(SCALE_XY) * loc[..., :2]) * a[..., 2:] + a[..., :2]
    wh = np.exp(np.float32(SCALE_WH) * loc[..., 2:]) * a[..., 2:]
    half = np.float32(0.5) * wh
    return np.concatenate([xy - half, xy + half], axis=-1)


def encode(boxes_xyxy: np.ndarray, anchors_cxcywh: np.ndarray) -> np.ndarray:
    """Boxes [..., A, 4] xyxy normalised -> offsets [..., A, 4] (dx, dy, dw, dh); inverse of decode."""
    b = np.asarray(boxes_xyxy, dtype=np.float32)
    a = anchors_cxcywh.astype(np.float32, copy=False)
    cxcy = (b[..., :2] + b[..., 2:]) / 2
    wh = np.maximum(b[..., 2:] - b[..., :2], np.float32(1e-6))  # degenerate boxes stay finite
    dxy = (cxcy - a[..., :2]) / a[..., 2:] / np.float32(SCALE_XY)
    dwh = np.log(wh / a[..., 2:]) / np.float32(SCALE_WH)
    return np.concatenate([dxy, dwh], axis=-1).astype(np.float32)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float32)."""
    x = np.asarray(logits, dtype=np.float32)
    x = x - x.max(axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)
    return x
