"""Dynamic batching: requests that arrive within ``max_delay_ms`` of each other run as one batch
of up to ``max_batch`` images, on one of ``instances`` detector copies (each its own session,
the cores shared out between them), from one bounded queue.

Requests share a batch only when their options (conf, iou, max_det, classes, agnostic) agree: those are
inputs of the graph, but one value per call. A graph that takes one image per call still
benefits: its batch is run image by image on the same worker without waiting for the event loop.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


class QueueFull(Exception):
    """More images are waiting than ``max_queue``: the caller answers 503."""


class Closed(Exception):
    """The batcher was closed (its model version unloaded): nothing more is queued."""


@dataclass
class _Job:
    images: list[np.ndarray]
    options: dict
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple:
        o = self.options
        classes = tuple(o.get("classes") or ()) or None
        return (o.get("conf"), o.get("iou"), o.get("max_det"), classes, o.get("agnostic"))


class Batcher:
    """``submit(images, options)`` -> a Future of their Detections (in order; the future's
    ``queued_at``/``started_at`` are its ``perf_counter`` times of queueing and of its batch's
    start). ``observe``: a callback ``(queue_s, inference_s, batch_images, stages_ms)`` per
    batch, for metrics and statistics (``stages_ms``: the batch's preprocess, inference and
    postprocess ms, summed over its images)."""

    def __init__(self, detectors: list, *, max_batch: int = 8, max_delay_ms: float = 5.0,
                 max_queue: int = 64, observe=None) -> None:
        self.detectors, self.max_batch = detectors, max(1, max_batch)
        self.max_delay, self.max_queue = max_delay_ms / 1e3, max_queue
        self.observe = observe or (lambda *a: None)
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.waiting = 0  # images queued or being gathered
        self.closed = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, args=(d,), daemon=True,
                                         name=f"detector-{k}") for k, d in enumerate(detectors)]
        for t in self.threads:
            t.start()

    def submit(self, images: list[np.ndarray], options: dict) -> Future:
        with self.lock:  # the put is under the lock too: no job can land after close's sentinels
            if self.closed:
                raise Closed("this model version was unloaded")
            if self.waiting + len(images) > self.max_queue:
                raise QueueFull(f"{self.waiting} images are waiting (the limit is "
                                f"{self.max_queue})")
            self.waiting += len(images)
            job = _Job(images, options)
            job.future.queued_at = job.queued_at
            self.jobs.put(job)
        return job.future

    def close(self) -> None:
        """Refuse new jobs, finish the queued ones, stop the workers."""
        with self.lock:
            self.closed = True
            for _ in self.threads:
                self.jobs.put(None)
        for t in self.threads:
            t.join(timeout=60)

    def _gather(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """``first`` and the jobs with its options that arrive within the delay, up to the batch;
        a job with other options ends the gathering and is handed back."""
        jobs, n = [first], len(first.images)
        deadline = time.perf_counter() + self.max_delay
        while n < self.max_batch:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                job = self.jobs.get(timeout=left)
            except queue.Empty:
                break
            if job is None:  # shutting down: leave the sentinel for this worker's next get
                self.jobs.put(None)
                break
            if job.key != first.key or n + len(job.images) > self.max_batch:
                return jobs, job
            jobs.append(job)
            n += len(job.images)
        return jobs, None

    def _work(self, detector) -> None:
        carry = None
        while True:
            job = carry or self.jobs.get()
            carry = None
            if job is None:
                return
            jobs, carry = self._gather(job)
            images = [im for j in jobs for im in j.images]
            start = time.perf_counter()
            for j in jobs:
                j.future.started_at = start
            try:
                dets, error = detector.detect_many(images, **job.options), None
            except Exception as err:  # noqa: BLE001 - handed to the requests of this batch
                dets, error = None, err
            end = time.perf_counter()
            with self.lock:
                self.waiting -= len(images)
            stages = {k: sum(d.timings.get(k, 0.0) for d in dets or ())
                      for k in ("preprocess", "inference", "postprocess")}
            self.observe(start - min(j.queued_at for j in jobs), end - start, len(images), stages)
            pos = 0
            for j in jobs:
                if error is not None:
                    j.future.set_exception(error)
                else:
                    j.future.set_result(dets[pos:pos + len(j.images)])
                pos += len(j.images)
