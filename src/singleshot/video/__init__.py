"""Video: decode (PyAV) -> batched detect -> [track] -> write, overlapped, every frame
accounted for. :func:`frames` is the Python entry point; ``singleshot video`` runs
:func:`~singleshot.video.run.process_video` per source.

    for result in singleshot.video.frames("clip.mp4", model="demo", conf=0.25):
        result.index, result.pts, result.detections   # 0-based frame index, seconds, Detections
"""

from __future__ import annotations

from collections.abc import Iterator

from .pipeline import FrameCounts, FrameResult


def frames(source: str, model: str = "demo", *, detector=None, conf: float | None = None,
           iou: float | None = None, max_det: int | None = None, classes=None,
           stride: int = 1, start: float | None = None, end: float | None = None,
           live: bool = False, batch: int = 1, reconnect: int = 0, track: bool = False,
           counts: FrameCounts | None = None, **detector_kwargs) -> Iterator[FrameResult]:
    """Yield a :class:`FrameResult` per processed frame of ``source`` (a video file, a stream
    URL or a webcam index), in order. ``detector``: a ready Detector (else one is built from
    ``model`` and ``detector_kwargs``); ``conf``... : per-call options (None: the model's own,
    as :class:`~singleshot.runtime.detector.Detector`). ``track``: ByteTrack ids in
    ``result.track_ids`` (it sees the detector's own threshold; ``conf`` filters after it).
    ``counts`` receives the accounting."""
    from ..runtime.detector import Detector
    from .pipeline import run_frames
    from .run import VideoOptions
    from .source import VideoSource

    opts = VideoOptions(stride=stride, start=start, end=end, live=live, batch=batch,
                        reconnect=reconnect)
    det = detector or Detector(model, **detector_kwargs)
    opts.check(det)
    options = {k: v for k, v in dict(conf=None if track else conf, iou=iou, max_det=max_det,
                                     classes=classes).items() if v is not None}
    src = VideoSource(source, reconnect=reconnect, low_delay=live)
    stage = None
    if track:
        from .track import tracking

        stage = tracking(det, conf)(src.fps)
    try:
        for result in run_frames(src, det, start=start, end=end, stride=stride, live=live,
                                 batch=batch, counts=counts, options=options, track=stage):
            if result.processed:
                yield result
    finally:
        src.close()


__all__ = ["FrameCounts", "FrameResult", "frames"]
