"""COCO box scoring on the official implementation (pycocotools; faster-coco-eval on request), and
an evaluator that takes detections image by image and whose partial states merge."""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass

import numpy as np

from .annotations import AnnotationError, CocoAnnotations

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl",
               "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class CocoScore:
    """The 12 COCO box metrics (0..1, -1 where pycocotools gives -1), per-class AP by name, and
    the accumulated precision array [T, R, K, A, M] for plots."""

    metrics: dict[str, float]
    per_class: dict[str, float]
    precision: np.ndarray | None
    summary_text: str
    backend: str

    def flat(self) -> dict:
        return {**self.metrics, "per_class": self.per_class}


def _empty_results_coco(gt_coco, cls):
    """pycocotools' loadRes crashes on an empty list; an empty detection set scores as such."""
    dt = cls()
    dt.dataset = {"images": list(gt_coco.dataset["images"]),
                  "categories": copy.deepcopy(gt_coco.dataset["categories"]), "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def check_results(results: object, gt: CocoAnnotations, name: str = "results") -> list[dict]:
    """Validate a COCO results list (bbox task) against the annotations; clear errors."""
    if not isinstance(results, list):
        raise AnnotationError(f"{name}: expected a JSON list of results")
    ids = {img["id"] for img in gt.images}
    cats = {c["id"] for c in gt.categories}
    for i, r in enumerate(results):
        if not (isinstance(r, dict) and isinstance(r.get("bbox"), list) and len(r["bbox"]) == 4
                and "score" in r and "image_id" in r and "category_id" in r):
            raise AnnotationError(f"{name}: entry {i} needs image_id, category_id, bbox [x,y,w,h] "
                                  "and score")
        if r["image_id"] not in ids:
            raise AnnotationError(f"{name}: entry {i} has image id {r['image_id']!r}, which the "
                                  "annotations do not have")
        if r["category_id"] not in cats:
            raise AnnotationError(f"{name}: entry {i} has category id {r['category_id']!r}, which "
                                  "the annotations do not have")
    return results


def coco_score(gt: CocoAnnotations, results: list[dict], *, img_ids: list[int] | None = None,
               fast: bool = False) -> CocoScore:
    """Score ``results`` (COCO bbox results) against ``gt`` exactly as pycocotools does.

    img_ids restricts the evaluation (images missing on disk, the MLPerf convention).
    fast: faster-coco-eval instead (unofficial; same numbers to about 1e-4 on COCO).
    """
    results = copy.deepcopy(results)  # loadRes adds fields in place
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if fast:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval

            gt_coco = COCO(copy.deepcopy(gt.data))
        else:
            from pycocotools.cocoeval import COCOeval

            gt_coco = gt.to_pycocotools()
            COCO = type(gt_coco)
        dt_coco = gt_coco.loadRes(results) if results else _empty_results_coco(gt_coco, COCO)
        ev = COCOeval(gt_coco, dt_coco, "bbox")
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats[:12]]
    precision = np.asarray(ev.eval["precision"]) if ev.eval else None
    names = gt.category_names()
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1] if precision is not None else np.empty(0)
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean()) if p.size else -1.0
    return CocoScore(dict(zip(METRIC_KEYS, stats)), per_class, precision, out.getvalue(),
                     "faster-coco-eval (unofficial)" if fast else "pycocotools")


class CocoEvaluator:
    """COCO box evaluation fed image by image: ``reset()``, ``process(image_id, results)`` for
    every evaluated image (its COCO results, possibly none), ``evaluate()`` -> :class:`CocoScore`.

    Partial states merge: shards of one dataset processed apart (other processes, other
    machines: :meth:`state` is JSON-ready) and merged give exactly the single-run numbers,
    because :meth:`evaluate` hands pycocotools the detections in a canonical order - image id,
    then each image's own order - and pycocotools breaks score ties by input order."""

    def __init__(self, gt: CocoAnnotations, *, fast: bool = False) -> None:
        self.gt, self.fast = gt, fast
        self.reset()

    def reset(self) -> None:
        self.images: dict[int, list[dict]] = {}

    def process(self, image_id: int, results: list[dict]) -> None:
        """Record ``image_id`` as evaluated with ``results`` (COCO results of that image, in the
        detector's order). Processing an image again replaces its results."""
        if any(r.get("image_id", image_id) != image_id for r in results):
            raise ValueError(f"results of image {image_id} name another image")
        self.images[int(image_id)] = list(results)

    def state(self) -> dict:
        """The partial state: ``{"images": {image_id: results}}`` (JSON keys become strings)."""
        return {"images": {str(k): v for k, v in self.images.items()}}

    def merge(self, other: "CocoEvaluator | dict") -> None:
        """Add another evaluator's (or :meth:`state`'s) images; an image in both is an error."""
        images = other.images if isinstance(other, CocoEvaluator) else \
            {int(k): v for k, v in other["images"].items()}
        both = self.images.keys() & images.keys()
        if both:
            raise ValueError(f"{len(both)} image(s) in both states, e.g. {min(both)}")
        self.images.update(images)

    def evaluate(self) -> CocoScore:
        ids = sorted(self.images)
        results = [r for i in ids for r in self.images[i]]
        return coco_score(self.gt, results, img_ids=ids, fast=self.fast)
