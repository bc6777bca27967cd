"""Scoring ``mlperf_log_accuracy.json`` the way MLPerf's ``accuracy-coco.py --use-inv-map`` does:
each entry's hex ``data`` is float32 ``[qsl_idx, ymin, xmin, ymax, xmax, score, label]`` per
detection; repeated ``qsl_idx`` are kept once; boxes are scaled by the image's width and height
from the annotation file (no clipping) into xywh; label ``l`` is category ``([0] + sorted
category ids)[l]``; pycocotools scores the images seen."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ...errors import UsageError


def read_log(path: str | os.PathLike) -> list[dict]:
    """The entries of an accuracy log (``{"seq_id", "qsl_idx", "data"}``); UsageError when it
    is missing or not such a list."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a LoadGen accuracy log ({err})") from None
    if not isinstance(entries, list):
        raise UsageError(f"{path}: not a LoadGen accuracy log (expected a JSON list)")
    return entries


def decode(entry: dict) -> np.ndarray:
    """One entry's detections as float32 [K, 7] (K = 0 for an image with none)."""
    values = np.frombuffer(bytes.fromhex(entry["data"]), np.float32)
    k = len(values) // 7
    return values[: 7 * k].reshape(k, 7)


def log_results(entries: list[dict], gt) -> tuple[list[dict], list[int]]:
    """COCO results and the image ids seen (each qsl_idx once) of accuracy-log ``entries``
    against ``gt`` (:class:`~singleshot.eval.annotations.CocoAnnotations`)."""
    images = gt.images
    cat_of = [0, *sorted(int(c["id"]) for c in gt.categories)]
    seen: dict[int, None] = {}
    results = []
    for e in entries:
        q = int(e["qsl_idx"])
        if q in seen:
            continue
        if not 0 <= q < len(images):
            raise UsageError(f"accuracy log: qsl_idx {q} is not an image of the annotations "
                             f"({len(images)} images)")
        seen[q] = None
        im = images[q]
        w, h = float(im["width"]), float(im["height"])
        for _, ymin, xmin, ymax, xmax, score, label in decode(e).astype(np.float64):
            results.append({"image_id": im["id"], "category_id": cat_of[int(label)],
                            "bbox": [xmin * w, ymin * h, (xmax - xmin) * w, (ymax - ymin) * h],
                            "score": score})
    return results, [images[q]["id"] for q in seen]


def score_log(path: str | os.PathLike, gt) -> dict:
    """``{"mAP", "images", "detections", "metrics"}`` of an accuracy log."""
    from ...eval.coco import coco_score

    results, ids = log_results(read_log(path), gt)
    score = coco_score(gt, results, img_ids=ids)
    return {"mAP": score.metrics["AP"], "images": len(ids), "detections": len(results),
            "metrics": score.metrics}
