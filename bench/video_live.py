"""`singleshot video --live` against a source faster than the model: an MPEG-TS stream over HTTP
on 127.0.0.1 (singleshot.video.stream_server, paced in real time, each frame's send time
recorded). Latency = the time a frame's result is written (detections.jsonl, tracks.txt and the
annotated video; tracking on, as the command's default) minus the time the source sent that
frame.

    python bench/video_live.py MODEL [--fps 25] [--seconds 60] [--size 640x480] [--json FILE]
        [--decode-only]

``--decode-only``: no detector, latency when the frame comes out of the decoder (what the stream
itself costs: encoder, MPEG-TS, HTTP, FFmpeg's buffers).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from singleshot.data.synth_video import panned
    from singleshot.runtime.cpu import describe
    from singleshot.runtime.detector import Detector
    from singleshot.video.outputs import RunFolder
    from singleshot.video.pipeline import FrameCounts, run_frames
    from singleshot.video.source import VideoSource
    from singleshot.video.stream_server import StreamServer
    from singleshot.video.track import tracking

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--fps", type=float, default=25)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--json", default=None)
    ap.add_argument("--decode-only", action="store_true")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    print(describe())
    server = StreamServer(panned(4, (w, h), 400), args.fps, (w, h), seconds=args.seconds)
    url = server.start()
    if args.decode_only:
        src = VideoSource(url, low_delay=True)
        lat = np.asarray([time.time() - server.sent[f.index] for f in src.frames()]) * 1e3
        server.stop()
        print(f"stream only (decoded, no detector): p50 {np.percentile(lat, 50):.0f} ms, "
              f"p99 {np.percentile(lat, 99):.0f} ms over {len(lat)} frames")
        return
    det = Detector(args.model)  # the model's own threshold: the tracker sees it all
    stage = tracking(det, 0.25)(args.fps)  # as `singleshot video --live` (tracking is default)
    src = VideoSource(url, low_delay=True)
    folder = RunFolder(Path(tempfile.mkdtemp()), fps_rate=src.rate or args.fps, width=w, height=h,
                       tracking=True)
    counts, latency = FrameCounts(), []
    for result in run_frames(src, det, live=True, counts=counts, track=stage):
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
