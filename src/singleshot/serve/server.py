"""The FastAPI application: the Open Inference Protocol v2 endpoints and a plain ``/detect``.

Decoding runs in worker threads (``run_in_threadpool``), detection in the batcher's detector
threads (:mod:`singleshot.serve.batcher`), never on the event loop; every bad request gets a 4xx
with ``{"error": "..."}`` and costs other requests nothing.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import ImageError, SingleshotError
from ..runtime.report import DetectionReport, ImageResult
from .batcher import Batcher, QueueFull
from .metrics import Metrics
from .protocol import OUTPUTS, ProtocolError, detections_tensors, parse_infer, write_infer

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/metrics")
CONF_FOR_PEOPLE = 0.25  # /detect's default, as `singleshot detect`


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _options(values: dict, conf_default: float | None = None) -> dict:
    """Request parameters -> Detector call options (types only: their ranges and classes are
    checked by :meth:`Detector.options` before the request is queued); HTTPError 400."""
    out = {"conf": conf_default, "iou": None, "max_det": None, "classes": None}
    try:
        if str(values.get("conf")).lower() == "model":  # as the CLI's --conf model
            out["conf"], values = None, {k: v for k, v in values.items() if k != "conf"}
        for key, kind in (("conf", float), ("iou", float), ("max_det", int)):
            if values.get(key) is not None:
                if isinstance(values[key], bool):
                    raise ValueError(f"{key} must be a number, got {values[key]!r}")
                out[key] = kind(values[key])
        classes = values.get("classes")
        if classes is not None:
            items = classes if isinstance(classes, list) else str(classes).split(",")
            out["classes"] = [c.strip() if isinstance(c, str) else c for c in items
                              if not isinstance(c, str) or c.strip()]
    except (TypeError, ValueError, OverflowError) as err:
        raise HTTPError(400, str(err) if "must" in str(err) else f"bad parameter: {err}") from None
    return out


def create_app(detectors, name: str, *, api_key: str | None = None,
               max_body_mb: float = 32.0, max_batch: int = 8, max_delay_ms: float = 5.0,
               max_queue: int = 64) -> FastAPI:
    """The server for ``detectors`` (one Detector, or several copies of one model: the
    instances) under model name ``name``."""
    detectors = detectors if isinstance(detectors, list) else [detectors]
    detector = detectors[0]
    app = FastAPI(title="singleshot", version=__version__, docs_url=None, redoc_url=None)
    app.state.ready = False
    limit = int(max_body_mb * 1024 * 1024)
    metrics = Metrics()
    batcher = Batcher(detectors, max_batch=max_batch, max_delay_ms=max_delay_ms,
                      max_queue=max_queue, observe=metrics.observe_batch)
    metrics.queued.set_function(lambda: batcher.waiting)
    app.state.batcher, app.state.metrics = batcher, metrics

    @app.on_event("startup")
    async def warm_up() -> None:  # ready only once every instance has run an inference
        h, w = detector.spec.input_size
        for d in detectors:
            await run_in_threadpool(d, np.full((h, w, 3), 114, np.uint8))
        app.state.ready = True

    @app.on_event("shutdown")
    async def stop() -> None:  # uvicorn has drained the requests in flight by now
        await run_in_threadpool(batcher.close)

    @app.exception_handler(HTTPError)
    async def http_error(request: Request, err: HTTPError):
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def framework_error(request: Request, err: StarletteHTTPException):
        # the framework's own 4xx (bad multipart, unknown path, wrong method): our error body
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        endpoint = "infer" if path.endswith("/infer") else path if path in (
            "/detect", "/metrics") or path.startswith("/v2/health") else "metadata"
        t0 = time.perf_counter()
        metrics.in_flight.inc()
        try:
            response = await _guarded(request, call_next)
        finally:
            metrics.in_flight.dec()
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - t0)
        return response

    async def _guarded(request: Request, call_next):
        if api_key is not None and request.url.path not in OPEN_PATHS:
            if request.headers.get("authorization") != f"Bearer {api_key}":
                return JSONResponse({"error": "missing or wrong API key (Authorization: Bearer)"},
                                    status_code=401)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return JSONResponse({"error": f"body over the limit of {max_body_mb:g} MB"},
                                status_code=413)
        try:
            return await call_next(request)
        except Exception:  # noqa: BLE001 - a bug: answer it, keep serving
            return JSONResponse({"error": "internal error"}, status_code=500)

    async def read_body(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"body over the limit of {max_body_mb:g} MB")
            chunks.append(chunk)
        return b"".join(chunks)

    def check_model(model: str) -> None:
        if model != name:
            raise HTTPError(404, f"unknown model {model!r}; this server has {name!r}")

    def decode(images: list[bytes], options: dict) -> list[np.ndarray]:
        """Decoded images, and the options checked against the model (400s, before queueing)."""
        try:
            detector.options(**options)
        except SingleshotError as err:  # e.g. an unknown class
            raise HTTPError(400, str(err)) from None
        rgbs = []
        for k, data in enumerate(images):
            try:
                rgbs.append(detector.decode(data))
            except ImageError as err:
                raise HTTPError(400, f"image {k}: {str(err).removeprefix('<bytes>: ')}") from None
        return rgbs

    async def run(images: list[bytes], options: dict) -> list:
        rgbs = await run_in_threadpool(decode, images, options)
        try:
            future = batcher.submit(rgbs, options)
        except QueueFull as err:
            raise HTTPError(503, f"busy: {err}; retry shortly", {"Retry-After": "1"}) from None
        try:
            return await asyncio.wrap_future(future)
        except SingleshotError as err:
            raise HTTPError(400, str(err)) from None

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        if not app.state.ready:
            raise HTTPError(503, "the model is loading")
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return {"name": "singleshot", "version": __version__,
                "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{model}")
    async def model_metadata(model: str):
        check_model(model)
        return {"name": name, "versions": ["1"], "platform": "singleshot",
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": n, "datatype": t, "shape": shape}
                            for n, (t, shape) in OUTPUTS.items()]}

    @app.get("/v2/models/{model}/ready")
    async def model_ready(model: str):
        check_model(model)
        if not app.state.ready:
            raise HTTPError(503, "the model is loading")
        return {"name": name, "ready": True}

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request):
        check_model(model)
        body = await read_body(request)
        try:
            req = parse_infer(body, request.headers.get("inference-header-content-length"))
        except ProtocolError as err:
            raise HTTPError(400, str(err)) from None
        options = _options(req.parameters)
        dets = await run(req.images, options)
        payload, headers = write_infer(name, req, detections_tensors(dets))
        return Response(payload, headers=headers)

    @app.post("/detect")
    async def detect(request: Request):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            field = form.get("image")
            if field is None or not hasattr(field, "read"):
                raise HTTPError(400, "multipart body needs a file field named 'image'")
            data = await field.read()
            if len(data) > limit:
                raise HTTPError(413, f"body over the limit of {max_body_mb:g} MB")
        elif ctype.startswith("image/") or ctype == "application/octet-stream":
            data = await read_body(request)
        else:
            raise HTTPError(415, f"send the image as the body (image/* or "
                                 f"application/octet-stream) or as multipart field 'image', "
                                 f"not {ctype or 'no content type'}")
        options = _options(dict(request.query_params), conf_default=CONF_FOR_PEOPLE)
        (d,) = await run([data], options)
        report = DetectionReport(detector.name, [ImageResult(None, d)])
        return report.to_dict()

    return app


def check_listen(host: str, port: int) -> None:
    """UsageError (one line, exit 2) when nothing can listen on ``host:port`` (a taken port),
    rather than uvicorn's own message and exit 3 after the model has loaded."""
    import socket

    from ..errors import UsageError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port}: {err.strerror or err} "
                         "(another server there? choose another {opt:port})") from None


def serve_forever(app: FastAPI, host: str, port: int, *, graceful_s: float = 30.0) -> None:
    """Run ``app`` with uvicorn until SIGINT/SIGTERM. SIGTERM drains the requests in flight (up
    to ``graceful_s``) and the process exits 0, as process managers expect (uvicorn itself would
    re-raise the signal after shutting down)."""
    import signal

    import uvicorn

    class Draining(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM and sig in self._captured_signals:
                self._captured_signals.remove(sig)

    check_listen(host, port)
    Draining(uvicorn.Config(app, host=host, port=port, log_level="info",
                            timeout_graceful_shutdown=graceful_s)).run()
