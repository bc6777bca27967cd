"""Preprocessing: RGB uint8 [H, W, 3] -> the model's input tensor.

``card`` is the model card's, the reference: PIL bilinear resize to the input size, /255,
ImageNet mean/std, NCHW float32, RGB; no letterboxing (the aspect ratio is not kept). ``fast``
resizes with OpenCV (about 10x faster than PIL, per reference/PERFORMANCE.md) and, for graphs
whose normalisation was folded in (:func:`singleshot.graph.normalize.fold_normalization`), only
transposes bytes: at 1200x1200, 58-85 ms -> 5 ms (bench/RESULTS.md, where the difference in
detections and mAP is measured too).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..core.spec import ModelSpec

try:  # OpenCV is optional: PIL does the resize where it is missing
    import cv2
except ImportError:  # pragma: no cover - CI installs opencv-python-headless
    cv2 = None

MODES = ("card", "fast")


def preprocess(image_rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The card's: RGB uint8 [H, W, 3] -> model input [1, 3, h, w] float32 (h, w =
    spec.input_size)."""
    h, w = spec.input_size
    resized = np.asarray(Image.fromarray(image_rgb).resize((w, h), Image.BILINEAR))
    return normalize(resized, spec)


def normalize(resized_rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Resized RGB uint8 [h, w, 3] -> [1, 3, h, w] float32: /255, mean/std, NCHW."""
    x = resized_rgb.astype(np.float32) / np.float32(255)  # [h, w, 3]
    x = (x - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # [1, 3, h, w]


def resize_fast(image_rgb: np.ndarray, size: tuple[int, int], fast: bool = True) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> [h, w, 3] uint8 (``size`` = (h, w)). OpenCV bilinear when
    enlarging, area averaging when shrinking (closest to PIL's antialiased bilinear); PIL's
    bilinear (the card's) with ``fast=False`` or without OpenCV."""
    h, w = size
    if cv2 is None or not fast:
        return np.asarray(Image.fromarray(image_rgb).resize((w, h), Image.BILINEAR))
    shrink = h < image_rgb.shape[0] and w < image_rgb.shape[1]
    return cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def preprocess_uint8(image_rgb: np.ndarray, spec: ModelSpec, fast: bool = True) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> [1, 3, h, w] uint8 for a graph made by
    :func:`~singleshot.graph.normalize.fold_normalization`."""
    resized = resize_fast(image_rgb, spec.input_size, fast)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None])


class Preprocessor:
    """The first stage of a detector: RGB uint8 [H, W, 3] -> input [1, 3, h, w] of ``spec``'s
    dtype. ``mode`` card or fast; a uint8-input graph (normalisation folded in) gets the resized
    bytes, a float32 one the normalised tensor (``fast``: OpenCV resize, host normalisation)."""

    def __init__(self, spec: ModelSpec, mode: str = "card") -> None:
        if mode not in MODES:
            raise ValueError(f"preprocessing must be card or fast, got {mode!r}")
        self.spec, self.mode = spec, mode

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        fast = self.mode == "fast"
        if self.spec.input_dtype == "uint8":
            return preprocess_uint8(image_rgb, self.spec, fast)
        if not fast:
            return preprocess(image_rgb, self.spec)
        return normalize(resize_fast(image_rgb, self.spec.input_size), self.spec)
