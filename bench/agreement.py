"""How closely the fast paths agree with the reference on the 1200x1200 model's detections.

    python bench/agreement.py runs/bench [--images 3]

Reference: onnxruntime, fp32, the card's preprocessing. Each other path (OpenVINO f32, the fast
preprocessing, int8 QDQ on both runtimes, int8 QOperator) runs on the same generated scenes; a
detection of the path matches a reference detection of the same class with IoU >= 0.5 (greedy,
by score). Printed per path: the share of reference detections (score >= 0.05, up to 200 per
image) matched, the mean |score difference| of the matches, and their mean IoU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def match(ref, other, iou_min: float = 0.5) -> tuple[int, list[float], list[float]]:
    from singleshot.core.boxes import box_iou

    used = np.zeros(len(other.scores), bool)
    n, dscore, ious = 0, [], []
    iou = box_iou(ref.xyxy, other.xyxy) if len(ref.scores) and len(other.scores) else None
    for i in np.argsort(-ref.scores):
        if iou is None:
            break
        cand = np.where((other.labels == ref.labels[i]) & ~used & (iou[i] >= iou_min))[0]
        if len(cand):
            j = cand[np.argmax(iou[i, cand])]
            used[j] = True
            n += 1
            dscore.append(abs(float(ref.scores[i] - other.scores[j])))
            ious.append(float(iou[i, j]))
    return n, dscore, ious


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default="runs/bench")
    ap.add_argument("--images", type=int, default=3)
    args = ap.parse_args()

    from singleshot.io.images import load_image
    from singleshot.runtime.detector import Detector

    f = Path(args.folder)
    images = sorted((f / "calib" / "images").iterdir())[-args.images:]
    fp32, qdq, qop = (str(f / n) for n in ("ssd1200-fp32.onnx", "ssd1200-int8-qdq.onnx",
                                          "ssd1200-int8-qoperator.onnx"))
    paths = {
        "onnxruntime fp32, fast preprocessing": (fp32, dict(preprocess="fast")),
        "openvino f32, card preprocessing": (fp32, dict(backend="openvino", precision="f32")),
        "openvino auto, fast preprocessing": (fp32, dict(backend="openvino", preprocess="fast")),
        "onnxruntime int8 QDQ": (qdq, {}),
        "onnxruntime int8 QOperator": (qop, {}),
        "openvino int8 QDQ, fast preprocessing (bench --backend auto)": (qdq, dict(backend="auto", preprocess="fast")),
    }
    rgbs = [load_image(p, exif=False) for p in images]
    ref = [Detector(fp32, exif=False)(x) for x in rgbs]
    total = sum(len(r.scores) for r in ref)
    print(f"reference: onnxruntime fp32, card preprocessing; {len(images)} scenes, {total} detections")
    print("| path | matched | mean abs score diff | mean IoU |\n|---|---|---|---|")
    for name, (model, kw) in paths.items():
        det = Detector(model, exif=False, **kw)
        n, ds, ious = 0, [], []
        for r, x in zip(ref, rgbs):
            k, d, i = match(r, det(x))
            n, ds, ious = n + k, ds + d, ious + i
        print(f"| {name} | {n / max(total, 1):.1%} | {np.mean(ds):.4f} | {np.mean(ious):.3f} |")


if __name__ == "__main__":
    main()
