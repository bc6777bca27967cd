"""The models a server holds: each name's versions, with their detectors, batcher, state and
statistics, and what the metadata, model configuration and repository endpoints say of them.

A version is READY (loaded, warmed, taking requests) or UNAVAILABLE (``reason`` says why:
unloaded, loading, failed). Unloading closes its batcher, which finishes the requests already
queued before it stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .batcher import Batcher
from .protocol import OUTPUTS
from .stats import ModelStats


class UnknownModel(LookupError):
    """No such model or version, or not loaded: the caller answers 404 (gRPC NOT_FOUND)."""


@dataclass
class Batching:
    """``max_delay_ms`` None: 0 for a graph that takes one image per call (gathering requests
    into one call is impossible there, and waiting only adds latency: measured 1.26x the
    throughput at 16 clients, bench/RESULTS.md), :data:`BATCH_DELAY_MS` for a batching graph."""

    max_batch: int = 8
    max_delay_ms: float | None = None
    max_queue: int = 64

    def delay_for(self, detector) -> float:
        return self.delay_ms({"batch_size": detector.batch_size})

    def delay_ms(self, info: dict) -> float:
        """The delay for a graph of ``info["batch_size"]`` (1, N, or None: any)."""
        if self.max_delay_ms is not None:
            return self.max_delay_ms
        return 0.0 if info.get("batch_size") == 1 else BATCH_DELAY_MS


BATCH_DELAY_MS = 5.0


@dataclass
class ModelVersion:
    name: str
    version: str
    make: Callable[[], list]  # -> the detectors (instances) of this version
    batching: Batching = field(default_factory=Batching)
    observe: Callable | None = None  # the server's metrics, per batch
    state: str = "UNAVAILABLE"
    reason: str = "not loaded"
    detectors: list | None = None
    batcher: Batcher | None = None
    stats: ModelStats = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.stats = self.stats or ModelStats(self.name, self.version)
        self.lock = threading.Lock()
        self._info: dict | None = None

    @property
    def detector(self):
        return self.detectors[0]

    @property
    def info(self) -> dict:
        """What runs this version (kept after an unload, so that a request that raced the
        unload can still be described): name, backend, precision, input_size, class_names,
        batch_size, instances."""
        return self._info or {}

    def load(self) -> None:
        """Build and warm the detectors (every instance runs once), then take requests."""
        with self.lock:
            if self.state == "READY":
                return
            self.reason = "loading"
            try:
                detectors = self.make()
                h, w = detectors[0].spec.input_size
                for d in detectors:
                    d(np.full((h, w, 3), 114, np.uint8))
            except Exception as err:  # the state says so; the caller decides what follows
                self.state, self.reason = "UNAVAILABLE", f"failed to load: {one_line(err)}"
                raise

            def observe(queue_s, inference_s, images, stages_ms):
                ms = stages_ms or {}
                self.stats.batch(images, ms.get("preprocess", 0) / 1e3,
                                 ms.get("inference", 0) / 1e3, ms.get("postprocess", 0) / 1e3)
                if self.observe is not None:
                    self.observe(queue_s, inference_s, images, stages_ms, model=self.name,
                                 version=self.version)

            b = self.batching
            self.batcher = Batcher(detectors, max_batch=b.max_batch,
                                   max_delay_ms=b.delay_for(detectors[0]), max_queue=b.max_queue,
                                   observe=observe)
            d = detectors[0]
            self._info = {"name": d.name, "backend": d.backend.name,
                          "precision": d.backend.precision,
                          "input_size": list(d.spec.input_size),
                          "class_names": list(d.spec.class_names), "batch_size": d.batch_size,
                          "instances": len(detectors)}
            self.detectors, self.state, self.reason = detectors, "READY", ""

    def unload(self, reason: str = "unloaded") -> None:
        with self.lock:
            batcher, self.batcher = self.batcher, None
            self.state, self.reason = "UNAVAILABLE", reason
            if batcher is not None:
                batcher.close()  # the requests already queued finish first
            self.detectors = None

    def metadata(self, versions: list[str]) -> dict:
        """OIP model metadata; ``parameters`` say what runs it (for pages and tools)."""
        i = self.info
        return {"name": self.name, "versions": versions, "platform": "singleshot",
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": n, "datatype": t, "shape": shape}
                            for n, (t, shape) in OUTPUTS.items()],
                "parameters": {k: i.get(k) for k in ("backend", "precision", "input_size",
                                                     "class_names")}}

    def config(self) -> dict:
        """Triton's model configuration (JSON form): one request is a list of encoded images
        (``max_batch_size`` 0: no batch dimension of Triton's own; the server batches
        images across requests), the outputs, the dynamic batching and instances in use."""
        dtype = {"FP32": "TYPE_FP32", "INT64": "TYPE_INT64"}
        i, b = self.info, self.batching
        return {
            "name": self.name, "platform": "singleshot", "backend": i.get("backend"),
            "version_policy": {"latest": {"num_versions": 1}},
            "max_batch_size": 0,
            "input": [{"name": "image", "data_type": "TYPE_STRING", "format": "FORMAT_NONE",
                       "dims": [-1]}],
            "output": [{"name": n, "data_type": dtype[t], "dims": shape}
                       for n, (t, shape) in OUTPUTS.items()],
            "dynamic_batching": {"preferred_batch_size": [b.max_batch],
                                 "max_queue_delay_microseconds": int(b.delay_ms(i) * 1e3),
                                 "default_queue_policy": {"max_queue_size": b.max_queue}},
            "instance_group": [{"name": f"{self.name}_0", "kind": "KIND_CPU",
                                "count": i.get("instances", 0)}],
            "parameters": {"precision": {"string_value": str(i.get("precision"))},
                           "input_size": {"string_value": "x".join(
                               map(str, i.get("input_size", ())))}},
        }


class Repository:
    """Models by name, each with its versions (``"1"``, ``"2"``...)."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, ModelVersion]] = {}
        self.observe: Callable | None = None  # the server's metrics, given to every version

    def add(self, mv: ModelVersion) -> None:
        mv.observe = mv.observe or self.observe
        self.models.setdefault(mv.name, {})[mv.version] = mv

    def versions(self, name: str) -> list[str]:
        return sorted(self.models.get(name, {}), key=_version_key)

    def find(self, name: str, version: str | None = None) -> ModelVersion:
        """The version asked for (or the newest), whatever its state; UnknownModel."""
        versions = self.models.get(name)
        if not versions:
            raise UnknownModel(f"unknown model {name!r}; this server has "
                               f"{', '.join(map(repr, self.models)) or 'none'}")
        if version in (None, ""):
            ready = [v for v in versions.values() if v.state == "READY"]
            return max(ready or versions.values(), key=lambda v: _version_key(v.version))
        if version not in versions:
            raise UnknownModel(f"model {name!r} has no version {version!r} (versions: "
                               f"{', '.join(self.versions(name))})")
        return versions[version]

    def ready(self, name: str, version: str | None = None) -> ModelVersion:
        """As :meth:`find`, READY only (UnknownModel naming why not)."""
        mv = self.find(name, version)
        if mv.state != "READY":
            raise UnknownModel(f"model {name!r} version {mv.version} is not ready: {mv.reason}")
        return mv

    def index(self, ready_only: bool = False) -> list[dict]:
        """``/v2/repository/index``: every version with its state."""
        return [{"name": n, "version": v.version, "state": v.state, "reason": v.reason}
                for n in sorted(self.models) for v in
                (self.models[n][k] for k in self.versions(n))
                if not ready_only or v.state == "READY"]

    def all_versions(self) -> list[ModelVersion]:
        return [self.models[n][k] for n in sorted(self.models) for k in self.versions(n)]


def one_line(err: BaseException, root: str | None = None) -> str:
    """An error as one line for clients and logs: its first line, paths under ``root`` (a
    repository folder) relative to it."""
    text = (str(err).strip() or type(err).__name__).splitlines()[0]
    if root:
        text = text.replace(root.rstrip("/") + "/", "")
    return text[:300]


def _version_key(v: str):
    return (0, int(v)) if v.isdigit() else (1, v)
