"""Our ByteTrack against a greedy IoU frame-to-frame matcher, on the same detections of the same
synthetic videos, scored by `singleshot eval-video`'s metrics.

    python bench/track_baseline.py SYNTH_DIR [--model demo] [--conf 0.25] [--json FILE]

SYNTH_DIR holds `singleshot data synth-video` sequences. The detector runs once per frame at the
model's own threshold; ByteTrack sees all of it (as `singleshot video` runs it) and both trackers'
outputs keep the detections scoring >= --conf. The baseline: each detection takes the id of the
previous frame's detection of its class it overlaps most (IoU >= 0.3, greedy, best pairs first),
else a new id.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def greedy_ids(prev: list, boxes: np.ndarray, labels: np.ndarray, next_id: list) -> list:
    """prev: [(id, box, label)] of the last frame -> an id per box, greedily by IoU."""
    from singleshot.core.boxes import box_iou

    ids = [None] * len(boxes)
    if prev and len(boxes):
        iou = box_iou(np.array([p[1] for p in prev]), boxes.astype(np.float64))
        same = np.array([p[2] for p in prev])[:, None] == labels[None, :]
        iou = np.where(same, iou, 0.0)
        used = set()
        for flat in np.argsort(-iou, axis=None):
            r, c = np.unravel_index(flat, iou.shape)
            if iou[r, c] < 0.3:
                break
            if r in used or ids[c] is not None:
                continue
            used.add(r)
            ids[c] = prev[r][0]
    for k in range(len(ids)):
        if ids[k] is None:
            ids[k] = next_id[0]
            next_id[0] += 1
    return ids


def main() -> None:
    from singleshot.eval.mot import Boxes, evaluate, read_mot
    from singleshot.runtime.cpu import describe
    from singleshot.runtime.detector import Detector
    from singleshot.video.pipeline import FrameResult
    from singleshot.video.source import VideoSource
    from singleshot.video.track import ByteTracker, TrackStage

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("synth")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(describe())
    det = Detector(args.model)
    seqs = sorted(p.parent.parent for p in Path(args.synth).glob("*/gt/gt.txt"))
    gts = {s.name: read_mot(s / "gt" / "gt.txt", gt=True) for s in seqs}
    out = {"bytetrack": {}, "greedy": {}}
    for s in seqs:
        src = VideoSource(str(s / f"{s.name}.mp4"))
        stage = TrackStage(ByteTracker(low=det.params.score_threshold, fps=src.fps), args.conf)
        prev, next_id = [], [1]
        mine: dict = {"bytetrack": {}, "greedy": {}}
        for frame in src.frames():
            d = det.detect_array(frame.rgb)
            r = FrameResult(frame.index, frame.pts, frame.rgb, d)
            stage(r)
            kept = d[d.scores >= args.conf]
            g_ids = greedy_ids(prev, kept.xyxy, kept.labels, next_id)
            prev = list(zip(g_ids, kept.xyxy.astype(np.float64), kept.labels))
            for name, dets, ids in (("bytetrack", r.detections, r.track_ids),
                                    ("greedy", kept, g_ids)):
                for box, cat, tid in zip(dets.xyxy, dets.category_ids, ids):
                    if tid is None:
                        continue
                    per = mine[name].setdefault(int(cat), {}).setdefault(frame.index + 1,
                                                                         ([], []))
                    per[0].append(tid)
                    per[1].append(box.astype(np.float64))
        for name in mine:
            classes = {}
            for cat, frames in mine[name].items():
                b = Boxes()
                b.frames = {f: (np.array(i), np.array(x)) for f, (i, x) in frames.items()}
                classes[cat] = b
            out[name][s.name] = classes
    rows = {}
    for name, tracks in out.items():
        m = evaluate(gts, tracks)["overall"]
        rows[name] = m
        print(f"{name:>9}: HOTA {m['HOTA']:.3f}  MOTA {m['MOTA']:.3f}  IDF1 {m['IDF1']:.3f}  "
              f"IDSW {m['IDSW']}  FP {m['FP']}  FN {m['FN']}  ids {m['IDs']} (ground truth "
              f"{m['GT_IDs']})")
    if args.json:
        doc = {"cpu": describe(), "sequences": [s.name for s in seqs], **rows}
        Path(args.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
