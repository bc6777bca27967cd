"""The FastAPI application: the Open Inference Protocol v2 endpoints with Triton's extensions
(versions, model configuration, statistics, repository, logging), a plain ``/detect``, the page
at ``/``; the gRPC server is started on the same event loop (:mod:`singleshot.serve.grpc_service`).

What a request does is :class:`~singleshot.serve.service.Service`'s, shared with gRPC. Decoding
runs in worker threads (``run_in_threadpool``), detection in the batcher's detector threads
(:mod:`singleshot.serve.batcher`), never on the event loop; every bad request gets a 4xx with
``{"error": "..."}`` and costs other requests nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..runtime.report import DetectionReport, ImageResult
from . import access
from .access import key_matches
from .admission import MAX_PIXELS_IN_FLIGHT, MAX_REQUEST_PIXELS
from .coding import CodingError, compress, inflate
from .metrics import Metrics
from .models import Batching, ModelVersion, Repository, one_line
from .protocol import ProtocolError, TooMany, detections_tensors, loads, parse_infer, write_infer
from .service import (
    EXTENSIONS,
    MAX_PIXELS_SERVED,
    Service,
    check_load_request,
    check_unload_request,
)
from .service import ServiceError as HTTPError
from .service import options as _options
from .settings import Settings

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/metrics")
CONF_FOR_PEOPLE = 0.25  # /detect's default, as `singleshot detect`


# what the bodies of infer and /detect are, for schema-driven clients and fuzzers (the handlers
# read the raw body themselves, so FastAPI cannot infer it)
_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"],
           "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                          "shape": {"type": "array", "items": {"type": "integer"}},
                          "parameters": {"type": "object"}, "data": {"type": "array"}}}
INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["inputs"],
        "properties": {"id": {"type": "string"}, "parameters": {"type": "object"},
                       "inputs": {"type": "array", "items": _TENSOR},
                       "outputs": {"type": "array", "items": {
                           "type": "object", "required": ["name"],
                           "properties": {"name": {"type": "string", "enum": [
                               "boxes", "scores", "category_ids", "num_detections"]},
                               "parameters": {"type": "object"}}}}}}},
    "application/octet-stream": {"schema": {
        "type": "string", "format": "binary",
        "description": "binary tensor data: Inference-Header-Content-Length bytes of JSON, "
                       "then the tensors"}}}}}
DETECT_BODY = {"requestBody": {"required": True, "content": {
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary"}}}}}}}

def create_app(detectors, name: str | None = None, *, api_key: str | list[str] | None = None,
               max_body_mb: float = 32.0, max_batch: int = 8, max_delay_ms: float | None = None,
               max_queue: int = 64, repository: Repository | None = None,
               max_pixels: int = MAX_PIXELS_SERVED, cors: list[str] | None = None,
               grpc_port: int | None = None, grpc_host: str = "127.0.0.1",
               ssl_files: tuple[str, str] | None = None, poll_s: float | None = None,
               allowed_hosts: set[str] | None = None,
               max_request_pixels: int = MAX_REQUEST_PIXELS,
               max_pixels_in_flight: int = MAX_PIXELS_IN_FLIGHT,
               grpc_limits: dict | None = None) -> FastAPI:
    """The server for ``detectors`` (one Detector, or several copies of one model: the
    instances) as model ``name`` version 1, or for every model of ``repository`` (``detectors``
    None). ``max_pixels``: larger images are refused from their header, before decoding;
    ``cors``: origins allowed to call from a browser (none by default); ``grpc_port``: also
    serve gRPC there (0: a free port, in ``app.state.grpc_port`` once started), over TLS with
    ``ssl_files`` (certificate, key) as HTTPS; ``poll_s``: a folder repository is looked at
    this often (:meth:`~singleshot.serve.folder.FolderRepository.sync`); ``api_key``: one key
    or several (any is accepted); ``allowed_hosts``: the Host names answered (None: any;
    :func:`~singleshot.serve.access.allowed_hosts`); ``max_request_pixels``,
    ``max_pixels_in_flight``: :mod:`singleshot.serve.admission`; ``grpc_limits``: keyword
    arguments of :func:`singleshot.serve.grpc_service.start` (connections, handshake)."""
    metrics = Metrics()
    batching = Batching(max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue)
    if repository is None:
        detectors = detectors if isinstance(detectors, list) else [detectors]
        repository = Repository()
        repository.add(ModelVersion(name, "1", make=lambda: detectors, batching=batching))
    repository.observe = metrics.observe_batch
    for mv in repository.all_versions():
        mv.observe = metrics.observe_batch
    app = FastAPI(title="singleshot", version=__version__, docs_url=None, redoc_url=None)
    if cors:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"],
                           allow_headers=["*"], expose_headers=["Inference-Header-Content-Length"])
    app.state.ready = False
    app.state.repository = repository
    limit = int(max_body_mb * 1024 * 1024)
    metrics.queued.set_function(lambda: sum(mv.batcher.waiting for mv in
                                            repository.all_versions() if mv.batcher))
    app.state.metrics = metrics

    @app.on_event("startup")
    async def warm_up() -> None:  # ready once every model has loaded and run an inference
        if grpc_port is not None:  # listening first: a taken port fails before the loading
            from .grpc_service import start

            ssl = None
            if ssl_files is not None:
                cert, key = (Path(f).read_bytes() for f in ssl_files)
                ssl = (key, cert)
            app.state.grpc_server, app.state.grpc_port = await start(
                service, settings, grpc_host, grpc_port, api_key=api_key, is_ready=lambda: app.state.ready,
                max_message_bytes=limit, ssl=ssl, **(grpc_limits or {}))
            logging.getLogger("uvicorn.error").info(
                "gRPC (inference.GRPCInferenceService) on %s:%d%s", grpc_host,
                app.state.grpc_port, " with TLS" if ssl else "")
        log = logging.getLogger("uvicorn.error")
        if hasattr(repository, "sync"):  # a folder: its sync is the transaction
            for change in await run_in_threadpool(repository.sync):
                log.info("model repository: %s", change)
        else:
            for mv in repository.all_versions():
                try:
                    await run_in_threadpool(mv.load)
                except Exception as err:  # noqa: BLE001 - its state says why
                    log.error("model %s version %s: %s", mv.name, mv.version, one_line(err))
        if not any(mv.state == "READY" for mv in repository.all_versions()):
            # serve what loads; nothing loaded: stop, and the CLI says why in one line
            app.state.startup_error = "no model could be loaded: " + "; ".join(
                f"{mv.name} version {mv.version}: {mv.reason}" for mv in repository.all_versions())
            server = getattr(app.state, "uvicorn", None)
            if server is not None:
                server.should_exit = True
            return
        app.state.ready = True
        if poll_s and hasattr(repository, "sync"):
            app.state.poller = asyncio.create_task(poll(poll_s))

    async def poll(every: float) -> None:
        log = logging.getLogger("uvicorn.error")
        while True:
            await asyncio.sleep(every)
            try:
                for change in await run_in_threadpool(repository.sync):
                    log.info("model repository: %s", change)
            except Exception as err:  # noqa: BLE001 - a bad moment in the folder: try again
                log.warning("model repository: %s", err)

    @app.on_event("shutdown")
    async def stop() -> None:  # uvicorn has drained the requests in flight by now
        if getattr(app.state, "poller", None) is not None:
            app.state.poller.cancel()
        if getattr(app.state, "grpc_server", None) is not None:
            await app.state.grpc_server.stop(grace=5)
        for mv in repository.all_versions():
            await run_in_threadpool(mv.unload, "the server stopped")

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
        response = await _checked(request, call_next)
        for k, v in access.HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    async def _checked(request: Request, call_next):
        host = request.headers.get("host")
        if allowed_hosts is not None and (host is None or
                                          access.host_of(host) not in allowed_hosts):
            return JSONResponse({"error": f"Host {host!r} is not one this server answers to "
                                          "(serve --allowed-hosts)"}, status_code=400)
        if api_key is not None and not is_open(request.url.path):
            if not key_matches(request.headers.get("authorization"), api_key):
                return JSONResponse({"error": "missing or wrong API key (Authorization: Bearer)"},
                                    status_code=401,
                                    headers={"WWW-Authenticate": 'Bearer realm="singleshot"'})
        refusal = access.cross_site(request.method, request.url.path, request.headers, cors)
        if refusal is not None:
            return JSONResponse({"error": refusal}, status_code=403)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return JSONResponse({"error": f"body over the limit of {max_body_mb:g} MB"},
                                status_code=413)
        try:
            return await call_next(request)
        except Exception:  # noqa: BLE001 - a bug: answer it, keep serving
            return JSONResponse({"error": "internal error"}, status_code=500)

    async def read_body(request: Request) -> bytes:
        """The body, counted as it arrives, and inflated when ``Content-Encoding`` says
        gzip or deflate (the inflated size is held to the same limit)."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"body over the limit of {max_body_mb:g} MB")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return body
        try:
            return await run_in_threadpool(inflate, body, encoding, limit)
        except CodingError as err:
            status = 413 if err.too_large else 400
            raise HTTPError(status, str(err).replace("LIMIT", f"{max_body_mb:g} MB")) from None

    service = Service(repository, max_pixels=max_pixels, max_request_pixels=max_request_pixels,
                      max_pixels_in_flight=max_pixels_in_flight)
    settings = Settings()  # logging and trace settings, shared by both protocols
    app.state.service, app.state.settings = service, settings
    find, run, counted = service.find, service.run, service.counted

    from starlette.staticfiles import StaticFiles

    static = Path(__file__).with_name("static")
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        """The page (singleshot/serve/static): images, clipboard or webcam against /detect."""
        return FileResponse(static / "index.html",
                            headers={"Cache-Control": "no-cache", **access.PAGE_HEADERS})

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}},
                              "description": "Prometheus text exposition format"}})
    async def prometheus_metrics():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        if not app.state.ready:
            raise HTTPError(503, "the models are loading")
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return {"name": "singleshot", "version": __version__, "extensions": EXTENSIONS}

    @app.get("/v2/models/stats")
    async def all_stats():
        return {"model_stats": [mv.stats.to_dict() for mv in repository.all_versions()]}

    def versioned(method: str, suffix: str = "", **route_kw):
        """Register a model route at ``/v2/models/{model}`` and at
        ``/v2/models/{model}/versions/{version}`` (Triton's paths with a version)."""
        def register(fn):
            route = getattr(app, method)
            route(f"/v2/models/{{model}}{suffix}", **route_kw)(fn)
            route(f"/v2/models/{{model}}/versions/{{version}}{suffix}", **route_kw)(fn)
            return fn
        return register

    @versioned("get")
    async def model_metadata(model: str, version: str | None = None):
        mv = find(model, version)
        return mv.metadata(repository.versions(model))

    @versioned("get", "/ready")
    async def model_ready(request: Request, model: str, version: str | None = None):
        if api_key is not None and not key_matches(request.headers.get("authorization"),
                                                   api_key):
            # a probe without the key learns ready or not, nothing of the models or errors
            try:
                ok = find(model, version, ready=False).state == "READY"
            except HTTPError:
                ok = False
            return JSONResponse({"ready": ok}, status_code=200 if ok else 503)
        mv = find(model, version, ready=False)
        if mv.state != "READY":
            raise HTTPError(503 if mv.reason == "loading" else 404,
                            f"model {mv.name!r} version {mv.version} is not ready: {mv.reason}")
        return {"name": mv.name, "version": mv.version, "ready": True}

    @versioned("get", "/config")
    async def model_config(model: str, version: str | None = None):
        return find(model, version).config()

    @versioned("get", "/stats")
    async def model_stats(model: str, version: str | None = None):
        chosen = service.versions_of(model) if version is None else \
            [find(model, version, ready=False)]
        return {"model_stats": [mv.stats.to_dict() for mv in chosen]}

    @versioned("post", "/infer", openapi_extra=INFER_BODY)
    async def infer(request: Request, model: str,
                    version: str | None = None):
        mv = find(model, version)

        async def work():
            body = await read_body(request)
            try:  # off the event loop: the work grows with the body
                req = await run_in_threadpool(
                    parse_infer, body, request.headers.get("inference-header-content-length"),
                    mv.batching.max_queue)
            except ProtocolError as err:
                raise HTTPError(413 if isinstance(err, TooMany) else 400, str(err)) from None
            dets, stages = await run(mv, req.images, _options(req.parameters),
                                     pinned=version is not None)
            payload, headers = write_infer(mv.name, req, detections_tensors(dets), mv.version)
            payload, headers = compress(payload, headers, request.headers.get("accept-encoding"))
            return Response(payload, headers=headers), stages, len(dets)

        return await counted(mv, work)

    async def json_body(request: Request, what: str = "the body must be a JSON object") -> dict:
        body = await read_body(request)
        try:
            doc = await run_in_threadpool(loads, body) if body.strip() else {}
        except ProtocolError as err:
            raise HTTPError(400, f"{what} ({err})") from None
        if not isinstance(doc, dict):
            raise HTTPError(400, what)
        return doc

    @app.get("/v2/logging")
    async def get_logging():
        return settings.log

    @app.post("/v2/logging")
    async def set_logging(request: Request):
        return settings.update_log(await json_body(request))

    @app.get("/v2/trace/setting")
    @app.get("/v2/models/{model}/trace/setting")
    async def get_trace(model: str | None = None):
        if model is not None:
            find(model, ready=False)
        return settings.trace()

    @app.post("/v2/trace/setting")
    @app.post("/v2/models/{model}/trace/setting")
    async def set_trace(request: Request, model: str | None = None):
        if model is not None:
            find(model, ready=False)
        return settings.trace(await json_body(request))

    @app.api_route("/v2/systemsharedmemory/{rest:path}", methods=["GET", "POST"],
                   include_in_schema=False)  # not offered: answered, not described
    @app.api_route("/v2/cudasharedmemory/{rest:path}", methods=["GET", "POST"],
                   include_in_schema=False)
    async def shared_memory(request: Request, rest: str):
        kind = request.url.path.split("/")[2]
        raise HTTPError(400, f"the {kind} extension is not offered by this server (send the "
                             "tensors in the request)")

    @app.post("/v2/repository/index")
    async def repository_index(request: Request):
        doc = await json_body(request, 'the index request must be a JSON object like '
                                       '{"ready": false}')
        return repository.index(bool(doc.get("ready", False)))

    @app.post("/v2/repository/models/{model}/load")
    async def repository_load(request: Request, model: str):
        check_load_request(await json_body(request, "the load request must be a JSON object"))
        await run_in_threadpool(service.load, model)
        return {}

    @app.post("/v2/repository/models/{model}/unload")
    async def repository_unload(request: Request, model: str):
        check_unload_request(await json_body(request, "the unload request must be a JSON "
                                                      "object"))
        await run_in_threadpool(service.unload, model)
        return {}

    default = repository.all_versions()[0].name

    @app.post("/detect", openapi_extra=DETECT_BODY)
    async def detect(request: Request):
        mv = find(request.query_params.get("model", default))

        async def work():
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype.startswith("multipart/form-data"):
                # the body counted against the limit as it arrives, then parsed
                body = await read_body(request)
                form = await replay(request, body).form()
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
            params = {k: v for k, v in request.query_params.items() if k != "model"}
            (d,), stages = await run(mv, [data], _options(params, conf_default=CONF_FOR_PEOPLE))
            report = DetectionReport(mv.info["name"], [ImageResult(None, d)])
            return JSONResponse(report.to_dict()), stages, 1

        return await counted(mv, work)

    return app


def replay(request: Request, body: bytes) -> Request:
    """A request whose body is ``body`` (already read), for parsers that read it again."""
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def is_open(path: str) -> bool:
    """Paths answered without the API key: health, metrics and model readiness (the probes
    of orchestrators, which carry no credentials), and the page's own files."""
    return path in OPEN_PATHS or (path.startswith("/v2/models/") and path.endswith("/ready")) \
        or path == "/" or path.startswith("/static/")  # the page asks for the key itself


def check_listen(host: str, port: int, option: str = "port") -> None:
    """UsageError (one line, exit 2) when nothing can listen on ``host:port`` (a taken port),
    rather than uvicorn's own message and exit 3 after the model has loaded."""
    import socket

    from ..errors import UsageError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port}: {err.strerror or err} "
                         f"(another server there? choose another {{opt:{option}}})") from None


def serve_forever(app: FastAPI, host: str, port: int, *, graceful_s: float = 30.0,
                  ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                  head_timeout_s: float = 10.0, read_timeout_s: float = 10.0,
                  max_connections: int = 512, body_timeout_s: float = 60.0,
                  per_client: int | None = None) -> None:
    """Run ``app`` with uvicorn until SIGINT/SIGTERM. SIGTERM drains the requests in flight (up
    to ``graceful_s``) and the process exits 0, as process managers expect (uvicorn itself would
    re-raise the signal after shutting down). Connections: :mod:`singleshot.serve.connections`."""
    import signal

    import uvicorn

    class Draining(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM and sig in self._captured_signals:
                self._captured_signals.remove(sig)

    check_listen(host, port)
    from .connections import guarded_protocol

    server = Draining(uvicorn.Config(app, host=host, port=port, log_level="info",
                            timeout_graceful_shutdown=graceful_s, ssl_certfile=ssl_certfile,
                            ssl_keyfile=ssl_keyfile,
                            http=guarded_protocol(head_timeout_s, read_timeout_s,
                                                  max_connections, body_timeout_s,
                                                  per_client)))
    raise_descriptor_limit()
    app.state.uvicorn = server  # the startup stops it when no model loads
    server.run()
    if getattr(app.state, "startup_error", None):
        from ..errors import ModelError

        raise ModelError(app.state.startup_error)


def raise_descriptor_limit() -> None:
    """The soft limit on open files raised to the hard one: the connection caps of both
    protocols (512 each by default) are meant to bind before the descriptors run out (1,024 by
    default on Linux), not after."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else max(soft, 65536), hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: the caps still hold
        pass
