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
from ..core.limits import check_all
from ..core.nms import NmsParams
from ..core.spec import ModelSpec
from ..errors import ModelError, SingleshotError, UsageError
from ..graph.contract import GraphIO, graph_io, load_model, read_spec
from ..graph.nms_constants import expose_nms_inputs, read_nms_params, rewrite_nms_params
from ..graph.normalize import fold_normalization
from ..io.images import as_rgb, exif_upright, load_image
from .autoselect import auto_backend
from .backends import (
    OpenVinoBackend,
    OrtBackend,
    TorchBackend,
    check_precision,
    is_checkpoint,
    normalize_precision,
    resolve_backend,
)
from .postprocess import Postprocessor
from .preprocess import Preprocessor


class Detector:
    """Run an SSD-ResNet34 detector on images.

    Args:
        model: path of an ONNX file, a registry name (``ssd-12``; downloaded when missing), a
            ``onnx.ModelProto``, or (``backend="torch"`` only) a checkpoint.
        conf, iou, max_det: post-processing defaults of this detector; None keeps the model's
            own (zoo: 0.05, 0.5, 200). Each call may override them (and keep only some classes).
        agnostic: suppress across classes too, with the same IoU, after the per-class NMS (one
            object is not reported as two classes; :func:`~singleshot.core.nms.agnostic_nms`).
        exif: apply EXIF orientation when reading files (default on).
        threads: intra-op threads (None: the runtime's default).
        backend: ``onnxruntime`` (default), ``openvino``, ``torch`` or ``auto`` (measured on the
            model once per CPU and cached, see :mod:`singleshot.runtime.autoselect`);
            ``self.backend.name`` says which runs.
        precision: ``auto`` (the runtime's default: OpenVINO computes bf16 on CPUs with AMX or
            AVX512-BF16), ``fp32`` (or ``f32``) or ``bf16`` (OpenVINO only; refused elsewhere
            and on CPUs without bf16).
        streams: requests that may run at once (throughput mode for folders and streams).
        preprocess: ``card`` (PIL resize, numpy normalisation: the reference) or ``fast``
            (OpenCV resize; normalisation folded into ONNX graphs, see
            :mod:`singleshot.runtime.preprocess`); every backend honours it.

    ``detector(image, conf=, iou=, max_det=, classes=)`` takes a path, encoded bytes, a PIL image
    or a uint8 array (RGB [H, W, 3], grayscale [H, W], RGBA [H, W, 4]) and returns
    :class:`Detections` in pixels of that image, clipped to it; a list of images gives a list
    (one backend call per batch where the graph takes batches: :meth:`detect_batch`,
    :attr:`batch_size`).
    """

    def __init__(self, model: str | os.PathLike | onnx.ModelProto, *, conf: float | None = None,
                 iou: float | None = None, max_det: int | None = None, exif: bool = True,
                 threads: int | None = None, providers: list[str] | None = None,
                 backend: str = "onnxruntime", precision: str = "auto", streams: int = 1,
                 preprocess: str = "card", agnostic: bool = False) -> None:
        check_all(threads=threads, streams=streams)
        if preprocess not in ("card", "fast"):
            raise UsageError(f"{{opt:preprocess}} must be card or fast, got {preprocess!r}")
        if str(backend).lower() == "auto" and (isinstance(model, onnx.ModelProto)
                                               or not is_checkpoint(model)):
            source = model if isinstance(model, onnx.ModelProto) else resolve_model_path(model)
            if not isinstance(source, onnx.ModelProto):
                load_model(source)  # a missing or broken file: its one-line error, not a timing's
            backend, precision = auto_backend(  # measured once per model file and CPU
                source, lambda b, p: Detector(source, backend=b, precision=p, threads=threads,
                                              preprocess=preprocess, exif=False),
                precision=normalize_precision(precision), preprocess=preprocess)
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
        zoo = self.io.contract in ("zoo", "zoo-batch")
        self.graph_params = read_nms_params(proto) if zoo else None
        self.params = merge_options(self.graph_params or NmsParams(), conf, iou, max_det,
                                    agnostic)
        mode = "raw"
        if zoo and self.graph_params is None:
            if (conf, iou, max_det) != (None, None, None):
                raise ModelError(f"{self.name}: cannot find the NMS node to apply conf/iou/max-det")
            mode = "fixed"
            self.params = NmsParams(float("-inf"), 0.0, 1 << 30, 1 << 30,  # whatever it gives
                                    agnostic=bool(agnostic))
        elif zoo:
            try:  # thresholds and caps become inputs: one session serves every call's options
                proto = expose_nms_inputs(proto, self.spec.num_classes)
                mode = "graph"
            except ModelError:  # computed in the graph: set once here, then only stricter
                mode = "fixed"
                g, want = self.graph_params, self.params
                if (want.iou_threshold != g.iou_threshold or want.score_threshold <
                        g.score_threshold or want.max_det > g.max_det):
                    copy_ = onnx.ModelProto()
                    copy_.CopyFrom(proto)  # never change a ModelProto the caller still holds
                    proto = rewrite_nms_params(copy_, NmsParams(
                        min(want.score_threshold, g.score_threshold), want.iou_threshold,
                        max(g.max_per_class, want.max_per_class), max(g.max_det, want.max_det)))
        self.postprocessor = Postprocessor(self.io.contract, self.spec, self.params, mode=mode,
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

    def options(self, conf: float | None = None, iou: float | None = None,
                max_det: int | None = None, classes=None,
                agnostic: bool | None = None) -> tuple[NmsParams, np.ndarray | None]:
        """One call's post-processing: this detector's thresholds with the given ones instead,
        ``classes`` (category ids or names; None: all) as 0-based class indices, and
        ``agnostic`` (suppression across classes after the per-class NMS)."""
        params = merge_options(self.params, conf, iou, max_det, agnostic)
        return params, (None if classes is None else class_indices(self.spec, classes))

    def infer(self, tensor: np.ndarray, params: NmsParams | None = None,
              classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Preprocessed input [1, 3, h, w] -> (boxes [K, 4] xyxy normalised, labels [K], scores [K])
        with this detector's thresholds (or ``params``, ``classes``: 0-based class indices to
        keep): backend, then post-processing. Other options never rebuild a session."""
        params = params or self.params
        return self.postprocessor(self._run(tensor, params, classes), params, classes)

    def infer_batch(self, x: np.ndarray, params: NmsParams | None = None,
                    classes: np.ndarray | None = None) -> list[tuple[np.ndarray, ...]]:
        """Preprocessed inputs [n, 3, h, w] (n the graph takes) -> per image (boxes [K, 4] xyxy
        normalised, labels [K] 1..C, scores [K]) in one backend call."""
        params = params or self.params
        return self.postprocessor.split(self._run(x, params, classes), params, classes,
                                        limit=len(x))

    def _run(self, x: np.ndarray, params: NmsParams, classes) -> list[np.ndarray]:
        """The backend on input [n, 3, h, w] with this call's options (a fixed-batch graph gets
        its batch, padded with the last image) -> the graph's outputs."""
        pad = (self.batch_size or len(x)) - len(x)
        if pad > 0:
            x = np.concatenate([x] + [x[-1:]] * pad)
        return self.backend.run(x, self.postprocessor.feeds(params, classes))

    @property
    def batch_size(self) -> int | None:
        """Images the graph takes per call: an int for a fixed batch (1 for the zoo's files),
        None for a dynamic one (raw-head exports, ``export --batch dynamic``)."""
        return self.io.batch

    def check_batch(self, n: int) -> None:
        """UsageError naming the graph's real batch when it cannot take ``n`` images per call."""
        self.io.check_batch(n, self.name)

    def detect_batch(self, images_rgb: list[np.ndarray], *, clip: bool = True,
                     paths: list[str | None] | None = None, **options) -> list[Detections]:
        """RGB uint8 arrays [H, W, 3] -> their Detections, in one backend call (a fixed-batch
        graph gets its batch, padded with the last image). Each image gets its batch-1 result.
        UsageError when the graph takes one image at a time (no sequential calls dressed as a
        batch: call the detector once per image)."""
        n = len(images_rgb)
        if n == 0:
            return []
        self.check_batch(n)
        params, classes = self.options(**options)
        t0 = time.perf_counter()
        x = np.concatenate([self.preprocess(im) for im in images_rgb])
        t1 = time.perf_counter()
        outputs = self._run(x, params, classes)
        t2 = time.perf_counter()
        results = self.postprocessor.split(outputs, params, classes, limit=n)
        t3 = time.perf_counter()
        per = {"preprocess": (t1 - t0) * 1e3 / n, "inference": (t2 - t1) * 1e3 / n,
               "postprocess": (t3 - t2) * 1e3 / n}
        dets = []
        for k, (im, (boxes, labels, scores)) in enumerate(zip(images_rgb, results)):
            h, w = im.shape[:2]
            d = Detections.from_normalized(boxes, labels, scores, self.spec, w, h, clip=clip,
                                           path=paths[k] if paths else None)
            d.timings = dict(per)  # the batch's time shared out
            dets.append(d)
        return dets

    def detect_many(self, images_rgb: list[np.ndarray], *, clip: bool = True,
                    **options) -> list[Detections]:
        """Any number of RGB uint8 arrays -> their Detections, in the largest calls the graph
        takes (one image per call for a batch-1 graph)."""
        if self.batch_size == 1:
            return [self.detect_array(im, clip=clip, **options) for im in images_rgb]
        size = self.batch_size or max(1, len(images_rgb))
        return [d for k in range(0, len(images_rgb), size)
                for d in self.detect_batch(images_rgb[k:k + size], clip=clip, **options)]

    def detect_array(self, image_rgb: np.ndarray, *, clip: bool = True,
                     path: str | None = None, **options) -> Detections:
        """RGB uint8 [H, W, 3] -> Detections (pixels of this array); ``options``: conf, iou,
        max_det, classes for this call."""
        t0 = time.perf_counter()
        x = self.preprocess(image_rgb)
        return self.detect_tensor(x, image_rgb.shape[:2], clip=clip, path=path,
                                  timings={"preprocess": (time.perf_counter() - t0) * 1e3},
                                  **options)

    def detect_tensor(self, x: np.ndarray, image_hw: tuple[int, int], *, clip: bool = True,
                      path: str | None = None, timings: dict | None = None,
                      **options) -> Detections:
        """Preprocessed input [1, 3, h, w] of an image of ``image_hw`` (height, width) pixels ->
        Detections in that image's pixels; ``timings`` (ms of earlier stages) are kept and
        inference and postprocess added; ``options``: conf, iou, max_det, classes for this call."""
        params, classes = self.options(**options)
        t0 = time.perf_counter()
        boxes, labels, scores = self.infer(x, params, classes)
        t1 = time.perf_counter()
        h, w = image_hw
        det = Detections.from_normalized(boxes, labels, scores, self.spec, w, h, clip=clip,
                                         path=path)
        det.timings = {**(timings or {}), "inference": (t1 - t0) * 1e3,
                       "postprocess": (time.perf_counter() - t1) * 1e3}
        return det

    def __call__(self, image, *, clip: bool = True, conf: float | None = None,
                 iou: float | None = None, max_det: int | None = None, classes=None,
                 agnostic: bool | None = None, errors: str = "return"):
        """``image``: a path, encoded bytes, a PIL image or a uint8 array [H, W] (grayscale),
        [H, W, 3] (RGB) or [H, W, 4] (RGBA) -> Detections in its pixels; a list of them -> a list
        of Detections. ``conf``, ``iou``, ``max_det``: this call's thresholds (None: the
        detector's); ``classes``: category ids or names to keep, as if the others scored zero
        before the per-image cap; ``agnostic``: suppression across classes too.

        A list goes on past an image that cannot be read: its result is empty with ``error``
        set (:meth:`Detections.failed`); ``errors="raise"`` raises the first instead. The
        options are checked before any image (a bad one raises either way)."""
        from PIL import Image

        options = {"conf": conf, "iou": iou, "max_det": max_det, "classes": classes,
                   "agnostic": agnostic}
        if errors not in ("return", "raise"):
            raise UsageError(f"errors must be 'return' or 'raise', got {errors!r}")
        if isinstance(image, (list, tuple)):
            self.options(**options)  # bad options are the caller's error, not an image's
            return self._call_many(list(image), clip, options, errors == "raise")
        if not isinstance(image, (str, os.PathLike, bytes, np.ndarray, Image.Image)):
            raise TypeError(f"Detector takes a path (str or PathLike), encoded bytes, a PIL "
                            f"image, a uint8 array or a list of them, not "
                            f"{type(image).__name__}")
        if isinstance(image, (np.ndarray, Image.Image)):
            return self.detect_array(self.decode(image), clip=clip, **options)
        t0 = time.perf_counter()
        rgb = self.decode(image)
        decode_ms = (time.perf_counter() - t0) * 1e3
        det = self.detect_array(rgb, clip=clip,
                                path=None if isinstance(image, bytes) else str(image), **options)
        det.timings = {"decode": decode_ms, **det.timings}
        return det

    def _call_many(self, images: list, clip: bool, options: dict, raise_errors: bool) -> list:
        """A list call: one result per image, in order (see :meth:`__call__`)."""
        def path_of(im):
            return str(im) if isinstance(im, (str, os.PathLike)) else None

        if self.batch_size == 1 or not images:  # one image per call, with its path and timings
            out = []
            for im in images:
                try:
                    out.append(self(im, clip=clip, **options))
                except (SingleshotError, OSError) as err:
                    if raise_errors or isinstance(err, UsageError):
                        raise
                    out.append(Detections.failed(str(err), path_of(im)))
            return out
        out, decoded = [None] * len(images), []
        for k, im in enumerate(images):
            try:
                decoded.append((k, self.decode(im)))
            except (SingleshotError, OSError) as err:
                if raise_errors:
                    raise
                out[k] = Detections.failed(str(err), path_of(im))
        for (k, _), d in zip(decoded, self.detect_many([rgb for _, rgb in decoded], clip=clip,
                                                       **options)):
            d.path = path_of(images[k])
            out[k] = d
        return out

    def decode(self, image, max_pixels: int | None = None) -> np.ndarray:
        """Any accepted image -> RGB uint8 [H, W, 3] (EXIF orientation applied when ``exif``);
        ``max_pixels``: encoded images over it are refused from their header (ImageError)."""
        from PIL import Image

        if isinstance(image, Image.Image):
            return as_rgb(exif_upright(image, "<image>") if self.exif else image)
        if isinstance(image, np.ndarray):
            return as_rgb(image)
        if max_pixels is None:
            return load_image(image, exif=self.exif)
        return load_image(image, exif=self.exif, max_pixels=max_pixels)


def merge_options(base: NmsParams, conf: float | None = None, iou: float | None = None,
                  max_det: int | None = None, agnostic: bool | None = None) -> NmsParams:
    """``base`` with the given thresholds instead (a cap above the per-class cap raises it);
    ``agnostic``: suppression across classes too (None: ``base``'s)."""
    check_all(conf=conf, iou=iou, max_det=max_det)
    if agnostic is not None and not isinstance(agnostic, (bool, np.bool_)):
        raise UsageError(f"agnostic must be true or false, got {agnostic!r}")
    return NmsParams(base.score_threshold if conf is None else float(conf),
                     base.iou_threshold if iou is None else float(iou),
                     max(base.max_per_class, int(max_det or 0)),
                     base.max_det if max_det is None else int(max_det),
                     base.agnostic if agnostic is None else bool(agnostic))


def class_indices(spec: ModelSpec, classes) -> np.ndarray:
    """Category ids (int) or class names (str) of ``spec`` -> sorted 0-based class indices."""
    items = [classes] if isinstance(classes, (int, str)) else list(classes)
    by_id = {int(c): k for k, c in enumerate(spec.category_ids)}
    by_name = {n: k for k, n in enumerate(spec.class_names)}
    out = set()
    for c in items:
        if isinstance(c, bool) or not isinstance(c, (str, int, np.integer)):
            raise UsageError(f"classes are category ids or names, got {c!r}")
        k = by_name.get(c) if isinstance(c, str) else by_id.get(int(c))
        if k is None and isinstance(c, str) and c.strip().isdigit():
            k = by_id.get(int(c))
        if k is None:
            raise UsageError(f"unknown class {c!r}: this model's classes are category ids "
                             f"{list(spec.category_ids)[:5]}... or names "
                             f"{list(spec.class_names)[:5]}...")
        out.add(k)
    return np.asarray(sorted(out), np.int64)


def resolve_model_path(model: str | os.PathLike) -> Path:
    """A file path as is; a registry name -> the cached file (downloaded when missing).

    A registry name means the registry entry unless it names an existing ``.onnx`` file (a file
    or folder called ``demo`` in the working directory never shadows the bundled model); a
    folder is never taken for a model."""
    from ..hub.download import ensure_model
    from ..hub.registry import get_entry, is_registry_name

    p = Path(model)
    named = is_registry_name(str(model)) and not (p.is_file() and p.suffix == ".onnx")
    if not named and p.is_dir():
        raise ModelError(f"{model}: is a folder, not a model file (give the .onnx inside it)")
    if not named and (p.suffix == ".onnx" or p.exists() or "/" in str(model) or
                      os.sep in str(model)):
        return p
    return ensure_model(get_entry(str(model)))  # an unknown name: UsageError listing the known
