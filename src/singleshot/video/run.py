"""One source from open to summary: the pipeline's results written into a run folder, progress
reported, and every frame accounted for - the piece ``singleshot video`` runs per source."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.limits import check_all
from ..errors import UsageError
from ..progress import SILENT, Progress
from .outputs import RunFolder
from .pipeline import FrameCounts, run_frames
from .source import VideoError, VideoSource


@dataclass
class VideoOptions:
    """``stride``: detect every K-th frame; ``start``/``end``: seconds; ``live``: latest-frame
    policy; ``batch``: frames per backend call; ``reconnect``: tries for a dropped stream;
    ``detect``: per-call detector options (conf, iou, max_det, classes)."""

    stride: int = 1
    start: float | None = None
    end: float | None = None
    live: bool = False
    batch: int = 1
    save_frames: bool = False
    annotate: bool = True
    reconnect: int = 0
    detect: dict = field(default_factory=dict)

    def check(self, detector=None) -> None:
        check_all(stride=self.stride, batch=self.batch, start=self.start, end=self.end,
                  reconnect=self.reconnect)  # the ranges of singleshot.core.limits
        if self.end is not None and self.end <= (self.start or 0):
            raise UsageError("{opt:end} must be after {opt:start}")
        if self.live and self.batch > 1:
            raise UsageError("{opt:live} runs the newest frame alone; leave {opt:batch} at 1")
        if detector is not None:
            detector.check_batch(self.batch)


def process_video(source: str, detector, out: Path, opts: VideoOptions, *,
                  progress: Progress = SILENT, tracking=None) -> dict:
    """Run ``source`` into ``out`` (detections.jsonl, annotated.mp4, frames/, summary.json) and
    return the summary: ``{"source", "out", "fps", "width", "height", "frames": {"decoded",
    "processed", "skipped_stride", "dropped_live"}, "detections", "seconds", "error"}``.
    VideoError when it cannot be opened; damage midway is the summary's ``error``.
    ``tracking(fps)`` -> a tracking stage for this source (see
    :class:`~singleshot.video.track.TrackStage`), or None for none."""
    src = VideoSource(source, reconnect=opts.reconnect, low_delay=opts.live)
    counts = FrameCounts()
    track = tracking(src.fps) if tracking is not None else None
    folder = RunFolder(out, fps_rate=src.rate or src.fps, width=src.width, height=src.height,
                       annotate=opts.annotate, save_frames=opts.save_frames,
                       tracking=track is not None)
    detections, t0 = 0, time.perf_counter()
    summary = {"source": str(source), "out": str(out), "fps": src.fps, "width": src.width,
               "height": src.height}
    total = src.frames_expected
    if total and not src.stream:
        length = total / src.fps
        if opts.start is not None and opts.start >= length:
            src.close()
            raise VideoError(f"{source}: {{opt:start}} {opts.start:g} s is past the end of the "
                             f"source ({length:.2f} s)")
        first = opts.start or 0.0  # the bar counts the frames of the range asked for
        total = max(1, round((min(opts.end or length, length) - first) * src.fps))
    progress.start(Path(str(source)).name, total, unit="frame")
    try:
        for result in run_frames(src, detector, start=opts.start, end=opts.end,
                                 stride=opts.stride, live=opts.live, batch=opts.batch,
                                 counts=counts, track=track, options=opts.detect):
            folder.write(result)
            if result.processed:
                detections += len(result.detections)
            progress.advance()
    except KeyboardInterrupt:  # finished frames are kept; the summary says the run was cut
        summary["interrupted"] = True
        raise
    finally:
        progress.done()
        seconds = time.perf_counter() - t0
        if track is not None:
            summary["tracks"] = track.tracker.next_id - 1
        summary.update(frames=counts.to_dict(), detections=detections, seconds=round(seconds, 3),
                       frames_per_s=round(counts.decoded / seconds, 3) if seconds else None,
                       error="interrupted" if summary.get("interrupted") else src.problem)
        folder.close(summary)
        src.close()
    return summary
