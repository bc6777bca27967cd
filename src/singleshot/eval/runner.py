"""A model's pass over a dataset: images in, COCO results out, one image at a time.

The runner knows neither files nor folders: it takes the images to run, a ``load`` function
that decodes one (``image record -> RGB uint8 [H, W, 3]``, raising ImageError) and the entries
already done; each finished image goes to an ``add`` callback. :func:`run_detection` wires it to
a folder of images and a :class:`~singleshot.eval.store.RunStore`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.spec import ModelSpec
from ..errors import ImageError, UsageError
from ..progress import SILENT, Progress
from .annotations import CocoAnnotations
from .store import RunStore, run_manifest


def category_map(spec: ModelSpec, gt: CocoAnnotations) -> np.ndarray:
    """label (1..C) -> dataset category id, as array index ``label - 1``.

    The model's own category ids when the annotations have them all; else by class name."""
    gt_ids = {c["id"] for c in gt.categories}
    if set(spec.category_ids) <= gt_ids:
        return np.asarray(spec.category_ids, dtype=np.int64)
    by_name = {c["name"]: c["id"] for c in gt.categories}
    if all(n in by_name for n in spec.class_names):
        return np.asarray([by_name[n] for n in spec.class_names], dtype=np.int64)
    raise UsageError(f"{gt.path}: the model's categories (ids {list(spec.category_ids)[:5]}..., "
                     f"names {list(spec.class_names)[:3]}...) match neither the ids nor the names "
                     "in the annotations")


def select_images(gt: CocoAnnotations, *, mlperf: bool = False, limit: int | None = None) -> list[dict]:
    """Images to evaluate, by id; ``mlperf`` drops images without annotations (48 in val2017)."""
    images = sorted(gt.images, key=lambda im: im["id"])
    if mlperf:
        annotated = gt.annotated_image_ids()
        images = [im for im in images if im["id"] in annotated]
    return images[:limit] if limit else images


@dataclass
class DetectionRun:
    """A model's pass over a dataset. by_image: COCO results of every image done (image id ->
    its results in the detector's order); failures: (file name, error) of images that could not
    be read."""

    name: str
    out_dir: Path | None = None
    by_image: dict[int, list[dict]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0
    images_per_s: float | None = None
    inference_ms: float | None = None  # mean session time per image of this pass (no decode/pre/post)
    partial: object = None  # a CocoEvaluator merged from workers' states (cluster engine)

    @property
    def done_ids(self) -> list[int]:
        """The images evaluated, in input order."""
        return list(self.by_image)

    @property
    def results(self) -> list[dict]:
        """Every image's COCO results, in input order."""
        return [r for rs in self.by_image.values() for r in rs]

    def evaluator(self, gt: CocoAnnotations, fast: bool = False):
        """A :class:`~singleshot.eval.coco.CocoEvaluator` holding this run's images."""
        from .coco import CocoEvaluator

        ev = CocoEvaluator(gt, fast=fast)
        if self.partial is not None:
            ev.merge(self.partial)
        for image_id, results in self.by_image.items():
            if image_id not in ev.images:  # resumed images, or every image of a local pass
                ev.process(image_id, results)
        return ev


def detect_entries(detector, chunk: list[dict], load: Callable[[dict], np.ndarray],
                   categories: np.ndarray, *, clip: bool = False,
                   batch: int = 1) -> tuple[list[dict], list[float]]:
    """Detect on a chunk of image records -> (an entry per record: ``{"image_id", "file_name",
    "error", "results"[, "note"]}``, session ms per decoded image). ``batch`` > 1: one backend
    call for the chunk."""
    entries, decoded, infer_ms = [], [], []
    for im in chunk:
        entry: dict = {"image_id": im["id"], "file_name": im["file_name"],
                       "error": None, "results": []}
        try:
            decoded.append((im, entry, load(im)))
        except ImageError as err:
            entry["error"] = str(err)
        entries.append(entry)
    rgbs = [rgb for _, _, rgb in decoded]
    dets = detector.detect_batch(rgbs, clip=clip) if batch > 1 else \
        [detector.detect_array(rgb, clip=clip) for rgb in rgbs]
    for (im, entry, rgb), det in zip(decoded, dets):
        det.category_ids = categories[det.labels - 1]
        entry["results"] = det.to_coco(im["id"])
        infer_ms.append(det.timings["inference"])
        h, w = rgb.shape[:2]
        if (im.get("width"), im.get("height")) not in ((w, h), (None, None)):
            entry["note"] = f"image is {w}x{h}, annotations say {im['width']}x{im['height']}"
    return entries, infer_ms


def collect_run(name: str, images: list[dict], done: dict[int, dict], *, resumed: int = 0,
                seconds: float | None = None, infer_ms: list[float] = ()) -> DetectionRun:
    """The run over ``images`` from their entries by image id (every image must have one)."""
    run = DetectionRun(name, resumed=resumed)
    new = len(images) - resumed
    if new and seconds:
        run.images_per_s = new / seconds
    if len(infer_ms):
        run.inference_ms = float(np.mean(infer_ms))
    for im in images:
        entry = done[im["id"]]
        if entry.get("error"):
            run.failures.append((im["file_name"], entry["error"]))
        else:
            run.by_image[im["id"]] = entry["results"]
    return run


def detect_images(detector, images: list[dict], load: Callable[[dict], np.ndarray],
                  categories: np.ndarray, *, clip: bool = False, done: dict[int, dict] | None = None,
                  add: Callable[[dict], None] = lambda entry: None, name: str = "detect",
                  progress: Progress = SILENT, batch: int = 1) -> DetectionRun:
    """Run ``detector`` on every image record of ``images`` not in ``done`` (entries by image id
    from an earlier pass); each new entry (see :func:`detect_entries`) goes to ``add``.
    ``batch``: images per backend call (a graph that takes batches). Returns the run over all
    of ``images``. A cluster engine provides a function of this signature."""
    done = dict(done or {})
    resumed = sum(1 for im in images if im["id"] in done)
    todo = [im for im in images if im["id"] not in done]
    t0, infer_ms = time.perf_counter(), []
    progress.start(name, len(todo), unit="img")
    try:
        for k in range(0, len(todo), max(1, batch)):
            entries, ms = detect_entries(detector, todo[k:k + batch], load, categories,
                                         clip=clip, batch=batch)
            infer_ms += ms
            for entry in entries:
                add(entry)
                done[entry["image_id"]] = entry
                progress.advance()
    finally:
        progress.done()
    return collect_run(name, images, done, resumed=resumed,
                       seconds=time.perf_counter() - t0, infer_ms=infer_ms)


class FolderLoader:
    """``load`` for :func:`detect_images`: an image record's ``file_name`` in ``images_dir``,
    decoded without EXIF rotation (COCO annotations are in the stored pixel frame).
    :meth:`source` names the file, for engines that read it elsewhere."""

    def __init__(self, images_dir: str | os.PathLike) -> None:
        self.root = Path(images_dir)

    def source(self, im: dict) -> str:
        return str(self.root / im["file_name"])

    def __call__(self, im: dict) -> np.ndarray:
        from ..io.images import load_image

        return load_image(self.source(im), exif=False)


def run_detection(detector, gt: CocoAnnotations, images_dir: str | os.PathLike, out_dir: Path, *,
                  name: str, clip: bool = False, mlperf: bool = False, limit: int | None = None,
                  progress: Progress = SILENT, batch: int = 1,
                  runner: Callable[..., DetectionRun] = detect_images) -> DetectionRun:
    """Detect on every selected image of a folder, appending one JSON line per image to
    ``out_dir/detections.jsonl`` as it goes, so an interrupted run resumes where it stopped
    (with the same model file and settings only: see :class:`RunStore`). ``runner``: the
    engine (:func:`detect_images`, or a cluster's function of its signature)."""
    store = RunStore(out_dir)
    manifest = run_manifest(detector, name=name, annotations=str(Path(gt.path).resolve()),
                            images=str(Path(images_dir).resolve()), clip=clip, mlperf=mlperf)
    store.open(manifest)
    done = store.done()
    categories = category_map(detector.spec, gt)
    with store.appender(done) as add:
        run = runner(detector, select_images(gt, mlperf=mlperf, limit=limit),
                     FolderLoader(images_dir), categories, clip=clip, done=done, add=add,
                     name=name, progress=progress, batch=batch)
    run.out_dir = Path(out_dir)
    return run
