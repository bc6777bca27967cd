"""A detection run over files as data: the document ``singleshot detect --json`` prints (and the
server and cluster engine return), built here and only printed by front ends.

    {"model": str, "images": [{"path", "width", "height", "detections": [{"box", "score",
     "category_id", "category"}], "error": null or str[, "annotated": file name]}]}

``width``/``height`` are null for a file that could not be read; boxes are [x1, y1, x2, y2]
pixels of the original image.

With an output folder, :class:`ResultStore` journals each result as it comes (either engine,
local or cluster) and assembles ``detections.json`` in input order at the end; a run stopped
anywhere resumes from the journal.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.detections import Detections
from ..errors import ImageError
from ..io.fetch import source_version
from ..io.journal import Journal
from .pipeline import detect_pipelined


@dataclass
class ImageResult:
    """One input's entry; ``detections`` is None for a failed input."""

    path: str
    detections: Detections | None = None
    error: str | None = None
    annotated: str | None = None

    @property
    def detection_count(self) -> int:
        return len(self.detections) if self.detections is not None else 0

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
        return sum(r.detection_count for r in self.images)

    @property
    def images_per_s(self) -> float:
        return len(self.images) / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {"model": self.model, "images": [r.to_dict() for r in self.images]}

    def ordered(self, paths: list[str]) -> None:
        """Put :attr:`images` (from an engine that finishes out of order) in the order of
        ``paths``; an input given twice gets its one result twice."""
        by_path = {r.path: r for r in self.images}
        self.images = [by_path[str(p)] for p in paths]


@dataclass
class Totals:
    """Counts over a whole run, resumed inputs included."""

    images: int = 0
    failed: int = 0
    detections: int = 0
    annotated: int = 0

    def count(self, entry: dict) -> dict:
        self.images += 1
        self.failed += entry.get("error") is not None
        self.detections += len(entry.get("detections") or ())
        self.annotated += "annotated" in entry
        return entry


def _journal_key(entry: dict) -> tuple[str, str]:
    return entry["path"], json.dumps(entry["source"], sort_keys=True)


class ResultStore:
    """A detect run's output folder: ``run.json`` (:func:`detector_manifest` plus ``settings``),
    ``detections.jsonl`` (one line per finished input, keyed by its path or URL plus its
    version - size and mtime, or ETag - so a changed input is redone) and, at the end,
    ``detections.json`` in input order. Which engine made a line does not matter."""

    def __init__(self, folder: Path, detector, **settings) -> None:
        self.folder = Path(folder)
        self.model = detector.name
        self.journal = Journal(self.folder, key=_journal_key)
        self.manifest = detector_manifest(detector, **settings)
        self.versions: dict[str, dict] = {}
        self.done: set = set()  # journal keys found by open()
        self.names: dict = {}  # journal key -> annotated image name, found by open()

    def open(self, paths: list[str]) -> list[str]:
        """Check the folder's manifest (UsageError for another model or settings), note each
        input's version, and return the inputs that still need a result (each once)."""
        self.journal.open(self.manifest)
        done, self.names = set(), {}
        for key, entry, _, _ in self.journal.lines():  # one pass over what earlier runs wrote
            done.add(key)
            if "annotated" in entry:
                self.names[key] = entry["annotated"]
        self.done = done
        unique = list(dict.fromkeys(str(p) for p in paths))
        # a URL's version is a request (HEAD): many at once, not a million in a row
        with ThreadPoolExecutor(16) as pool:
            self.versions = dict(zip(unique, pool.map(source_version, unique)))
        # an input with no version (missing, unreachable) is tried again every time
        return [p for p in unique if not self.versions[p] or self._key(p) not in done]

    def _key(self, path: str) -> tuple[str, str]:
        return _journal_key({"path": path, "source": self.versions[path]})

    def annotated_names(self) -> set[str]:
        """Annotated image names of the inputs already done (a resumed run does not reuse
        them; an input redone because it changed gets its name back)."""
        current = {self._key(p) for p in self.versions if self.versions[p]}
        return {name for key, name in self.names.items() if key in current}

    @contextlib.contextmanager
    def recorder(self):
        """``with store.recorder() as record: record(entry)`` (an entry of the detect document)
        -> False for an input that already has a line (a batch redone after a worker died is
        written once)."""
        with self.journal.appender(self.done) as add:
            yield lambda entry: add({**entry, "source": self.versions[entry["path"]]})

    def assemble(self, paths: list[str]) -> Totals:
        """Write ``detections.json`` (the detect document, inputs in order) from the journal;
        AssemblyError naming any input without exactly one result."""
        totals = Totals()
        self.journal.assemble([self._key(str(p)) for p in paths], self.folder / "detections.json",
                              {"model": self.model},
                              transform=lambda e: totals.count(
                                  {k: v for k, v in e.items() if k != "source"}))
        return totals


def detector_manifest(detector, **extra) -> dict:
    """Everything about ``detector`` that decides its detections, for a run's ``run.json``: the
    model file's content hash (a re-export to the same path is another model), backend,
    precision, preprocessing and thresholds; ``extra``: the run's own settings."""
    from ..hub.download import sha256_file

    path = Path(detector.name)
    digest = sha256_file(path) if path.is_file() else None
    p = detector.params
    return {"model_path": str(path.resolve()) if digest else detector.name,
            "model_sha256": digest, "backend": detector.backend.name,
            "precision": detector.backend.precision, "preprocess": detector.preprocess_mode,
            "thresholds": {"conf": p.score_threshold, "iou": p.iou_threshold,
                           "max_per_class": p.max_per_class, "max_det": p.max_det,
                           # only when on: earlier runs' manifests stay the same
                           **({"agnostic": True} if p.agnostic else {})}, **extra}


class AnnotatedWriter:
    """Writes ``<stem>.jpg`` annotated images into ``folder``, ``<stem>_2.jpg``... when names
    repeat (inputs from different folders)."""

    def __init__(self, folder: Path, used: Iterable[str] = (), style=None) -> None:
        from .exports import Stems

        self.folder, self.style = Path(folder), style
        self.stems = Stems(Path(name).stem for name in used)

    def __call__(self, path: str, rgb: np.ndarray, d: Detections) -> str:
        from ..io.draw import annotate

        name = f"{self.stems(path)}.jpg"
        annotate(rgb, d, style=self.style).save(self.folder / name, quality=90)
        return name


def detect_paths(detector, paths: Iterable[str], load: Callable[[str], np.ndarray], *,
                 report: DetectionReport | None = None, annotate_into: Path | None = None,
                 annotated: Iterable[str] = (), streams: int | None = None, batch: int = 1,
                 crops_into: Path | None = None, style=None, **options) -> Iterator[ImageResult]:
    """Run ``detector`` over ``paths`` (``load``: path -> RGB uint8, raising ImageError) through
    the overlapped pipeline; yield each :class:`ImageResult` in input order as it finishes and
    append it to ``report``. ``annotate_into``: also write annotated images there. ``options``:
    conf, iou, max_det, classes for these calls; ``annotated``: names already taken in
    ``annotate_into``. ``batch`` > 1: that many images per backend
    call (the graph must take batches; decoding then does not overlap inference).
    ``style``: how annotated images are drawn (:class:`~singleshot.io.draw.DrawStyle`).
    ``crops_into``: each detection cut out into ``crops_into/<category>/<stem>_<n>.jpg``
    (:class:`~.exports.CropWriter`). An error other than a bad input (ImageError) propagates."""
    from .exports import CropWriter, Stems

    writer = AnnotatedWriter(annotate_into, annotated, style) if annotate_into is not None \
        else None
    crops, stem_of = (CropWriter(crops_into), Stems()) if crops_into is not None else (None, None)
    t0 = time.perf_counter()
    results = (detect_pipelined(detector, paths, load, path_of=str, streams=streams,
                                options=options) if batch <= 1 else
               _batched(detector, paths, load, batch, options))
    try:
        for path, d, rgb in results:
            if isinstance(d, ImageError):
                result = ImageResult(str(path), error=str(d))
                if stem_of is not None:
                    stem_of(str(path))  # as the label files' names count it
            elif isinstance(d, Exception):
                raise d
            else:
                result = ImageResult(str(path), d)
                if writer is not None:
                    result.annotated = writer(str(path), rgb, d)
                if crops is not None:
                    crops(stem_of(str(path), result.annotated), rgb, d)
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
