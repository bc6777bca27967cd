"""Overlapped detection for folders and streams: decoding and preprocessing of the next images
run while the backend infers on the current ones, and up to ``streams`` inferences run at once
(OpenVINO's throughput streams, or onnxruntime sessions shared by threads), so both cores stay
busy. Results come back in input order.

Threads, not processes: decoding (PIL, OpenCV), resizing and the runtimes' kernels release the
GIL, and a process pool would copy every 17 MB input tensor.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from ..core.detections import Detections

T = TypeVar("T")


def detect_pipelined(detector, items: Iterable[T], load: Callable[[T], np.ndarray], *,
                     streams: int | None = None, clip: bool = True, prefetch: int = 2,
                     path_of: Callable[[T], str | None] = lambda item: None,
                     options: dict | None = None,
                     ) -> Iterator[tuple[T, Detections | Exception, np.ndarray | None]]:
    """Yield ``(item, Detections, image)`` per item, in order; ``(item, exception, None)`` where
    ``load`` (item -> RGB uint8 [H, W, 3]), preprocessing or inference failed. Each Detections
    carries per-stage timings (decode, preprocess, inference, postprocess; ms). ``options``: conf,
    iou, max_det, classes of these calls (see :meth:`Detector.options`)."""
    streams = max(1, streams or getattr(detector.backend, "streams", 1))
    window = streams + prefetch

    def prepare(item: T):
        t0 = time.perf_counter()
        rgb = load(item)
        t1 = time.perf_counter()
        x = detector.preprocess(rgb)
        return rgb, x, {"decode": (t1 - t0) * 1e3, "preprocess": (time.perf_counter() - t1) * 1e3}

    def infer(item: T, prepared: Future) -> tuple[Detections, np.ndarray]:
        rgb, x, timings = prepared.result()
        return detector.detect_tensor(x, rgb.shape[:2], clip=clip, path=path_of(item),
                                      timings=timings, **(options or {})), rgb

    pending: deque[tuple[T, Future]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="prep") as prep, \
            ThreadPoolExecutor(streams, thread_name_prefix="infer") as run:

        def done():
            item, fut = pending.popleft()
            try:
                return (item, *fut.result())
            except Exception as err:  # noqa: BLE001 - handed to the caller per item
                return item, err, None

        for item in items:
            pending.append((item, run.submit(infer, item, prep.submit(prepare, item))))
            if len(pending) >= window:
                yield done()
        while pending:
            yield done()
