"""What a server serves, as one plain value (:class:`ServerConfig`), and the app built from it.

Local ``serve`` builds its app here, and so does every Ray Serve replica
(:mod:`singleshot.serve.ray_serve`), from the same config sent as a dict: one code path, so the
endpoints, errors and defaults cannot drift apart between the two.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import UsageError
from .admission import MAX_PIXELS_IN_FLIGHT, MAX_REQUEST_PIXELS
from .service import MAX_PIXELS_SERVED

MAX_MODEL_MB = 1024.0  # a model file, and any tensor its load would make, at most


SMALL_INPUT = 512  # input side up to which two instances share the cores (see ServerConfig.plan)


def input_side(path) -> int | None:
    """The larger side of a model file's input (None: dynamic, or not an ONNX file: a
    checkpoint); a missing or broken file is its one-line ModelError."""
    from ..graph.contract import graph_io, load_model
    from ..runtime.detector import resolve_model_path

    p = resolve_model_path(path)
    if p.suffix != ".onnx":
        return None
    shape = graph_io(load_model(p)).input_shape
    sides = [d for d in shape[2:] if isinstance(d, int) and d > 0]
    return max(sides) if sides else None


@dataclass
class ServerConfig:
    """The models (``model``, or every model of ``model_repository``), the detector options, the
    dynamic batching and the request limits; JSON-able (``to_dict`` / ``from_dict``)."""

    model: str = "demo"
    name: str | None = None
    model_repository: str | None = None
    version_policy: str = "latest:1"
    poll_s: float | None = None
    backend: str = "auto"
    precision: str = "auto"
    preprocess: str = "fast"
    threads: int | None = None
    instances: int | None = None
    max_batch: int = 8
    max_delay_ms: float | None = None
    max_queue: int = 64
    max_body_mb: float = 32.0
    max_pixels: int = MAX_PIXELS_SERVED
    max_request_pixels: int = MAX_REQUEST_PIXELS
    max_pixels_in_flight: int = MAX_PIXELS_IN_FLIGHT
    max_model_mb: float = MAX_MODEL_MB
    follow_symlinks: bool = False
    api_key: str | list[str] | None = None
    cors: list[str] | None = None
    allowed_hosts: list[str] | None = None  # None: loopback names and ``host``
    host: str = "127.0.0.1"  # where the server listens (its Host names by default)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ServerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown server settings: {', '.join(unknown)}")
        return cls(**values)

    def check(self) -> None:
        """The combinations that cannot be served (UsageError, before any model loads)."""
        if self.model_repository is not None and self.name is not None:
            raise UsageError("--name names the one model of --model; a repository's models "
                             "are named by their folders")
        if self.model_repository is None and self.poll_s is not None:
            raise UsageError("--poll-s watches a --model-repository folder")
        if self.max_request_pixels < self.max_pixels:
            raise UsageError(f"--max-request-pixels ({self.max_request_pixels}) is below "
                             f"--max-pixels ({self.max_pixels}): one image could never pass")
        if self.max_pixels_in_flight < self.max_request_pixels:
            raise UsageError(f"--max-pixels-in-flight ({self.max_pixels_in_flight}) is below "
                             f"--max-request-pixels ({self.max_request_pixels})")

    @property
    def served_name(self) -> str:
        """The protocol's name of ``model``: ``name``, else the file stem or registry name."""
        return self.name or (Path(self.model).stem if self.model.endswith(".onnx")
                             else self.model)

    def plan(self, cpus: float | None = None, input_side: int | None = None) -> tuple[int, int]:
        """(instances, threads per instance) on ``cpus`` (None: this machine's cores) for a
        model of ``input_side`` pixels. The instances share the cores, each runtime getting its
        part so their pools do not fight. Locally, two instances on 2+ cores for a small input
        (the demo's 300: one request's decoding and HTTP overlap another's inference, 1.16x),
        one with every core for a large one (the 1200 model: two 1-thread instances gave half
        the requests/s of one 2-thread instance, bench/RESULTS.md). One in a Ray replica
        (``cpus`` given), whose CPUs are the runtime's threads."""
        if cpus is None:
            cores = os.cpu_count() or 1
            small = input_side is None or input_side <= SMALL_INPUT
            instances = self.instances or (2 if cores >= 2 and small else 1)
        else:
            cores, instances = max(1, round(cpus)), self.instances or 1
        return instances, self.threads or max(1, cores // instances)


def build_app(config: ServerConfig, *, cpus: float | None = None, grpc_port: int | None = None,
              grpc_host: str = "127.0.0.1", ssl_files: tuple[str, str] | None = None,
              max_connections: int = 512, head_timeout_s: float = 10.0):
    """The FastAPI app serving ``config`` (:func:`singleshot.serve.server.create_app`); the
    models load and warm up at the app's startup. ``cpus``: see :meth:`ServerConfig.plan`;
    ``max_connections``, ``head_timeout_s``: gRPC's connection limits, as the HTTP side's."""
    from ..graph.load_budget import check_model_file
    from ..runtime.detector import Detector, resolve_model_path
    from .access import allowed_hosts
    from .folder import FolderRepository, VersionPolicy
    from .models import Batching
    from .server import create_app

    config.check()

    def make(path) -> list:
        # before a runtime spends memory on it
        check_model_file(resolve_model_path(path), config.max_model_mb)
        side = None if config.instances or cpus is not None else input_side(path)
        instances, per = config.plan(cpus, side)
        return [Detector(str(path), threads=per, backend=config.backend,
                         precision=config.precision, preprocess=config.preprocess)
                for _ in range(instances)]

    repository, detectors, name = None, None, None
    if config.model_repository is not None:
        batching = Batching(max_batch=config.max_batch, max_delay_ms=config.max_delay_ms,
                            max_queue=config.max_queue)
        repository = FolderRepository(Path(config.model_repository), make,
                                      policy=VersionPolicy.parse(config.version_policy),
                                      batching=batching, follow_symlinks=config.follow_symlinks)
    else:
        detectors, name = make(config.model), config.served_name
    return create_app(detectors, name, api_key=config.api_key, max_body_mb=config.max_body_mb,
                      max_batch=config.max_batch, max_delay_ms=config.max_delay_ms,
                      max_queue=config.max_queue, repository=repository, poll_s=config.poll_s,
                      max_pixels=config.max_pixels, cors=config.cors, grpc_port=grpc_port,
                      grpc_host=grpc_host, ssl_files=ssl_files,
                      allowed_hosts=allowed_hosts(config.host, config.allowed_hosts),
                      max_request_pixels=config.max_request_pixels,
                      max_pixels_in_flight=config.max_pixels_in_flight,
                      grpc_limits={"max_connections": max_connections,
                                   "handshake_s": head_timeout_s})
