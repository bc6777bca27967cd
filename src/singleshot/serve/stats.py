"""Triton's statistics extension for one model version: cumulative counts and nanoseconds per
stage, as ``GET /v2/models/NAME[/versions/V]/stats`` reports them.

Stages of a request here: ``queue`` (waiting in the batcher), ``compute_input`` (decoding and
preprocessing), ``compute_infer`` (the runtime call), ``compute_output`` (post-processing and
writing the response); ``success``/``fail`` are whole requests. ``inference_count`` counts
images, ``execution_count`` backend batches (``batch_stats`` by batch size).
"""

from __future__ import annotations

import threading
import time

STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


def _pair() -> list[int]:
    return [0, 0]  # count, ns


class ModelStats:
    def __init__(self, name: str, version: str) -> None:
        self.name, self.version = name, version
        self.lock = threading.Lock()
        self.totals = {k: _pair() for k in ("success", "fail", *STAGES)}
        self.inference_count = self.execution_count = 0
        self.last_inference = 0  # ms since the epoch
        self.batches: dict[int, dict[str, list[int]]] = {}

    def request(self, ok: bool, total_s: float, stages_s: dict[str, float] | None = None,
                images: int = 0) -> None:
        """One finished request: ``stages_s`` seconds by stage (success only)."""
        with self.lock:
            pair = self.totals["success" if ok else "fail"]
            pair[0] += 1
            pair[1] += int(total_s * 1e9)
            if ok:
                for k, s in (stages_s or {}).items():
                    self.totals[k][0] += 1
                    self.totals[k][1] += int(s * 1e9)
                self.inference_count += images
                self.last_inference = int(time.time() * 1e3)

    def batch(self, size: int, input_s: float, infer_s: float, output_s: float) -> None:
        """One backend batch of ``size`` images."""
        with self.lock:
            self.execution_count += 1
            per = self.batches.setdefault(size, {k: _pair() for k in STAGES[1:]})
            for k, s in zip(STAGES[1:], (input_s, infer_s, output_s)):
                per[k][0] += 1
                per[k][1] += int(s * 1e9)

    def to_dict(self) -> dict:
        """One entry of ``model_stats`` in Triton's layout."""
        def pair(p):
            return {"count": p[0], "ns": p[1]}

        with self.lock:
            return {
                "name": self.name, "version": self.version,
                "last_inference": self.last_inference,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {**{k: pair(v) for k, v in self.totals.items()},
                                    "cache_hit": pair(_pair()), "cache_miss": pair(_pair())},
                "batch_stats": [{"batch_size": size, **{k: pair(v) for k, v in per.items()}}
                                for size, per in sorted(self.batches.items())],
                "memory_usage": [],
            }
