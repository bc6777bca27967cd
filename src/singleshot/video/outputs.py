"""A video run's folder: ``detections.jsonl`` (a line per processed frame, flushed as it goes),
the annotated video (H.264 through PyAV's FFmpeg, the source's frame rate and size, each frame
at its source time), ``frames/`` (PNG, lossless) with ``save_frames``, and ``summary.json``.
Closed in ``finally``: an interrupted run leaves a playable video and every finished line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..io.files import write_json_atomic
from ..io.videofile import VideoEncoder
from .pipeline import FrameResult


class RunFolder:
    """Writes one source's outputs into ``folder``; ``write(result)`` per frame in order,
    ``close(summary)`` at the end (whatever happened). ``annotate=False`` writes no video;
    ``tracking``: also ``tracks.txt`` (MOTChallenge format)."""

    def __init__(self, folder: Path, *, fps_rate, width: int, height: int,
                 annotate: bool = True, save_frames: bool = False,
                 tracking: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.folder / "detections.jsonl", "w")
        self.tracks = open(self.folder / "tracks.txt", "w") if tracking else None
        self.video = VideoEncoder(self.folder / "annotated.mp4", width, height, fps_rate) \
            if annotate else None
        self.frames_dir = self.folder / "frames" if save_frames else None
        if self.frames_dir is not None:
            self.frames_dir.mkdir(exist_ok=True)

    def write(self, result: FrameResult) -> None:
        if result.processed:
            self.jsonl.write(json.dumps(result.to_dict()) + "\n")
            self.jsonl.flush()
            if self.tracks is not None and result.track_ids is not None:
                self._write_tracks(result)
        if self.frames_dir is not None:
            # compress_level 1: lossless all the same, and ~5x faster to write than the default
            Image.fromarray(result.rgb).save(self.frames_dir / f"frame_{result.index:06d}.png",
                                             compress_level=1)
        if self.video is not None:
            self.video.write(_draw(result), result.index)

    def _write_tracks(self, result: FrameResult) -> None:
        """MOTChallenge lines: frame (index + 1), id, left, top, width, height, score, class
        (the category id, in the column MOT17's ground truth keeps it), -1, -1."""
        d = result.detections
        for box, score, cat, tid in zip(d.xyxy, d.scores, d.category_ids, result.track_ids):
            if tid is not None:
                x1, y1, x2, y2 = (float(v) for v in box)
                self.tracks.write(f"{result.index + 1},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},"
                                  f"{y2 - y1:.2f},{float(score):.5f},{int(cat)},-1,-1\n")
        self.tracks.flush()

    def close(self, summary: dict) -> None:
        try:
            self.jsonl.close()
            if self.tracks is not None:
                self.tracks.close()
            if self.video is not None:
                self.video.close()
        finally:
            write_json_atomic(self.folder / "summary.json", summary)


def _draw(result: FrameResult) -> np.ndarray:
    """The frame with its boxes (and track ids and trails) drawn."""
    if result.detections is None or (not len(result.detections) and not result.trails):
        return result.rgb
    from ..io.draw import annotate

    return np.asarray(annotate(result.rgb, result.detections, track_ids=result.track_ids,
                               trails=result.trails))
