"""Video in: files, stream URLs and webcams decoded by PyAV (FFmpeg), frame by frame, with the
frame's index in the source and its presentation time.

A frame's ``index`` counts from the first frame of the source (0-based); with ``start`` the
container seeks to the keyframe before it and the index comes from the timestamp (exact for
constant-frame-rate files, which is what cameras and encoders write). Damage is not an
exception here: decoding stops, the frames before it stay, and :attr:`VideoSource.problem` says
what happened, so the caller can report it and keep the finished work.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SingleshotError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ts",
                    ".flv", ".wmv", ".3gp", ".ogv")
STREAM_SCHEMES = ("http://", "https://", "rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://",
                  "srt://")


class VideoError(SingleshotError):
    """A source that cannot be opened as video (one line; exit 1: that input failed)."""

    exit_code = 1


@dataclass
class Frame:
    """A decoded frame: RGB uint8 [H, W, 3], its 0-based index in the source and its time."""

    index: int
    pts: float
    rgb: np.ndarray


def is_stream(source: str) -> bool:
    s = str(source)
    return s.startswith(STREAM_SCHEMES) or s.isdigit() or s.startswith("/dev/video")


def expand_videos(sources: list[str]) -> list[str]:
    """Files, folders (their files with video extensions, sorted), stream URLs, webcam indices."""
    out = []
    for src in sources:
        p = Path(src)
        if not is_stream(src) and p.is_dir():
            found = sorted(str(f) for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            out.extend(found or [src])
        else:
            out.append(src)
    return out


def _open(source: str, timeout_s: float, low_delay: bool = False):
    import av

    options = {}
    if low_delay and is_stream(source):
        # a live stream: the decoder's low-delay mode (fflags=nobuffer decoded nothing of an
        # MPEG-TS stream over HTTP here; a short probe loses the frame rate)
        options.update(flags="low_delay")
    fmt = None
    if source.isdigit() or source.startswith("/dev/video"):
        fmt, source = "v4l2", (f"/dev/video{source}" if source.isdigit() else source)
    elif source.startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = "tcp"
    try:
        return av.open(source, format=fmt, options=options, timeout=timeout_s)
    except FileNotFoundError:
        raise VideoError(f"{source}: no such file") from None
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoError(f"{source}: cannot open as video ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return re.sub(r"^\[Errno -?\d+\] ", "", text).split(": '")[0]


class VideoSource:
    """``for frame in VideoSource(src).frames(start=, end=)``. Properties after opening:
    ``fps``, ``width``, ``height``, ``frames_expected`` (the header's count, None for streams),
    ``time_base``; :attr:`problem` (None, or why decoding stopped early: truncation, damage, a
    stream that dropped for good). ``reconnect``: for streams, how many times to reopen after
    the stream drops, waiting 0.5, 1, 2... s (at most 8 s) between tries. ``low_delay``:
    open a stream without input buffering (the live mode)."""

    def __init__(self, source: str, *, reconnect: int = 0, timeout_s: float = 10.0,
                 low_delay: bool = False) -> None:
        self.source, self.reconnect, self.timeout_s = str(source), reconnect, timeout_s
        self.low_delay = low_delay
        self.stream = is_stream(self.source)
        self.problem: str | None = None
        self.reconnects = 0
        self.container = _open(self.source, timeout_s, low_delay)
        self._describe()

    def _describe(self) -> None:
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{self.source}: has no video stream")
        v = self.container.streams.video[0]
        # frame threads decode on every core but hold a frame per thread: live streams use
        # slice threads only, so a frame comes out as soon as it is in
        v.thread_type = "SLICE" if self.low_delay else "AUTO"
        self.video = v
        rate = v.average_rate or v.guessed_rate or v.base_rate
        self.fps = float(rate) if rate else 25.0
        self.rate = rate
        self.width, self.height = v.codec_context.width, v.codec_context.height
        self.time_base = v.time_base
        self.start_s = float(v.start_time * v.time_base) if v.start_time is not None else 0.0
        self.frames_expected = (v.frames or None) if not self.stream else None
        if not self.frames_expected and not self.stream and v.duration and v.time_base:
            self.frames_expected = round(float(v.duration * v.time_base) * self.fps) or None

    def close(self) -> None:
        self.container.close()

    def frames(self, start: float | None = None, end: float | None = None) -> Iterator[Frame]:
        """Decoded frames with ``start <= pts < end`` (seconds from the source's start)."""
        seek = bool(start) and not self.stream
        if seek:
            self.container.seek(int((start + self.start_s) / self.time_base), stream=self.video,
                                backward=True, any_frame=False)
        count = 0
        while True:
            try:
                for frame in self.container.decode(self.video):
                    pts = (float(frame.pts * self.time_base) - self.start_s
                           if frame.pts is not None else count / self.fps)
                    index = round(pts * self.fps) if seek else count
                    count += 1
                    if start is not None and pts < start - 1e-6:
                        continue
                    if end is not None and pts >= end - 1e-6:
                        return
                    yield Frame(index, pts, frame.to_ndarray(format="rgb24"))
            except Exception as err:  # noqa: BLE001 - FFmpeg's errors: damage, a lost stream
                if self.stream:
                    tried = f"; {self.reconnects} reconnect(s) tried" if self.reconnect else ""
                    self.problem = (f"the stream dropped after {count} frame(s) "
                                    f"({_reason(err)}){tried}")
                else:
                    self.problem = f"decoding stopped after {count} frame(s): {_reason(err)}"
            else:
                if self.frames_expected and count < self.frames_expected and not seek \
                        and end is None:
                    self.problem = (f"decoding stopped after {count} of {self.frames_expected} "
                                    "frames: the file is truncated or damaged")
            if not self.stream or not self._reopen():
                return
            self.problem = None

    def _reopen(self) -> bool:
        """A stream that ended or dropped: try again with backoff (``reconnect`` times)."""
        while self.reconnects < self.reconnect:
            time.sleep(min(8.0, 0.5 * 2 ** self.reconnects))
            self.reconnects += 1
            try:
                self.container.close()
                self.container = _open(self.source, self.timeout_s, self.low_delay)
                self._describe()
                return True
            except VideoError as err:
                self.problem = str(err)
        return False
