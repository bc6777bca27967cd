"""What the evaluation conventions change, measured on a generated COCO-format set.

    python bench/eval_conventions.py [--images 400] [--seed 0]

Simulates a detector's normalised outputs (noisy copies of the ground truth, boxes near the
borders that overshoot the image as SSD's unclipped boxes do, false positives, and 10% of images
without annotations that still get detections), converts them exactly as `singleshot eval` does
(Detections.from_normalized -> to_coco), and scores each convention with pycocotools.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from singleshot.core.detections import Detections
from singleshot.core.spec import ModelSpec
from singleshot.eval.annotations import load_annotations
from singleshot.eval.coco import coco_score
from singleshot.eval.runner import select_images


def generate(n: int, seed: int):
    rng = np.random.default_rng(seed)
    spec = ModelSpec(class_names=("a", "b", "c"), category_ids=(1, 2, 3))
    images, anns, outputs = [], [], []
    for i in range(n):
        w, h = int(rng.integers(300, 800)), int(rng.integers(300, 800))
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h})
        boxes, labels, scores = [], [], []
        empty = rng.uniform() < 0.1
        for _ in range(int(rng.integers(1, 6))):
            bw, bh = rng.uniform(0.05, 0.5) * w, rng.uniform(0.05, 0.5) * h
            # a third of the objects touch a border, where unclipped predictions overshoot
            x = 0.0 if rng.uniform() < 0.17 else (w - bw if rng.uniform() < 0.2 else rng.uniform(0, w - bw))
            y = rng.uniform(0, h - bh)
            cat = int(rng.integers(1, 4))
            if not empty:
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat,
                             "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
            j = rng.normal(0, 0.08, 4) * [bw, bh, bw, bh]
            x1, y1, x2, y2 = x + j[0], y + j[1], x + bw + j[2], y + bh + j[3]
            if x == 0.0:
                x1 -= abs(j[0]) + 0.05 * bw  # overshoot past the left border
            boxes.append([x1 / w, y1 / h, x2 / w, y2 / h])
            labels.append(cat)
            scores.append(rng.uniform(0.3, 1.0))
        for _ in range(int(rng.integers(0, 3))):
            fx, fy = rng.uniform(0, 0.8, 2)
            boxes.append([fx, fy, fx + 0.15, fy + 0.15])
            labels.append(int(rng.integers(1, 4)))
            scores.append(rng.uniform(0.05, 0.7))
        outputs.append((np.asarray(boxes, np.float32), np.asarray(labels), np.asarray(scores, np.float32)))
    cats = [{"id": k, "name": n} for k, n in zip(spec.category_ids, spec.class_names)]
    return {"images": images, "annotations": anns, "categories": cats}, outputs, spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    gt_dict, outputs, spec = generate(args.images, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances.json"
        path.write_text(json.dumps(gt_dict))
        gt = load_annotations(path)
        rows = []
        for clip in (False, True):
            for mlperf in (False, True):
                ids = [im["id"] for im in select_images(gt, mlperf=mlperf)]
                results = []
                for im, (b, l, s) in zip(gt.images, outputs):
                    if im["id"] in ids:
                        d = Detections.from_normalized(b, l, s, spec, im["width"], im["height"], clip=clip)
                        results += d.to_coco(im["id"])
                m = coco_score(gt, results, img_ids=ids).metrics
                rows.append((clip, mlperf, len(ids), m["AP"], m["AP50"], m["AP75"]))
    base = rows[0][3]
    print(f"{args.images} generated images, {len(gt_dict['annotations'])} objects, "
          f"{sum(1 for im in gt_dict['images'] if im['id'] not in {a['image_id'] for a in gt_dict['annotations']})} without annotations")
    print("| boxes | images | n | AP | AP50 | AP75 | AP vs reference |")
    print("|---|---|---|---|---|---|---|")
    for clip, mlperf, n, a, a50, a75 in rows:
        print(f"| {'clipped' if clip else 'unclipped (reference)'} | {'MLPerf: annotated only' if mlperf else 'all'} "
              f"| {n} | {a:.4f} | {a50:.4f} | {a75:.4f} | {(a - base) / base * 100:+.2f}% |")


if __name__ == "__main__":
    sys.exit(main())
