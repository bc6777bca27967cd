"""The query sample library and the system under test that LoadGen drives.

QSL: the images of a COCO annotation file in its ``images`` order (``qsl_idx`` = position);
LoadSamplesToRam decodes and preprocesses the samples LoadGen asks for into the backend's input
tensors, UnloadSamplesFromRam frees them - timed queries read and decode nothing.

SUT: the project's Detector on those tensors. Each sample's response is MLPerf's float32 layout
for SSD-ResNet34, 7 values a detection: ``[qsl_idx, ymin, xmin, ymax, xmax, score, label]``,
coordinates normalised to the original image (unclipped, as the scorer reads them), label the
model's contiguous label (1..C). The same response is sent in both modes (LoadGen logs it only in
accuracy mode and TEST01's sampled performance responses), so both modes do the same work.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...errors import ImageError, UsageError


class SampleLibrary:
    """``paths[k]``: the image of qsl_idx k (a file, or encoded bytes); ``tensors``: those
    loaded, by qsl_idx."""

    def __init__(self, paths: list[Path | bytes], detector) -> None:
        if not paths:
            raise UsageError("the annotations list no images to run")
        # absolute: LoadGen runs in its log folder (it reads audit.config from there)
        self.paths = [p if isinstance(p, (bytes, bytearray)) else Path(p).resolve() for p in paths]
        self.detector = detector
        self.tensors: dict[int, np.ndarray] = {}

    def load(self, indices) -> None:
        from ...io.images import load_image

        for k in indices:
            try:
                rgb = load_image(self.paths[k], exif=False)
            except ImageError as err:  # a run measures every sample or none: stop, one line
                raise UsageError(f"sample {k}: {err}") from None
            self.tensors[k] = self.detector.preprocess(rgb)

    def unload(self, indices) -> None:
        for k in indices:
            self.tensors.pop(k, None)


def encode(qsl_idx: int, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One image's response: float32 [7 * K] of ``[qsl_idx, ymin, xmin, ymax, xmax, score,
    label]`` from boxes [K, 4] xyxy normalised, labels [K] (1..C), scores [K]."""
    k = len(scores)
    out = np.empty((k, 7), np.float32)
    out[:, 0] = qsl_idx
    out[:, 1:5] = np.asarray(boxes, np.float32).reshape(k, 4)[:, [1, 0, 3, 2]]
    out[:, 5] = scores
    out[:, 6] = labels
    return out.reshape(-1)


class DetectorSUT:
    """Answers LoadGen's queries with ``detector`` on the QSL's tensors; ``streams`` queries in
    flight; ``batch`` samples per backend call in Offline (a graph that takes batches).
    ``corrupt``: a test hook that makes every answer wrong (the suite sets it on compliance
    runs only, so TEST01 must fail)."""

    def __init__(self, lg, qsl: SampleLibrary, detector, *, scenario: str, streams: int = 1,
                 batch: int = 1, corrupt: bool = False) -> None:
        self.lg, self.qsl, self.det, self.scenario = lg, qsl, detector, scenario
        self.batch, self.corrupt = max(1, batch), corrupt
        self.pool = ThreadPoolExecutor(max(1, streams))
        self.lock = threading.Lock()
        self.failure: BaseException | None = None
        self.answered = 0
        self.stopped = False

    def _infer(self, idx: list[int]) -> list[np.ndarray]:
        x = np.concatenate([self.qsl.tensors[k] for k in idx])
        per = self.det.infer_batch(x)  # the detector's own thresholds
        out = []
        for k, (boxes, labels, scores) in zip(idx, per):
            if self.corrupt:
                boxes = np.asarray(boxes)[::-1] * 0.5
            out.append(encode(k, boxes, labels, scores))
        return out

    def _answer(self, samples) -> None:
        if self.stopped:  # an interrupted run: LoadGen waits for answers that never come
            return
        try:
            idx = [s.index for s in samples]
            if self.det.batch_size == 1 or len(idx) == 1:
                arrays = [self._infer([k])[0] for k in idx]
            else:
                size = self.det.batch_size or self.batch
                arrays = [a for j in range(0, len(idx), size) for a in self._infer(idx[j:j + size])]
            responses = [self.lg.QuerySampleResponse(s.id, a.ctypes.data, a.nbytes)
                         for s, a in zip(samples, arrays)]
            with self.lock:  # the arrays stay alive until LoadGen has copied what it logs
                self.lg.QuerySamplesComplete(responses)
                self.answered += len(responses)
        except BaseException as err:  # noqa: BLE001 - LoadGen would wait forever: answer empty
            self.failure = self.failure or err
            with self.lock:
                self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(s.id, 0, 0)
                                              for s in samples])

    def issue(self, samples) -> None:
        """LoadGen's IssueQuery: Offline's one big query in chunks of ``batch`` spread over the
        streams; every other scenario's query (1 sample, or MultiStream's 8) as one task."""
        samples = list(samples)
        if self.scenario == "Offline":
            step = self.batch if (self.det.batch_size or self.batch) > 1 else 1
            chunks = [samples[j:j + step] for j in range(0, len(samples), step)]
        else:
            chunks = [samples]
        for chunk in chunks:
            try:
                self.pool.submit(self._answer, chunk)
            except RuntimeError:  # stopped (Ctrl-C): an exception must not reach LoadGen
                return

    def flush(self) -> None:
        pass

    def stop(self) -> None:
        """Answer nothing more (Ctrl-C: LoadGen cannot be stopped, so its thread is left
        waiting); queued queries are dropped."""
        self.stopped = True
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
