"""Cheap preprocessing: the normalisation moves into the graph, the resize to OpenCV.

The card's path (PIL bilinear resize, then /255, mean/std and NCHW in numpy float32) spends most
of its time in the float normalisation. Here the graph takes the resized image as uint8 NCHW and
normalises it itself (Cast, Sub, Mul at the front, for the runtime to run or fuse); the client
only resizes (OpenCV: about 10x faster than PIL, per reference/PERFORMANCE.md) and transposes
bytes. Measured at 1200x1200 here: preprocessing 58-85 ms -> 5 ms (bench/RESULTS.md). ``preprocess`` in :mod:`singleshot.runtime.preprocess` stays the reference; the
difference in detections and mAP is measured in bench/RESULTS.md.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.spec import ModelSpec

try:  # OpenCV is optional: PIL does the resize where it is missing
    import cv2
except ImportError:  # pragma: no cover - CI installs opencv-python-headless
    cv2 = None


def fold_normalization(model: onnx.ModelProto, input_name: str,
                       spec: ModelSpec) -> tuple[onnx.ModelProto, ModelSpec]:
    """A copy of ``model`` whose input ``input_name`` is uint8 [1, 3, h, w] (0..255, RGB) and
    whose first nodes compute ``(x - 255 mean) / (255 std)`` in float32, the card's
    normalisation. Returns (model, spec with ``input_dtype="uint8"``)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inp = next(i for i in g.input if i.name == input_name)
    inner = input_name + "_normalized"
    for node in g.node:
        for k, name in enumerate(node.input):
            if name == input_name:
                node.input[k] = inner
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1) * np.float32(255)
    inv = (1 / (np.asarray(spec.std, np.float32) * np.float32(255))).reshape(1, 3, 1, 1)
    g.initializer.extend([numpy_helper.from_array(mean.astype(np.float32), inner + "_mean"),
                          numpy_helper.from_array(inv.astype(np.float32), inner + "_invstd")])
    front = [
        helper.make_node("Cast", [input_name], [inner + "_f"], to=TensorProto.FLOAT,
                         name=inner + "_cast"),
        helper.make_node("Sub", [inner + "_f", inner + "_mean"], [inner + "_c"], name=inner + "_sub"),
        helper.make_node("Mul", [inner + "_c", inner + "_invstd"], [inner], name=inner + "_mul"),
    ]
    nodes = front + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    return out, spec.with_(input_dtype="uint8")


def resize_fast(image_rgb: np.ndarray, size: tuple[int, int], fast: bool = True) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> [h, w, 3] uint8 (``size`` = (h, w)). OpenCV bilinear when
    enlarging, area averaging when shrinking (closest to PIL's antialiased bilinear); PIL's
    bilinear (the card's) with ``fast=False`` or without OpenCV."""
    h, w = size
    if cv2 is None or not fast:
        from PIL import Image

        return np.asarray(Image.fromarray(image_rgb).resize((w, h), Image.BILINEAR))
    shrink = h < image_rgb.shape[0] and w < image_rgb.shape[1]
    return cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def preprocess_uint8(image_rgb: np.ndarray, spec: ModelSpec, fast: bool = True) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> [1, 3, h, w] uint8 for a graph made by :func:`fold_normalization`."""
    resized = resize_fast(image_rgb, spec.input_size, fast)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None])
