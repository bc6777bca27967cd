"""Why the AP is what it is: the error types of TIDE (Bolya et al., "TIDE: A General Toolbox for
Identifying Object Detection Errors", ECCV 2020) and each type's dAP, computed as its reference
implementation, ``tidecv`` 1.0.1, computes them - so the numbers people compare with papers
match (tests/interop/test_tide.py runs tidecv itself, in a venv of its own, on the same inputs).

What tidecv does, and so what this does (its choices, kept even where COCO differs, because the
numbers in papers are tidecv's):

- per image, the ground truth's images only; at most 100 detections, highest score first (ties
  in the given order); each matched greedily, in that order, to the ground truth of its class
  with the highest IoU among those not yet matched, when that IoU >= ``T_F`` (0.5);
- an unmatched detection inside a crowd region of its class (intersection over the detection's
  area strictly above T_F) is ignored: not in the AP, but still given an error type;
- every detection not matched gets the first type that fits, in this order: no ground truth in
  the image -> ``bkg``; its best IoU with its own class in [T_B, T_F] (0.1, inclusive both
  ends) -> ``loc``; IoU >= T_F with another class -> ``cls``; IoU >= T_F with a matched ground
  truth of its class -> ``dupl``; best IoU with anything <= T_B -> ``bkg``; else ``both``;
- ``miss``: a ground truth left unmatched that no ``cls``/``loc`` error points at (one pointing
  at a ground truth that was matched does not count);
- AP per class: COCO's 101-point interpolation of the precision envelope; the mean is over
  every class with ground truth *or* detections (a class with detections and no ground truth
  counts as AP 0 - COCO leaves it out, so this AP can sit below pycocotools' AP50);
- a type's dAP: the AP with every error of that type fixed, minus the AP, floored at 0. Fixes:
  ``cls`` and ``loc`` become true positives (``cls`` moved to the ground truth's class) when
  their ground truth was unmatched and they are the highest-scoring error pointing at it, else
  they are removed; ``dupl``, ``bkg`` and ``both`` are removed; ``miss`` leaves the count of
  objects. A class left with no detections and no objects drops out of the mean. ``FP``: every
  true positive ranked above every false positive; ``FN``: every unmatched object removed from
  the counts (neither floored).

The AP and dAPs are fractions (tidecv prints percent).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..core.boxes import box_convert, box_iou

T_F, T_B = 0.5, 0.1
ERROR_TYPES = ("cls", "loc", "both", "dupl", "bkg", "miss")
ERROR_NAMES = {"cls": "classification", "loc": "localisation", "both": "both (cls + loc)",
               "dupl": "duplicate", "bkg": "background", "miss": "missed"}


def ap_101(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """COCO's interpolated AP of one class: detections' scores and true-positive flags, and the
    number of ground truths (> 0). Ties keep the given order (pycocotools' mergesort)."""
    if n_gt <= 0:
        return -1.0
    if not len(scores):
        return 0.0
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    return ap_sorted(np.asarray(tp, np.float64)[order], n_gt)


def ap_sorted(hits: np.ndarray, n_gt: int) -> float:
    """:func:`ap_101` of true-positive flags already in descending score order."""
    if n_gt <= 0:
        return -1.0
    if not len(hits):
        return 0.0
    ctp = np.cumsum(hits)
    cfp = np.cumsum(1 - hits)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    # the precision envelope, then sampled at recall 0, 0.01, ..., 1
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


@dataclass
class Detection:
    """One detection after matching: ``tp``; for a false positive its ``error`` type and the
    ground truth (index into the image's list) it points at, if any."""

    image_id: int
    category_id: int
    score: float
    box: np.ndarray  # xyxy
    index: int  # position in the results given
    tp: bool = False
    ignored: bool = False
    error: str | None = None
    target: int | None = None  # ground-truth index in its image (cls, loc, both, dupl)


@dataclass
class ImageTruth:
    boxes: np.ndarray  # [G, 4] xyxy, non-crowd
    cats: np.ndarray  # [G]
    crowd_boxes: np.ndarray  # [K, 4] xyxy
    crowd_cats: np.ndarray
    matched: np.ndarray = None  # [G] bool

    def __post_init__(self):
        if self.matched is None:
            self.matched = np.zeros(len(self.cats), bool)


@dataclass
class TideResult:
    """The analysis of one results set: ``ap`` (AP at IoU 0.5), ``dap`` per error type and
    ``FP``/``FN``, ``counts`` per error type, per-class ``ap_by_class``, the matched
    ``detections``, per-image truths and ``n_gt`` (non-crowd objects per category id; for the
    other diagnostics)."""

    ap: float
    dap: dict[str, float]
    counts: dict[str, int]
    ap_by_class: dict[int, float]
    detections: list[Detection] = field(repr=False)
    truths: dict[int, ImageTruth] = field(repr=False)
    missed: set = field(repr=False, default_factory=set)  # {(image_id, gt index)}
    n_gt: dict = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {"AP50": self.ap, "dAP": self.dap, "counts": self.counts,
                "AP50_by_class": {str(k): v for k, v in self.ap_by_class.items()}}


def _truths(gt) -> dict[int, ImageTruth]:
    by_image = defaultdict(lambda: ([], [], [], []))
    for a in gt.data["annotations"]:
        box = box_convert(np.asarray(a["bbox"], np.float64)[None], "xywh", "xyxy")[0]
        lists = by_image[a["image_id"]]
        if a.get("iscrowd"):
            lists[2].append(box)
            lists[3].append(a["category_id"])
        else:
            lists[0].append(box)
            lists[1].append(a["category_id"])
    out = {}
    for im in gt.images:
        b, c, cb, cc = by_image[im["id"]]
        out[im["id"]] = ImageTruth(np.asarray(b, np.float64).reshape(-1, 4),
                                   np.asarray(c, np.int64), np.asarray(cb, np.float64).reshape(-1, 4),
                                   np.asarray(cc, np.int64))
    return out


def _ioa(dets: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Intersection over the detection's area [D, K] (COCO's rule for crowd regions)."""
    if not len(dets) or not len(regions):
        return np.zeros((len(dets), len(regions)))
    x1 = np.maximum(dets[:, None, 0], regions[None, :, 0])
    y1 = np.maximum(dets[:, None, 1], regions[None, :, 1])
    x2 = np.minimum(dets[:, None, 2], regions[None, :, 2])
    y2 = np.minimum(dets[:, None, 3], regions[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1])
    return inter / np.maximum(area[:, None], 1e-12)


MAX_DETS = 100  # per image, as tidecv's COCO loader sets it


def match(gt, results: list[dict], img_ids=None) -> tuple[list[Detection], dict[int, ImageTruth]]:
    """Match and type every detection (see the module); ``img_ids``: only these images.
    Detections past the 100 best of their image are marked ignored (no type)."""
    truths = _truths(gt)
    if img_ids is not None:
        keep = set(int(i) for i in img_ids)
        truths = {k: v for k, v in truths.items() if k in keep}
    dets = [Detection(int(r["image_id"]), int(r["category_id"]), float(r["score"]),
                      box_convert(np.asarray(r["bbox"], np.float64)[None], "xywh", "xyxy")[0], k)
            for k, r in enumerate(results) if int(r["image_id"]) in truths]
    by_image = defaultdict(list)
    for d in dets:
        by_image[d.image_id].append(d)
    for image_id, items in by_image.items():
        items.sort(key=lambda d: -d.score)  # stable: ties keep the given order
        for d in items[MAX_DETS:]:
            d.ignored = True
        del items[MAX_DETS:]
        _type_image(truths[image_id], items)
    return dets, truths


def _type_image(t: ImageTruth, items: list[Detection]) -> None:
    """Match ``items`` (score order) to ``t`` and give each unmatched one its error type."""
    boxes = np.asarray([d.box for d in items]).reshape(-1, 4)
    cats = np.asarray([d.category_id for d in items], np.int64)
    iou = box_iou(boxes, t.boxes) if len(t.boxes) else np.zeros((len(items), 0))
    same = cats[:, None] == t.cats[None, :]
    cls_iou = iou * same
    free = cls_iou.copy()  # a ground truth once matched leaves every later row
    for k, d in enumerate(items):
        if free.shape[1]:
            j = int(np.argmax(free[k]))
            if free[k, j] >= T_F:
                d.tp, t.matched[j] = True, True
                free[:, j] = 0
    ioa = _ioa(boxes, t.crowd_boxes)
    for r in range(len(t.crowd_cats)):
        for k, d in enumerate(items):
            if not d.tp and ioa[k, r] > T_F and t.crowd_cats[r] == d.category_id:
                d.ignored = True
    if not len(t.cats):
        for d in items:
            if not d.tp:
                d.error = "bkg"
        return
    other_iou = iou * ~same
    used_iou = cls_iou * t.matched[None, :]
    for k, d in enumerate(items):
        if d.tp:
            continue
        j = int(np.argmax(cls_iou[k]))
        if T_B <= cls_iou[k, j] <= T_F:
            d.error, d.target = "loc", j
            continue
        j = int(np.argmax(other_iou[k]))
        if other_iou[k, j] >= T_F:
            d.error, d.target = "cls", j
            continue
        j = int(np.argmax(used_iou[k]))
        if used_iou[k, j] >= T_F:
            d.error, d.target = "dupl", j
            continue
        d.error = "bkg" if iou[k].max() <= T_B else "both"


def ap_of_points(points: list[tuple[float, bool]], n_gt: int) -> float:
    """One class's AP as tidecv integrates it: :func:`ap_101` of ``points`` (score, true
    positive) in the order they were added (a stable sort, as tidecv's), 0 without ground
    truth."""
    if n_gt <= 0:
        return 0.0
    return ap_101([p[0] for p in points], [p[1] for p in points], n_gt)


def _mean_ap(points: dict, n_gt: dict) -> tuple[float, dict]:
    """tidecv's mean: over the classes with points or ground truth."""
    per_class = {c: ap_of_points(points.get(c, []), n_gt.get(c, 0))
                 for c in sorted(set(points) | set(n_gt))
                 if points.get(c) or n_gt.get(c, 0) > 0}
    return (float(np.mean(list(per_class.values()))) if per_class else 0.0), per_class


def analyse(gt, results: list[dict], img_ids=None) -> TideResult:
    """The TIDE analysis of COCO ``results`` against ``gt`` (:class:`~.annotations.CocoAnnotations`)."""
    dets, truths = match(gt, results, img_ids)
    by_image = defaultdict(list)
    for d in dets:
        if not (d.ignored and d.error is None):  # the 100 best of each image
            by_image[d.image_id].append(d)
    n_gt: dict[int, int] = defaultdict(int)
    for t in truths.values():
        for c in t.cats:
            n_gt[int(c)] += 1
    # tidecv's order: per image (the annotations' order), its detections' errors by score,
    # then its missed objects; the AP's points in the same order
    errors: list[tuple[str, object]] = []
    points: dict[int, list] = defaultdict(list)  # class -> [(score, tp, detection index)]
    best: dict[tuple[int, int], Detection] = {}  # an unmatched object -> the error that fixes it
    missed, unmatched = set(), defaultdict(int)
    for image_id, t in truths.items():
        items = sorted(by_image.get(image_id, []), key=lambda d: -d.score)
        for d in items:
            if not d.ignored:
                points[d.category_id].append((d.score, d.tp, d.index))
            if d.error is None:
                continue
            errors.append((d.error, d))
            if d.error in ("cls", "loc") and not t.matched[d.target]:
                key = (image_id, d.target)
                if key not in best or best[key].score < d.score:
                    best[key] = d
        for j in np.where(~t.matched)[0]:
            unmatched[int(t.cats[j])] += 1
            if (image_id, int(j)) not in best:
                missed.add((image_id, int(j)))
                errors.append(("miss", (image_id, int(j))))
    base_ap, by_class = _mean_ap({c: [p[:2] for p in v] for c, v in points.items()}, n_gt)
    counts = {e: sum(kind == e for kind, _ in errors) for e in ERROR_TYPES}
    dap = {}
    for kind in ERROR_TYPES:
        dap[kind] = max(_mean_ap(*_fixed(errors, points, n_gt, truths, best, kind))[0]
                        - base_ap, 0.0)
    ranked = _fixed(errors, points, n_gt, truths, best, None,
                    transform=lambda score, tp: (1.0, True) if tp else (0.0, False))
    dap["FP"] = _mean_ap(*ranked)[0] - base_ap
    fewer = {c: n - unmatched.get(c, 0) for c, n in n_gt.items()}
    dap["FN"] = _mean_ap(*_fixed(errors, points, fewer, truths, best, None))[0] - base_ap
    return TideResult(base_ap, dap, counts, by_class, dets, truths, missed, dict(n_gt))


def _fixed(errors, points, n_gt, truths, best, kind, transform=None):
    """The points and object counts with every error of ``kind`` fixed (None: none), rebuilt
    as tidecv rebuilds them: each error's point (fixed, or as it was), then every true
    positive, class by class; ``transform(score, tp)`` applied to every point kept as it was."""
    keep = transform or (lambda score, tp: (score, tp))
    counts = dict(n_gt)
    out: dict[int, list] = defaultdict(list)
    for err, what in errors:
        if err == "miss":
            if kind == "miss":
                c = int(truths[what[0]].cats[what[1]])
                counts[c] = counts.get(c, 0) - 1
            continue
        d = what
        if err != kind:
            if not d.ignored:
                out[d.category_id].append(keep(d.score, False))
        elif err in ("cls", "loc") and best.get((d.image_id, d.target)) is d:
            c = int(truths[d.image_id].cats[d.target]) if err == "cls" else d.category_id
            out[c].append((d.score, True))
    for c, v in points.items():
        out[c].extend(keep(score, True) for score, tp, _ in v if tp)
    return dict(out), counts
