"""What every protocol of the server does with a request, whatever carried it (HTTP/REST or
gRPC): find the model version, check the options, decode the images one at a time within the
pixel limit, queue them on the version's batcher, and count the request in its statistics.

Errors are :class:`ServiceError` with an HTTP status; the gRPC front end maps the status to its
codes (:data:`GRPC_CODES`), so both protocols refuse the same things the same way.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from starlette.concurrency import run_in_threadpool

from ..errors import ImageError, SingleshotError
from ..io.images import image_pixels
from .admission import (
    MAX_PIXELS_IN_FLIGHT,
    MAX_REQUEST_PIXELS,
    TRIM_PIXELS,
    PixelBudget,
    give_back_memory,
)
from .batcher import Closed, QueueFull
from .models import ModelVersion, Repository, UnknownModel
from .protocol import TooMany

MAX_PIXELS_SERVED = 40_000_000  # 8K UHD photos (33 MP) pass; a 16000 x 16000 bomb does not
EXTENSIONS = ["binary_tensor_data", "model_configuration", "model_repository", "statistics",
              "parameters", "logging"]  # the Triton/KServe extensions this server implements


class ServiceError(Exception):
    """A refused request: ``status`` (HTTP), the one-line ``message``, extra ``headers``."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# gRPC status code names by HTTP status (a full queue, 503 with Retry-After, is
# RESOURCE_EXHAUSTED; a model still loading UNAVAILABLE)
GRPC_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND",
              413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}


def grpc_code(err: ServiceError) -> str:
    if err.status == 503 and "Retry-After" in err.headers:
        return "RESOURCE_EXHAUSTED"
    return GRPC_CODES.get(err.status, "INTERNAL")


def options(values: dict, conf_default: float | None = None) -> dict:
    """Request parameters -> Detector call options (types only: their ranges and classes are
    checked by :meth:`Detector.options` before the request is queued); ServiceError 400."""
    out = {"conf": conf_default, "iou": None, "max_det": None, "classes": None, "agnostic": None}
    try:
        if str(values.get("conf")).lower() == "model":  # as the CLI's --conf model
            out["conf"], values = None, {k: v for k, v in values.items() if k != "conf"}
        for key, kind in (("conf", float), ("iou", float), ("max_det", int)):
            if values.get(key) is not None:
                if isinstance(values[key], bool):
                    raise ValueError(f"{key} must be a number, got {values[key]!r}")
                out[key] = kind(values[key])
        agnostic = values.get("agnostic")
        if agnostic is not None:  # JSON true/false, or a query string's text
            text = str(agnostic).strip().lower()
            if isinstance(agnostic, bool) or text in ("true", "false", "1", "0"):
                out["agnostic"] = agnostic if isinstance(agnostic, bool) else text in ("true", "1")
            else:
                raise ValueError(f"agnostic must be true or false, got {agnostic!r}")
        classes = values.get("classes")
        if classes is not None:
            items = classes if isinstance(classes, list) else str(classes).split(",")
            out["classes"] = [c.strip() if isinstance(c, str) else c for c in items
                              if not isinstance(c, str) or c.strip()]
    except (TypeError, ValueError, OverflowError) as err:
        raise ServiceError(400, str(err) if "must" in str(err) else
                           f"bad parameter: {err}") from None
    return out


class Service:
    """``max_pixels``: per image; ``max_request_pixels``: the sum over one request's images;
    ``max_pixels_in_flight``: decoded pixels held by all requests at once
    (:mod:`singleshot.serve.admission`)."""

    def __init__(self, repository: Repository, *, max_pixels: int = MAX_PIXELS_SERVED,
                 max_request_pixels: int = MAX_REQUEST_PIXELS,
                 max_pixels_in_flight: int = MAX_PIXELS_IN_FLIGHT) -> None:
        self.repository, self.max_pixels = repository, max_pixels
        self.max_request_pixels = max_request_pixels
        self.pixels = PixelBudget(max_pixels_in_flight)

    def find(self, name: str, version: str | None = None, ready: bool = True) -> ModelVersion:
        """The model version (the newest when ``version`` is empty); 404 when unknown, or not
        loaded and ``ready``."""
        repo = self.repository
        try:
            return repo.ready(name, version) if ready else repo.find(name, version)
        except UnknownModel as err:
            raise ServiceError(404, str(err)) from None

    def admit(self, detector, images: list[bytes], opts: dict) -> int:
        """The options checked against the model and each image's size read from its header
        (400s), before anything is decoded; returns the request's pixels (413 over its limit)."""
        try:
            detector.options(**opts)
        except SingleshotError as err:  # e.g. an unknown class
            raise ServiceError(400, str(err)) from None
        total = 0
        for k, data in enumerate(images):
            try:
                total += image_pixels(data, max_pixels=self.max_pixels)
            except ImageError as err:
                raise ServiceError(400, f"image {k}: {_client_text(err)}") from None
        if total > self.max_request_pixels:
            raise ServiceError(413, f"the request's {len(images)} image(s) hold {total} pixels, "
                                    f"over the limit of {self.max_request_pixels} per request "
                                    "(send fewer or smaller images per request)")
        return total

    def decode(self, detector, images: list[bytes]) -> list[np.ndarray]:
        """Decoded images (admitted first: :meth:`admit`)."""
        rgbs = []
        for k, data in enumerate(images):
            try:
                rgbs.append(detector.decode(data, max_pixels=self.max_pixels))
            except ImageError as err:
                raise ServiceError(400, f"image {k}: {_client_text(err)}") from None
        return rgbs

    def versions_of(self, name: str) -> list[ModelVersion]:
        self.find(name, ready=False)  # 404 for an unknown name
        return [self.repository.models[name][v] for v in self.repository.versions(name)]

    def load(self, name: str) -> None:
        """The repository extension's load: a folder repository looks at the folder for
        ``name`` first (a model added there is served without waiting for the poll; one that
        failed is tried again); each version is loaded and warmed. A model none of whose
        versions loads: 400 with the reason, as Triton answers."""
        sync = getattr(self.repository, "sync", None)
        if sync is not None:
            sync(names=[name], retry=True)
        versions = self.versions_of(name)
        for mv in versions:
            if mv.state == "READY" or sync is not None:
                continue
            try:
                mv.load()
            except Exception:  # noqa: BLE001 - said below, the model stays unavailable
                pass
        if not any(mv.state == "READY" for mv in versions):
            reasons = "; ".join(f"version {mv.version}: {mv.reason}" for mv in versions)
            raise ServiceError(400, f"failed to load {name!r}: {reasons}")

    def unload(self, name: str) -> None:
        for mv in self.versions_of(name):
            mv.unload()

    async def run(self, mv: ModelVersion, images: list[bytes], opts: dict, *,
                  pinned: bool = False) -> tuple[list, dict]:
        """Detections of ``images`` and the seconds of each stage (statistics extension).
        A version unloaded while the request was on its way (a newer one took over): the
        request goes to the newest ready version, unless it named its version (``pinned``:
        404)."""
        try:
            return await self._run(mv, images, opts)
        except Closed:
            if pinned:
                raise ServiceError(404, f"model {mv.name!r} version {mv.version} was "
                                        "unloaded") from None
            return await self._run(self.find(mv.name), images, opts)

    async def _run(self, mv: ModelVersion, images: list[bytes], opts: dict) -> tuple[list, dict]:
        batcher, detectors = mv.batcher, mv.detectors  # held: an unload may clear them meanwhile
        if batcher is None or detectors is None:
            raise Closed(mv.version)
        if len(images) > batcher.max_queue:  # could never be queued: no retry will help
            raise ServiceError(413, str(TooMany(len(images), batcher.max_queue)))
        if batcher.waiting + len(images) > batcher.max_queue:  # full: say so before decoding
            raise ServiceError(503, f"busy: {batcher.waiting} images are waiting (the limit is "
                                    f"{batcher.max_queue}); retry shortly", {"Retry-After": "1"})
        t0 = time.perf_counter()
        pixels = await run_in_threadpool(self.admit, detectors[0], images, opts)
        try:
            async with self.pixels.hold(pixels, lambda: ServiceError(
                    503, "busy: the server is decoding as many pixels as it may hold; retry "
                         "shortly", {"Retry-After": "1"})):
                rgbs = await run_in_threadpool(self.decode, detectors[0], images)
                decoded = time.perf_counter() - t0
                try:
                    future = batcher.submit(rgbs, opts)
                except QueueFull as err:
                    raise ServiceError(503, f"busy: {err}; retry shortly",
                                       {"Retry-After": "1"}) from None
                del rgbs  # the batcher holds them until they are resized
                try:
                    dets = await asyncio.wrap_future(future)
                except SingleshotError as err:
                    raise ServiceError(400, str(err)) from None
        finally:
            if pixels >= TRIM_PIXELS:
                await run_in_threadpool(give_back_memory)
        ms = {k: sum(d.timings.get(k, 0.0) for d in dets) / 1e3
              for k in ("preprocess", "inference", "postprocess")}
        stages = {"queue": future.started_at - future.queued_at,
                  "compute_input": decoded + ms["preprocess"],
                  "compute_infer": ms["inference"], "compute_output": ms["postprocess"]}
        return dets, stages

    async def counted(self, mv: ModelVersion, work):
        """``await work()`` -> (response, stages, images), counted in ``mv``'s statistics; the
        time after the stages (writing the response) is counted as output."""
        t0 = time.perf_counter()
        try:
            response, stages, n = await work()
        except ServiceError:
            mv.stats.request(False, time.perf_counter() - t0)
            raise
        written = time.perf_counter() - t0 - sum(stages.values())
        stages["compute_output"] += max(0.0, written)
        mv.stats.request(True, time.perf_counter() - t0, stages, n)
        return response


def _client_text(err: ImageError) -> str:
    """An image error as a client reads it: no ``<bytes>:`` and no CLI advice."""
    return str(err).removeprefix("<bytes>: ").split(" (raise it with")[0]


def check_load_request(doc: dict) -> None:
    """A repository load request's parameters: Triton's overrides (``config``, ``file:...``
    contents) are not applied by this server, so they are refused (400), never ignored."""
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise ServiceError(400, "the load request's 'parameters' must be an object")
    if params:
        raise ServiceError(400, f"load parameters are not supported here ({', '.join(sorted(params))[:200]}): "
                                "this server loads the files of its repository folder as they are; "
                                "put the model there instead of sending it")


def check_unload_request(doc: dict) -> None:
    """An unload request's parameters: ``unload_dependents`` (a boolean; a detector has no
    dependents), nothing else (400)."""
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise ServiceError(400, "the unload request's 'parameters' must be an object")
    unknown = sorted(set(params) - {"unload_dependents"})
    if unknown or not isinstance(params.get("unload_dependents", False), bool):
        raise ServiceError(400, f"unload parameters not understood: {', '.join(unknown) or 'unload_dependents must be true or false'}")
