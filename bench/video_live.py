"""`singleshot video --live` against a source faster than the model: an MPEG-TS stream over HTTP
on 127.0.0.1 (singleshot.video.stream_server, paced in real time, each frame's send time
recorded). Latency = the time a frame's result is written (detections.jsonl and the annotated
video) minus the time the source sent that frame.

    python bench/video_live.py MODEL [--fps 25] [--seconds 60] [--size 640x480] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from singleshot.data.synth import make_scene
    from singleshot.runtime.cpu import describe
    from singleshot.runtime.detector import Detector
    from singleshot.video.outputs import RunFolder
    from singleshot.video.pipeline import FrameCounts, run_frames
    from singleshot.video.source import VideoSource
    from singleshot.video.stream_server import StreamServer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--fps", type=float, default=25)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    print(describe())
    big, _ = make_scene(4, 0, size=(w + 400, h))
    server = StreamServer(lambda k: np.ascontiguousarray(big[:, k % 400:k % 400 + w]),
                          args.fps, (w, h), seconds=args.seconds)
    url = server.start()
    det = Detector(args.model, conf=0.25)
    src = VideoSource(url, low_delay=True)
    folder = RunFolder(Path(tempfile.mkdtemp()), fps_rate=src.rate or args.fps, width=w, height=h)
    counts, latency = FrameCounts(), []
    for result in run_frames(src, det, live=True, counts=counts):
        folder.write(result)
        latency.append(time.time() - server.sent[result.index])
    folder.close({})
    server.stop()
    lat = np.asarray(latency) * 1e3
    row = {"model": args.model, "source_fps": args.fps, "seconds": args.seconds, "size": args.size,
           **counts.to_dict(), "p50_ms": float(np.percentile(lat, 50)),
           "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
           "last_10s_p99_ms": float(np.percentile(lat[-max(1, len(lat) // 6):], 99))}
    print(f"{Path(args.model).name}: source {args.fps:g} fps {args.size} for {args.seconds:g} s: "
          f"{counts.decoded} decoded, {counts.processed} processed, {counts.dropped_live} dropped; "
          f"latency p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, max "
          f"{row['max_ms']:.0f} ms (last sixth p99 {row['last_10s_p99_ms']:.0f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": describe(), **row}, indent=2))


if __name__ == "__main__":
    main()
