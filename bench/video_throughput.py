"""Where the time of `singleshot video` goes, one model at a time, all on the same clip:
decode only, detect only (frames already in memory, same batch and threads), sequential
(decode, detect, write one after another) and pipelined (`singleshot video`'s stages: with
tracking, its default - the detector then runs at the model's own threshold and --conf 0.25
filters after the tracker, as the command does; without tracking; without the annotated video).

    python bench/video_throughput.py MODEL [MODEL...] [--frames 300] [--size 640x480]
        [--batch 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from singleshot.data.synth_video import write_panned
    from singleshot.runtime.cpu import describe
    from singleshot.runtime.detector import Detector
    from singleshot.video.outputs import RunFolder
    from singleshot.video.run import VideoOptions, process_video
    from singleshot.video.source import VideoSource
    from singleshot.video.track import tracking

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    print(describe())
    tmp = Path(tempfile.mkdtemp())
    clip = write_panned(tmp / "clip.mp4", args.frames, size, 25, seed=3)
    rows = []
    for model in args.models:
        det = Detector(model, conf=0.25)
        det.check_batch(args.batch)
        det.detect_array(np.zeros((size[1], size[0], 3), np.uint8))  # warm up

        t0 = time.perf_counter()
        src = VideoSource(str(clip))
        decoded = [f.rgb for f in src.frames()]
        decode_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for k in range(0, len(decoded), args.batch):
            chunk = decoded[k:k + args.batch]
            if args.batch > 1:
                det.detect_batch(chunk)
            else:
                det.detect_array(chunk[0])
        detect_s = time.perf_counter() - t0

        from singleshot.video.pipeline import FrameResult

        t0 = time.perf_counter()
        src = VideoSource(str(clip))
        folder = RunFolder(tmp / f"seq-{len(rows)}", fps_rate=src.rate, width=src.width,
                           height=src.height)
        for f in src.frames():
            folder.write(FrameResult(f.index, f.pts, f.rgb, det.detect_array(f.rgb)))
        folder.close({})
        sequential_s = time.perf_counter() - t0

        summary = process_video(str(clip), det, tmp / f"pipe-{len(rows)}",
                                VideoOptions(batch=args.batch))
        pipelined_s = summary["seconds"]
        bare = process_video(str(clip), det, tmp / f"bare-{len(rows)}",
                             VideoOptions(batch=args.batch, annotate=False))
        own = Detector(model)  # what `singleshot video` builds when it tracks
        tracked = process_video(str(clip), own, tmp / f"track-{len(rows)}",
                                VideoOptions(batch=args.batch), tracking=tracking(own, 0.25))
        n = len(decoded)
        row = {"model": model, "frames": n, "size": args.size, "batch": args.batch,
               "decode_fps": n / decode_s, "detect_fps": n / detect_s,
               "sequential_fps": n / sequential_s, "pipelined_fps": n / pipelined_s,
               "pipelined_no_video_fps": n / bare["seconds"],
               "pipelined_tracking_fps": n / tracked["seconds"]}
        row["pipelined_vs_detect"] = row["pipelined_fps"] / row["detect_fps"]
        rows.append(row)
        print(f"{Path(model).name}: decode {row['decode_fps']:.1f}, detect "
              f"{row['detect_fps']:.2f}, sequential {row['sequential_fps']:.2f}, pipelined "
              f"{row['pipelined_fps']:.2f} (--no-video {row['pipelined_no_video_fps']:.2f}, "
              f"tracking {row['pipelined_tracking_fps']:.2f}) frames/s (pipelined = "
              f"{row['pipelined_vs_detect']:.2f}x detect-only), {n} frames {args.size}, "
              f"batch {args.batch}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": describe(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
