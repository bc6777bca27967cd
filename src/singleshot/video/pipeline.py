"""Frames through the detector in stages that overlap: decode (a thread; FFmpeg decodes with its
own threads) -> detect, ``batch`` frames per call (a thread) -> [track] -> the consumer (writing),
with bounded queues between them, so decoding the next frames and writing the last ones run
while the backend infers, and memory stays bounded however long the video.

File mode accounts for every frame: each decoded frame in range is processed or skipped by
``stride`` (skipped frames still reach the consumer, in order, for the annotated video).
Live mode keeps one slot between decode and detect: the newest decoded frame replaces an
unprocessed older one (counted as dropped), so the detector always works on the latest frame
and the delay stays one inference long however slow the model.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..core.detections import Detections
from .source import Frame, VideoSource


@dataclass
class FrameResult:
    """One frame through the pipeline. ``processed``: detected (else skipped by ``stride``, and
    ``detections`` are the last processed frame's, for drawing). ``track_ids``: per detection,
    a track id or None (set by a tracking stage)."""

    index: int
    pts: float
    rgb: np.ndarray
    detections: Detections | None
    processed: bool = True
    track_ids: list | None = None
    trails: dict | None = None  # track id -> recent centres, as the tracker had them

    def to_dict(self) -> dict:
        """The ``detections.jsonl`` line: ``{"frame", "pts", "detections": [{"box", "score",
        "category_id", "category"[, "track_id"]}]}`` (boxes [x1, y1, x2, y2] pixels)."""
        dets = self.detections.to_dicts() if self.detections is not None else []
        if self.track_ids is not None:
            for d, t in zip(dets, self.track_ids):
                d["track_id"] = t
        return {"frame": self.index, "pts": round(self.pts, 6), "detections": dets}


@dataclass
class FrameCounts:
    """Every frame accounted for: decoded = processed + skipped_stride + dropped_live."""

    decoded: int = 0
    processed: int = 0
    skipped_stride: int = 0
    dropped_live: int = 0

    def to_dict(self) -> dict:
        return {"decoded": self.decoded, "processed": self.processed,
                "skipped_stride": self.skipped_stride, "dropped_live": self.dropped_live}


_END = object()


class LatestSlot:
    """One frame between decode and detect: ``put`` replaces what is there (returns True when
    that drops an unprocessed frame); ``get`` waits for a frame, or returns _END once closed."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.item = None
        self.closed = False

    def put(self, item) -> bool:
        with self.cond:
            dropped = self.item is not None
            self.item = item
            self.cond.notify()
            return dropped

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def get(self, timeout: float | None = None):
        with self.cond:
            self.cond.wait_for(lambda: self.item is not None or self.closed, timeout)
            item, self.item = self.item, None
            return item if item is not None else (_END if self.closed else None)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def run_frames(source: VideoSource, detector, *, start: float | None = None,
               end: float | None = None, stride: int = 1, live: bool = False, batch: int = 1,
               counts: FrameCounts | None = None,
               track: Callable[[FrameResult], None] | None = None,
               options: dict | None = None, queue_frames: int | None = None,
               ) -> Iterator[FrameResult]:
    """Yield a :class:`FrameResult` per frame that reaches the consumer, in source order:
    processed frames, and (file mode) frames skipped by ``stride``. ``counts`` is updated as
    frames go. ``track``: called on each processed result in order (may set ``track_ids``).
    ``options``: the detector's per-call options (conf, iou, max_det, classes)."""
    counts = counts if counts is not None else FrameCounts()
    options = options or {}
    stop = threading.Event()
    size = queue_frames or max(4, 2 * batch + 2)
    frames_q: queue.Queue | LatestSlot = LatestSlot() if live else queue.Queue(size)
    out_q: queue.Queue = queue.Queue(size)
    failure: list[BaseException] = []

    def decode() -> None:
        try:
            for k, frame in enumerate(source.frames(start, end)):
                if stop.is_set():
                    return
                counts.decoded += 1
                keep = k % stride == 0
                if live:
                    if not keep:
                        counts.skipped_stride += 1
                    elif frames_q.put((frame, True)):
                        counts.dropped_live += 1
                else:
                    if not keep:
                        counts.skipped_stride += 1
                    if not _put(frames_q, (frame, keep), stop):
                        return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            failure.append(err)
        finally:
            if live:
                frames_q.close()
            else:
                _put(frames_q, _END, stop)

    def detect_run(frames: list[Frame]) -> list[Detections]:
        rgbs = [f.rgb for f in frames]
        if batch > 1:
            return detector.detect_batch(rgbs, **options)
        return [detector.detect_array(rgb, **options) for rgb in rgbs]

    def detect() -> None:
        last: FrameResult | None = None
        held: list[tuple[Frame, bool]] = []

        def flush() -> bool:
            nonlocal last
            todo = [f for f, keep in held if keep]
            dets = iter(detect_run(todo)) if todo else iter(())
            for frame, keep in held:
                if keep:
                    result = FrameResult(frame.index, frame.pts, frame.rgb, next(dets))
                    counts.processed += 1
                    if track is not None:
                        track(result)
                    last = result
                else:  # drawn with the last processed frame's detections and ids
                    result = FrameResult(frame.index, frame.pts, frame.rgb,
                                         last.detections if last else None, processed=False,
                                         track_ids=last.track_ids if last else None,
                                         trails=last.trails if last else None)
                if not _put(out_q, result, stop):
                    return False
            held.clear()
            return True

        try:
            while not stop.is_set():
                item = frames_q.get(timeout=0.1) if live else frames_q.get()
                if item is None:
                    continue
                if item is _END:
                    flush()
                    return
                held.append(item)
                if live or sum(keep for _, keep in held) >= batch:
                    if not flush():
                        return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            failure.append(err)
        finally:
            _put(out_q, _END, stop)

    threads = [threading.Thread(target=decode, name="video-decode", daemon=True),
               threading.Thread(target=detect, name="video-detect", daemon=True)]
    for t in threads:
        t.start()
    try:
        while True:
            item = out_q.get()
            if item is _END:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
