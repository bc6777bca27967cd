"""Writing H.264 video files with PyAV (the ``video`` extra): annotated outputs, synthetic
sequences."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


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
