"""The ``Detector``: image -> :class:`~singleshot.runtime.preprocess.Preprocessor` -> a backend
(:mod:`singleshot.runtime.backends`) -> :class:`~singleshot.runtime.postprocess.Postprocessor`
-> Detections, each stage usable alone.

Works with zoo-contract graphs (in-graph NMS) and raw-head graphs (loc, conf; their decode + NMS
runs as a second small onnxruntime graph with the zoo semantics). On zoo graphs, the
NMS constants are part of the graph: a looser score threshold, any other IoU threshold or a larger
detection cap is applied by rewriting those constants when the session is built; a stricter score
threshold or smaller cap is applied to the outputs (exactly equivalent, and cheaper).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import onnx

from ..core.detections import Detections
from ..core.nms import NmsParams
from ..core.spec import ModelSpec
from ..errors import ModelError, UsageError
from ..graph.contract import GraphIO, graph_io, load_model, read_spec
from ..graph.nms_constants import read_nms_params, rewrite_nms_params
from ..graph.normalize import fold_normalization
from ..io.images import as_rgb, load_image
from .backends import (
    OpenVinoBackend,
    OrtBackend,
    TorchBackend,
    check_precision,
    is_checkpoint,
    resolve_backend,
)
from .postprocess import Postprocessor
from .preprocess import Preprocessor


class Detector:
    """Run an SSD-ResNet34 detector on images.

    Args:
        model: path of an ONNX file, a registry name (``ssd-12``; downloaded when missing), a
            ``onnx.ModelProto``, or (``backend="torch"`` only) a checkpoint.
        conf, iou, max_det: post-processing; None keeps the model's own (zoo: 0.05, 0.5, 200).
        exif: apply EXIF orientation when reading files (default on).
        threads: intra-op threads (None: the runtime's default).
        backend: ``onnxruntime`` (default), ``openvino``, ``torch`` or ``auto`` (OpenVINO where
            installed, else onnxruntime); ``self.backend.name`` says which runs.
        precision: ``auto`` (the runtime's default: OpenVINO computes bf16 on CPUs with AMX or
            AVX512-BF16), ``fp32`` (or ``f32``) or ``bf16`` (OpenVINO only; refused elsewhere
            and on CPUs without bf16).
        streams: requests that may run at once (throughput mode for folders and streams).
        preprocess: ``card`` (PIL resize, numpy normalisation: the reference) or ``fast``
            (OpenCV resize; normalisation folded into ONNX graphs, see
            :mod:`singleshot.runtime.preprocess`); every backend honours it.

    ``detector(image)`` takes a path, encoded bytes, a PIL image or a uint8 array (RGB [H, W, 3],
    grayscale [H, W], RGBA [H, W, 4]) and returns :class:`Detections` in pixels of that image,
    clipped to it.
    """

    def __init__(self, model: str | os.PathLike | onnx.ModelProto, *, conf: float | None = None,
                 iou: float | None = None, max_det: int | None = None, exif: bool = True,
                 threads: int | None = None, providers: list[str] | None = None,
                 backend: str = "onnxruntime", precision: str = "auto", streams: int = 1,
                 preprocess: str = "card") -> None:
        if preprocess not in ("card", "fast"):
            raise UsageError(f"{{opt:preprocess}} must be card or fast, got {preprocess!r}")
        backend = resolve_backend(backend)
        precision = check_precision(backend, precision)
        self.exif, self.preprocess_mode = exif, preprocess
        if backend == "torch":
            if isinstance(model, onnx.ModelProto) or not is_checkpoint(model):
                raise UsageError("the torch backend runs checkpoints (.pt/.pth/.pytorch), "
                                 "not ONNX files")
            self.backend = TorchBackend(model, threads=threads)
            self.name, self.spec = str(model), self.backend.spec
            h, w = self.spec.input_size
            self.io = GraphIO("raw", "image", (1, 3, h, w), "float32", ("loc", "conf"))
            proto = None
        elif isinstance(model, onnx.ModelProto):
            proto, self.name = model, "<model>"
        else:
            if is_checkpoint(model):
                raise UsageError(f"{model}: a checkpoint; export it first (singleshot export) "
                                 "or use {opt:backend} torch")
            path = resolve_model_path(model)
            proto, self.name = load_model(path), str(path)
        if proto is not None:
            self.io = graph_io(proto, self.name)
            self.spec: ModelSpec = read_spec(proto, self.io)
        self.graph_params = read_nms_params(proto) if self.io.contract == "zoo" else None
        base = self.graph_params or NmsParams()
        want = NmsParams(
            base.score_threshold if conf is None else float(conf),
            base.iou_threshold if iou is None else float(iou),
            max(base.max_per_class, max_det or 0),
            base.max_det if max_det is None else int(max_det),
        )
        self.params = want
        if self.io.contract == "zoo" and self.graph_params is None:
            if (conf, iou, max_det) != (None, None, None):
                raise ModelError(f"{self.name}: cannot find the NMS node to apply conf/iou/max-det")
        elif self.io.contract == "zoo":
            g = self.graph_params
            needs = (want.iou_threshold != g.iou_threshold or want.score_threshold <
                     g.score_threshold or want.max_det > g.max_det)
            if needs:
                rewritten = NmsParams(min(want.score_threshold, g.score_threshold),
                                      want.iou_threshold, max(g.max_per_class, want.max_per_class),
                                      max(g.max_det, want.max_det))
                copy_ = onnx.ModelProto()
                copy_.CopyFrom(proto)  # never change a ModelProto the caller still holds
                proto = rewrite_nms_params(copy_, rewritten)
        self.postprocessor = Postprocessor(self.io.contract, self.spec, want,
                                           filter_outputs=(conf, max_det) != (None, None),
                                           threads=threads, name=self.name)
        if proto is not None:
            if preprocess == "fast" and self.spec.input_dtype == "float32":
                proto, self.spec = fold_normalization(proto, self.io.input, self.spec)
            if backend == "openvino":
                self.backend = OpenVinoBackend(proto, self.io.outputs, self.io.input,
                                               threads=threads, streams=streams,
                                               precision=precision)
            else:
                self.backend = OrtBackend(proto, self.io.outputs, self.io.input, threads=threads,
                                          streams=streams, providers=providers)
        self.preprocessor = Preprocessor(self.spec, preprocess)

    def preprocess(self, image_rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> this detector's input tensor [1, 3, h, w]."""
        return self.preprocessor(image_rgb)

    def infer(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Preprocessed input [1, 3, h, w] -> (boxes [K, 4] xyxy normalised, labels [K], scores [K])
        with this detector's thresholds applied: backend, then post-processing."""
        return self.postprocessor(self.backend.run(tensor))

    def detect_array(self, image_rgb: np.ndarray, *, clip: bool = True,
                     path: str | None = None) -> Detections:
        """RGB uint8 [H, W, 3] -> Detections (pixels of this array)."""
        t0 = time.perf_counter()
        x = self.preprocess(image_rgb)
        return self.detect_tensor(x, image_rgb.shape[:2], clip=clip, path=path,
                                  timings={"preprocess": (time.perf_counter() - t0) * 1e3})

    def detect_tensor(self, x: np.ndarray, image_hw: tuple[int, int], *, clip: bool = True,
                      path: str | None = None, timings: dict | None = None) -> Detections:
        """Preprocessed input [1, 3, h, w] of an image of ``image_hw`` (height, width) pixels ->
        Detections in that image's pixels; ``timings`` (ms of earlier stages) are kept and
        inference and postprocess added."""
        t0 = time.perf_counter()
        boxes, labels, scores = self.infer(x)
        t1 = time.perf_counter()
        h, w = image_hw
        det = Detections.from_normalized(boxes, labels, scores, self.spec, w, h, clip=clip,
                                         path=path)
        det.timings = {**(timings or {}), "inference": (t1 - t0) * 1e3,
                       "postprocess": (time.perf_counter() - t1) * 1e3}
        return det

    def __call__(self, image, *, clip: bool = True) -> Detections:
        """``image``: a path, encoded bytes, a PIL image or a uint8 array [H, W] (grayscale),
        [H, W, 3] (RGB) or [H, W, 4] (RGBA) -> Detections in its pixels."""
        from PIL import Image

        if isinstance(image, (np.ndarray, Image.Image)):
            if isinstance(image, Image.Image) and self.exif:
                from PIL import ImageOps

                image = ImageOps.exif_transpose(image)
            return self.detect_array(as_rgb(image), clip=clip)
        t0 = time.perf_counter()
        rgb = load_image(image, exif=self.exif)
        decode_ms = (time.perf_counter() - t0) * 1e3
        det = self.detect_array(rgb, clip=clip,
                                path=None if isinstance(image, bytes) else str(image))
        det.timings = {"decode": decode_ms, **det.timings}
        return det


def resolve_model_path(model: str | os.PathLike) -> Path:
    """A file path as is; a registry name -> the cached file (downloaded when missing)."""
    p = Path(model)
    if p.suffix == ".onnx" or p.exists() or os.sep in str(model):
        return p
    from ..hub.download import ensure_model
    from ..hub.registry import get_entry

    return ensure_model(get_entry(str(model)))
