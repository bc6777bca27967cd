"""The numbers behind ``eval --report``, besides TIDE's (:mod:`.tide`): a confusion matrix over the
classes plus background, precision / recall / F1 against the score threshold per class (and the
F1-optimal threshold, what ``--conf`` should be), AP by the number of objects in an image, and
the images whose errors cost the most AP.

All of it at IoU 0.5 on the matching of :func:`.tide.match`; class indices follow the sorted
category ids.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..core.boxes import box_iou
from .coco import coco_score
from .tide import T_F, TideResult, ap_sorted

COUNT_BINS = ((1, 1), (2, 5), (6, 10), (11, 1 << 30))


def confusion_matrix(gt, tide: TideResult, conf: float) -> tuple[np.ndarray, list[str]]:
    """Counts [C+1, C+1]: rows the true class, columns the predicted one, the last row and column
    background. Detections scoring >= ``conf`` are paired with ground truth of any class, highest
    IoU first, each at most once, at IoU >= 0.5 (as ultralytics draws it); an unpaired ground
    truth counts in its row's background column (missed), an unpaired detection in the
    background row (a false detection). Crowd regions and the detections they cover are left
    out."""
    cats = sorted(c["id"] for c in gt.categories)
    index = {c: k for k, c in enumerate(cats)}
    names = gt.category_names()
    n = len(cats)
    m = np.zeros((n + 1, n + 1), np.int64)
    by_image = defaultdict(list)
    for d in tide.detections:
        if d.score >= conf and not d.ignored:
            by_image[d.image_id].append(d)
    for image_id, truth in tide.truths.items():
        dets = by_image.get(image_id, [])
        boxes = np.asarray([d.box for d in dets]).reshape(-1, 4)
        iou = box_iou(truth.boxes, boxes) if len(truth.boxes) and len(dets) else \
            np.zeros((len(truth.boxes), len(dets)))
        pairs = np.argwhere(iou >= T_F)
        order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable") if len(pairs) else []
        used_g, used_d = set(), set()
        for g, k in (pairs[o] for o in order):
            if g in used_g or k in used_d:
                continue
            used_g.add(g)
            used_d.add(k)
            m[index[int(truth.cats[g])], index[dets[k].category_id]] += 1
        for g in range(len(truth.boxes)):
            if g not in used_g:
                m[index[int(truth.cats[g])], n] += 1
        for k, d in enumerate(dets):
            if k not in used_d:
                m[n, index[d.category_id]] += 1
    return m, [names[c] for c in cats] + ["background"]


@dataclass
class Curves:
    """Per class (by category id) and ``"all"`` (every class pooled): the score thresholds
    (descending) and the precision, recall and F1 of the detections at or above each."""

    thresholds: dict
    precision: dict
    recall: dict
    f1: dict

    def best(self) -> dict:
        """Per class: ``{"conf", "f1", "precision", "recall"}`` at the F1-optimal threshold
        (None for a class without detections)."""
        out = {}
        for key, f1 in self.f1.items():
            if not len(f1):
                out[key] = None
                continue
            k = int(np.argmax(f1))
            out[key] = {"conf": float(self.thresholds[key][k]), "f1": float(f1[k]),
                        "precision": float(self.precision[key][k]),
                        "recall": float(self.recall[key][k])}
        return out


def curves(tide: TideResult) -> Curves:
    n_gt = tide.n_gt
    records = defaultdict(list)
    for d in tide.detections:
        if not d.ignored:
            records[d.category_id].append((d.score, d.tp))
    records["all"] = [r for c in list(records) for r in records[c]]
    totals = {**n_gt, "all": sum(n_gt.values())}
    th, pr, rc, f1 = {}, {}, {}, {}
    for key in [*sorted(n_gt), "all"]:
        rec = sorted(records.get(key, []), key=lambda r: -r[0])
        s = np.asarray([r[0] for r in rec])
        hit = np.cumsum([r[1] for r in rec]) if rec else np.zeros(0)
        p = hit / np.arange(1, len(rec) + 1) if rec else np.zeros(0)
        r = hit / max(totals[key], 1)
        th[key], pr[key], rc[key] = s, p, r
        f1[key] = 2 * p * r / np.maximum(p + r, 1e-12)
    return Curves(th, pr, rc, f1)


def ap_by_count(gt, results: list[dict], tide: TideResult) -> list[dict]:
    """COCO AP (pycocotools) over the images with 1, 2-5, 6-10 and 11+ objects."""
    counts = {i: len(t.cats) for i, t in tide.truths.items()}
    out = []
    for lo, hi in COUNT_BINS:
        ids = {i for i, c in counts.items() if lo <= c <= hi}
        label = f"{lo}" if lo == hi else (f"{lo}+" if hi >= 1 << 29 else f"{lo}-{hi}")
        if not ids:
            out.append({"objects": label, "images": 0, "AP": None, "AP50": None})
            continue
        mine = [r for r in results if r["image_id"] in ids]
        m = coco_score(gt, mine, img_ids=sorted(ids)).metrics
        out.append({"objects": label, "images": len(ids), "AP": m["AP"], "AP50": m["AP50"]})
    return out


def worst_images(tide: TideResult, n: int = 8) -> list[dict]:
    """The ``n`` images whose errors cost the most AP50: for an image, the AP gained when its
    false positives are removed and its unmatched ground truth leaves the count (every other
    image as it is); largest gain first. ``{"image_id", "dAP", "false_positives", "missed"}``.

    The exact gain takes a pass over every detection, so it is computed for the images with the
    most error weight (the scores of their false positives plus their missed objects): the
    ``4 n`` heaviest, at least 32 - every image with an error on a small set."""
    fp_weight, n_fp = defaultdict(float), defaultdict(int)
    for d in tide.detections:
        if d.error is not None:
            fp_weight[d.image_id] += d.score
            n_fp[d.image_id] += 1
    missed = {i: t.cats[~t.matched] for i, t in tide.truths.items()}
    weight = {i: fp_weight[i] + len(missed[i]) for i in tide.truths
              if n_fp[i] or len(missed[i])}
    chosen = sorted(weight, key=lambda i: (-weight[i], i))[:max(4 * n, 32)]
    # per class, the detections once in the order the AP visits them (score, then given order)
    columns = {}
    by_class = defaultdict(list)
    for d in sorted(tide.detections, key=lambda d: d.index):
        if not d.ignored:
            by_class[d.category_id].append(d)
    for c, ds in by_class.items():
        order = np.argsort(-np.asarray([d.score for d in ds], np.float64), kind="mergesort")
        columns[c] = (np.asarray([d.tp for d in ds], np.float64)[order],
                      np.asarray([d.image_id for d in ds])[order],
                      np.asarray([d.error is not None for d in ds])[order])
    gains = []
    for image_id in chosen:
        per_class = []
        for c, total in tide.n_gt.items():
            left = total - int((missed[image_id] == c).sum())
            if left <= 0:
                continue
            hits, images, errors = columns.get(c, (np.zeros(0),) * 3)
            keep = ~((images == image_id) & errors) if len(hits) else np.zeros(0, bool)
            per_class.append(ap_sorted(hits[keep], left))
        fixed = float(np.mean(per_class)) if per_class else -1.0
        gains.append({"image_id": image_id, "dAP": fixed - tide.ap,
                      "false_positives": n_fp[image_id], "missed": int(len(missed[image_id]))})
    gains.sort(key=lambda g: (-g["dAP"], g["image_id"]))
    return gains[:n]
