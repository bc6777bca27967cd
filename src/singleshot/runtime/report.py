"""A detection run over files as data: the document ``singleshot detect --json`` prints (and the
server and cluster engine return), built here and only printed by front ends.

    {"model": str, "images": [{"path", "width", "height", "detections": [{"box", "score",
     "category_id", "category"}], "error": null or str[, "annotated": file name]}]}

``width``/``height`` are null for a file that could not be read; boxes are [x1, y1, x2, y2]
pixels of the original image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.detections import Detections
from ..errors import ImageError
from .pipeline import detect_pipelined


@dataclass
class ImageResult:
    """One input's entry; ``detections`` is None for a failed input."""

    path: str
    detections: Detections | None = None
    error: str | None = None
    annotated: str | None = None

    def to_dict(self) -> dict:
        d = self.detections
        entry = {"path": self.path, "width": d.width if d is not None else None,
                 "height": d.height if d is not None else None,
                 "detections": d.to_dicts() if d is not None else [], "error": self.error}
        if self.annotated is not None:
            entry["annotated"] = self.annotated
        return entry


@dataclass
class DetectionReport:
    """Every input's result in input order, and the run's totals."""

    model: str
    images: list[ImageResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(1 for r in self.images if r.error is not None)

    @property
    def detections(self) -> int:
        return sum(len(r.detections) for r in self.images if r.detections is not None)

    @property
    def images_per_s(self) -> float:
        return len(self.images) / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {"model": self.model, "images": [r.to_dict() for r in self.images]}


class AnnotatedWriter:
    """Writes ``<stem>.jpg`` annotated images into ``folder``, ``<stem>_2.jpg``... when names
    repeat (inputs from different folders)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.used = Path(folder), set()

    def __call__(self, path: str, rgb: np.ndarray, d: Detections) -> str:
        from ..io.draw import annotate

        stem = Path(path).stem
        name, k = f"{stem}.jpg", 1
        while name in self.used:
            k += 1
            name = f"{stem}_{k}.jpg"
        self.used.add(name)
        annotate(rgb, d).save(self.folder / name, quality=90)
        return name


def detect_paths(detector, paths: Iterable[str], load: Callable[[str], np.ndarray], *,
                 report: DetectionReport | None = None, annotate_into: Path | None = None,
                 streams: int | None = None, batch: int = 1,
                 **options) -> Iterator[ImageResult]:
    """Run ``detector`` over ``paths`` (``load``: path -> RGB uint8, raising ImageError) through
    the overlapped pipeline; yield each :class:`ImageResult` in input order as it finishes and
    append it to ``report``. ``annotate_into``: also write annotated images there. ``options``:
    conf, iou, max_det, classes for these calls. ``batch`` > 1: that many images per backend
    call (the graph must take batches; decoding then does not overlap inference). An error other
    than a bad input (ImageError) propagates."""
    writer = AnnotatedWriter(annotate_into) if annotate_into is not None else None
    t0 = time.perf_counter()
    results = (detect_pipelined(detector, paths, load, path_of=str, streams=streams,
                                options=options) if batch <= 1 else
               _batched(detector, paths, load, batch, options))
    try:
        for path, d, rgb in results:
            if isinstance(d, ImageError):
                result = ImageResult(str(path), error=str(d))
            elif isinstance(d, Exception):
                raise d
            else:
                result = ImageResult(str(path), d)
                if writer is not None:
                    result.annotated = writer(str(path), rgb, d)
            if report is not None:
                report.images.append(result)
            yield result
    finally:
        if report is not None:
            report.seconds += time.perf_counter() - t0


def _batched(detector, paths: Iterable[str], load, batch: int, options: dict):
    """(path, Detections or ImageError, image) in input order, ``batch`` images per call."""
    detector.check_batch(batch)
    paths = list(paths)
    for k in range(0, len(paths), batch):
        chunk, images = paths[k:k + batch], {}
        for p in chunk:
            try:
                images[p] = load(p)
            except ImageError as err:
                images[p] = err
        ok = [p for p in chunk if not isinstance(images[p], Exception)]
        dets = dict(zip(ok, detector.detect_batch([images[p] for p in ok], paths=ok, **options)))
        for p in chunk:
            yield (p, images[p], None) if p not in dets else (p, dets[p], images[p])
