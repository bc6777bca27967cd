"""Why the AP is what it is: the error types of TIDE (Bolya et al., "TIDE: A General Toolbox for
Identifying Object Detection Errors", ECCV 2020) and each type's dAP, written from the paper's
definitions (its ``tidecv`` package has not been maintained since 2020).

Detections are matched per image and class, highest score first, to the unmatched ground truth
of their class with the highest IoU >= ``T_F`` (0.5), COCO's rule; one that matches a crowd
region (intersection over the detection's area >= 0.5) is ignored, as COCO ignores it. Every
other unmatched detection is a false positive of exactly one type, tested in this order against
the image's (non-crowd) ground truth:

- ``bkg`` background: IoU < ``T_B`` (0.1) with every ground truth;
- ``cls`` classification: IoU >= T_F with a ground truth of another class;
- ``dupl`` duplicate: IoU >= T_F with a ground truth of its class that a higher-scoring
  detection already matched;
- ``loc`` localisation: T_B <= IoU < T_F with a ground truth of its class;
- ``both`` classification and localisation: T_B <= IoU < T_F with one of another class.

``miss``: a ground truth no detection matched and no classification or localisation error
points at. The AP is COCO-style AP at IoU 0.5 (101-point interpolated precision, averaged over
the classes that have ground truth) over all detections given.

A type's dAP is the AP gained by fixing that type alone, with the paper's oracles: a
classification error takes the class of its ground truth, a localisation error its ground
truth's box - each becoming a true positive unless that ground truth is matched already, when it
is removed instead; duplicates, background and both-errors are removed; missed ground truth
leaves the count of objects. ``FP`` removes every false positive, ``FN`` every unmatched ground
truth.
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


def match(gt, results: list[dict], img_ids=None) -> tuple[list[Detection], dict[int, ImageTruth]]:
    """Match and type every detection (see the module); ``img_ids``: only these images."""
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
        t = truths[image_id]
        items.sort(key=lambda d: -d.score)  # stable: ties keep the given order
        boxes = np.asarray([d.box for d in items]).reshape(-1, 4)
        iou = box_iou(boxes, t.boxes) if len(t.boxes) else np.zeros((len(items), 0))
        ioa = _ioa(boxes, t.crowd_boxes)
        for k, d in enumerate(items):  # true positives first, by score (COCO's greedy rule)
            same = np.where((t.cats == d.category_id) & ~t.matched)[0]
            if len(same):
                j = same[np.argmax(iou[k, same])]
                if iou[k, j] >= T_F:
                    d.tp, t.matched[j] = True, True
                    continue
            crowd = np.where(t.crowd_cats == d.category_id)[0]
            if len(crowd) and ioa[k, crowd].max() >= T_F:
                d.ignored = True
        for k, d in enumerate(items):
            if d.tp or d.ignored:
                continue
            row = iou[k]
            same = t.cats == d.category_id
            best_same = int(np.argmax(np.where(same, row, -1))) if same.any() else None
            best_other = int(np.argmax(np.where(~same, row, -1))) if (~same).any() else None
            s = row[best_same] if best_same is not None else 0.0
            o = row[best_other] if best_other is not None else 0.0
            if max(s, o) < T_B:
                d.error = "bkg"
            elif o >= T_F:
                d.error, d.target = "cls", best_other
            elif s >= T_F:
                d.error, d.target = "dupl", best_same
            elif s >= T_B:
                d.error, d.target = "loc", best_same
            else:
                d.error, d.target = "both", best_other
    return dets, truths


def _ap_of(records: dict[int, list[tuple[float, bool]]], n_gt: dict[int, int]) -> tuple[float, dict]:
    per_class = {}
    for c, n in n_gt.items():
        if n > 0:
            rec = records.get(c, [])
            per_class[c] = ap_101(np.asarray([r[0] for r in rec]), np.asarray([r[1] for r in rec]),
                                  n)
    return (float(np.mean(list(per_class.values()))) if per_class else -1.0), per_class


def _base_records(dets: list[Detection], remove=frozenset()):
    records = defaultdict(list)
    for d in sorted(dets, key=lambda d: d.index):  # the given order: pycocotools' tie order
        if not d.ignored and d.index not in remove:
            records[d.category_id].append((d.score, d.tp))
    return records


def analyse(gt, results: list[dict], img_ids=None) -> TideResult:
    """The TIDE analysis of COCO ``results`` against ``gt`` (:class:`~.annotations.CocoAnnotations`)."""
    dets, truths = match(gt, results, img_ids)
    n_gt = defaultdict(int)
    for c in (c["id"] for c in gt.categories):
        n_gt[c] = 0
    for t in truths.values():
        for c in t.cats:
            n_gt[int(c)] += 1
    base_ap, by_class = _ap_of(_base_records(dets), n_gt)
    errors = [d for d in dets if d.error is not None]
    pointed = {(d.image_id, d.target) for d in errors if d.error in ("cls", "loc")}
    unmatched = {(i, j) for i, t in truths.items() for j in np.where(~t.matched)[0]}
    missed = {u for u in unmatched if u not in pointed}
    counts = {e: sum(d.error == e for d in errors) for e in ERROR_TYPES[:-1]}
    counts["miss"] = len(missed)
    dap = {}
    for kind in ERROR_TYPES[:-1]:
        dap[kind] = _fixed_ap(dets, truths, n_gt, kind) - base_ap
    fewer = dict(n_gt)
    for image_id, j in missed:
        fewer[int(truths[image_id].cats[j])] -= 1
    dap["miss"] = _ap_of(_base_records(dets), fewer)[0] - base_ap
    dap["FP"] = _ap_of(_base_records(dets, {d.index for d in errors}), n_gt)[0] - base_ap
    all_found = dict(n_gt)
    for image_id, j in unmatched:
        all_found[int(truths[image_id].cats[j])] -= 1
    dap["FN"] = _ap_of(_base_records(dets), all_found)[0] - base_ap
    return TideResult(base_ap, dap, counts, by_class, dets, truths, missed, dict(n_gt))


def _fixed_ap(dets, truths, n_gt, kind: str) -> float:
    """AP with every error of ``kind`` fixed by its oracle (the module's text)."""
    claimed = {(i, j) for i, t in truths.items() for j in np.where(t.matched)[0]}
    remove, become_tp = set(), {}
    for d in sorted((d for d in dets if d.error == kind), key=lambda d: (-d.score, d.index)):
        if kind in ("cls", "loc") and (d.image_id, d.target) not in claimed:
            claimed.add((d.image_id, d.target))
            become_tp[d.index] = int(truths[d.image_id].cats[d.target])
        else:
            remove.add(d.index)
    records = defaultdict(list)
    for d in sorted(dets, key=lambda d: d.index):
        if d.ignored or d.index in remove:
            continue
        if d.index in become_tp:
            records[become_tp[d.index]].append((d.score, True))
        else:
            records[d.category_id].append((d.score, d.tp))
    return _ap_of(records, n_gt)[0]
