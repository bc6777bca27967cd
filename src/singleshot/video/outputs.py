"""A video run's folder: ``detections.jsonl`` (a line per processed frame, flushed as it goes),
the annotated video (H.264 through PyAV's FFmpeg, the source's frame rate and size, each frame
at its source time), ``frames/`` (PNG, lossless) with ``save_frames``, and ``summary.json``.
Closed in ``finally``: an interrupted run leaves a playable video and every finished line."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..io.files import write_json_atomic
from .pipeline import FrameResult


class VideoEncoder:
    """H.264 (libx264, ``preset`` veryfast: the encoder shares the CPU with the detector) at
    ``rate`` frames/s; ``write(rgb, index)`` puts frame ``index`` at ``index / rate`` s, so
    gaps (live drops) keep their time. yuv420p, or yuv444p where a side is odd (4:2:0 needs
    even sides; no resize, so the size stays the source's)."""

    def __init__(self, path: Path, width: int, height: int, rate, *, crf: int = 23,
                 preset: str = "veryfast") -> None:
        import av

        self.rate = Fraction(rate).limit_denominator(100000) if rate else Fraction(25)
        self.container = av.open(str(path), "w", options={"movflags": "+faststart"}
                                 if str(path).endswith((".mp4", ".mov")) else {})
        self.stream = self.container.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.stream.options = {"preset": preset, "crf": str(crf)}
        self.stream.codec_context.time_base = 1 / self.rate
        self.last_index = -1
        self.frames = 0

    def write(self, rgb: np.ndarray, index: int) -> None:
        import av

        if index <= self.last_index:  # timestamps must grow (a stream that restarted)
            index = self.last_index + 1
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = index, 1 / self.rate
        self.container.mux(self.stream.encode(frame))
        self.last_index, self.frames = index, self.frames + 1

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()


class RunFolder:
    """Writes one source's outputs into ``folder``; ``write(result)`` per frame in order,
    ``close(summary)`` at the end (whatever happened). ``annotate=False`` writes no video;
    ``draw(rgb, result) -> rgb`` draws a frame (boxes; a tracking stage adds ids and trails)."""

    def __init__(self, folder: Path, *, fps_rate, width: int, height: int,
                 annotate: bool = True, save_frames: bool = False, draw=None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.folder / "detections.jsonl", "w")
        self.video = VideoEncoder(self.folder / "annotated.mp4", width, height, fps_rate) \
            if annotate else None
        self.frames_dir = self.folder / "frames" if save_frames else None
        if self.frames_dir is not None:
            self.frames_dir.mkdir(exist_ok=True)
        self.draw = draw or _draw_boxes

    def write(self, result: FrameResult) -> None:
        if result.processed:
            self.jsonl.write(json.dumps(result.to_dict()) + "\n")
            self.jsonl.flush()
        if self.frames_dir is not None:
            # compress_level 1: lossless all the same, and ~5x faster to write than the default
            Image.fromarray(result.rgb).save(self.frames_dir / f"frame_{result.index:06d}.png",
                                             compress_level=1)
        if self.video is not None:
            self.video.write(self.draw(result.rgb, result), result.index)

    def close(self, summary: dict) -> None:
        try:
            self.jsonl.close()
            if self.video is not None:
                self.video.close()
        finally:
            write_json_atomic(self.folder / "summary.json", summary)


def _draw_boxes(rgb: np.ndarray, result: FrameResult) -> np.ndarray:
    if result.detections is None or not len(result.detections):
        return rgb
    from ..io.draw import annotate

    return np.asarray(annotate(rgb, result.detections))
