"""Preprocessing exactly as the model card: PIL bilinear resize to the input size, /255,
ImageNet mean/std, NCHW float32, RGB. No letterboxing: the aspect ratio is not kept."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..core.spec import ModelSpec


def preprocess(image_rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> model input [1, 3, h, w] float32 (h, w = spec.input_size)."""
    h, w = spec.input_size
    resized = Image.fromarray(image_rgb).resize((w, h), Image.BILINEAR)
    x = np.asarray(resized, dtype=np.float32) / np.float32(255)  # [h, w, 3]
    x = (x - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # [1, 3, h, w]
