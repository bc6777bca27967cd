"""``detect`` and ``eval`` on a Ray cluster: the same entries a local run makes, streamed back
as they finish and handed to the same journal (:class:`~singleshot.runtime.report.ResultStore`,
:class:`~singleshot.eval.store.RunStore`), so results, resume and the final documents do not
depend on the engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..eval.coco import CocoEvaluator
from ..eval.runner import collect_run, detect_entries
from ..progress import SILENT, Progress
from ..runtime.report import detect_paths
from .engine import RayOptions, _Worker, actor_map, connect


class DetectWorker(_Worker):
    """Actor: a batch of read inputs -> their detect entries (as ``detect --json`` has them)."""

    def __init__(self, *, batch: int, image_kwargs: dict, options: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batch, self.image_kwargs, self.options = batch, image_kwargs, options

    def __call__(self, batch: dict) -> dict:
        started = time.time()
        load = self.decoder(batch, name_of=lambda source: source, **self.image_kwargs)
        sources = [str(s) for s in batch["source"]]
        results = detect_paths(self.detector, sources, load, batch=self.batch, **self.options)
        return self.rows(batch["index"], [r.to_dict() for r in results], started)


class EvalWorker(_Worker):
    """Actor: a batch of image records -> their evaluation entries."""

    def __init__(self, *, batch: int, categories: list[int], clip: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batch, self.clip = batch, clip
        self.categories = np.asarray(categories, dtype=np.int64)

    def __call__(self, batch: dict) -> dict:
        started = time.time()
        records = [{"id": int(i), "file_name": str(f), "width": _opt_int(w), "height": _opt_int(h)}
                   for i, f, w, h in zip(batch["image_id"], batch["file_name"], batch["width"],
                                         batch["height"])]
        decode = self.decoder(batch, name_of=lambda source: source, exif=False)
        by_name = dict(zip((r["file_name"] for r in records), (str(s) for s in batch["source"])))
        entries, _ = detect_entries(self.detector, records,
                                    lambda im: decode(by_name[im["file_name"]]),
                                    self.categories, clip=self.clip, batch=self.batch)
        return self.rows(batch["index"], entries, started)


def _opt_int(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or int(v) < 0 else int(v)


@dataclass
class ClusterEntry:
    """One input's entry from a worker, and the worker's process id."""

    entry: dict
    pid: int

    @property
    def path(self) -> str:
        return self.entry["path"]

    @property
    def error(self) -> str | None:
        return self.entry.get("error")

    @property
    def detection_count(self) -> int:
        return len(self.entry["detections"])

    def to_dict(self) -> dict:
        return self.entry


def _stream(items, worker, worker_kwargs, detector, opts: RayOptions,
            progress: Progress, task: str) -> Iterator[dict]:
    """Rows of :func:`actor_map`, each index once (a retried batch's repeats are dropped), with
    the first/last result times and the model load time in ``opts.timings``."""
    if not Path(detector.name).is_file():
        raise UsageError("--engine ray runs model files (a registry name or a path), "
                         "not a model built in memory")
    seen: set[int] = set()
    t = opts.timings
    t.update(images=0, repeats=0, model_load_s=0.0)
    progress.start(task, len(items), unit="img")
    try:
        for row in actor_map(items, worker, worker_kwargs, detector, opts):
            t["work_start"] = min(t.get("work_start", row["started"]), row["started"])
            t["last_result"] = time.time()
            t["model_load_s"] = max(t["model_load_s"], row["load_s"])
            if row["index"] in seen:
                t["repeats"] += 1
                continue
            seen.add(row["index"])
            t["images"] += 1
            progress.advance()
            yield row
    finally:
        progress.done()
    # from the first actor call's start (models loaded) to the last result on the driver:
    # results arrive a call at a time, so "after the first result" would leave a call out
    n, span = t["images"], t.get("last_result", 0) - t.get("work_start", 0)
    t["images_per_s"] = n / span if n > 0 and span > 0 else None


def detect_on_ray(detector, paths: list[str], opts: RayOptions, *, image_kwargs: dict,
                  progress: Progress = SILENT, **options) -> Iterator[ClusterEntry]:
    """Detect on ``paths`` (local paths or fsspec URLs, each once) over the cluster; yield a
    :class:`ClusterEntry` per input as it finishes. ``image_kwargs``: exif, max_pixels;
    ``options``: classes (the detector's own thresholds travel with it)."""
    opts.check()
    connect(opts)
    items = [{"index": k, "source": str(p)} for k, p in enumerate(paths)]
    kwargs = {"image_kwargs": image_kwargs, "options": options}
    for row in _stream(items, DetectWorker, kwargs, detector, opts, progress, "detect"):
        yield ClusterEntry(row["entry"], row["pid"])


def ray_runner(opts: RayOptions):
    """An evaluation engine (the signature of :func:`~singleshot.eval.runner.detect_images`)
    that detects over the cluster: entries go to the run's journal as they come, and each
    image's results arrive as a partial evaluator state that is merged on the driver
    (``CocoEvaluator.merge`` refuses an image given twice: a repeat can never be scored)."""
    opts.check()

    def run(detector, images, load, categories, *, clip=False, done=None,
            add=lambda entry: None, name="detect", progress: Progress = SILENT, batch=1):
        connect(opts)
        opts.batch = batch
        done = dict(done or {})
        resumed = sum(1 for im in images if im["id"] in done)
        todo = [im for im in images if im["id"] not in done]
        items = [{"index": k, "source": load.source(im), "image_id": im["id"],
                  "file_name": im["file_name"], "width": im.get("width", -1) or -1,
                  "height": im.get("height", -1) or -1} for k, im in enumerate(todo)]
        partial = CocoEvaluator(None)
        kwargs = {"categories": [int(c) for c in categories], "clip": clip}
        t0 = time.perf_counter()
        for row in _stream(items, EvalWorker, kwargs, detector, opts, progress, name):
            entry = row["entry"]
            add(entry)
            done[entry["image_id"]] = entry
            if not entry.get("error"):
                partial.merge({"images": {str(entry["image_id"]): entry["results"]}})
        run = collect_run(name, images, done, resumed=resumed,
                          seconds=time.perf_counter() - t0)
        run.partial = partial
        return run

    return run
