"""The Open Inference Protocol v2 over gRPC (KServe / Triton ``inference.GRPCInferenceService``)
on the HTTP server's models, batchers and :class:`~singleshot.serve.service.Service`: the same
options (request ``parameters`` conf / iou / max_det / classes), the same refusals (mapped to
gRPC status codes), the same statistics. Runs on the HTTP server's event loop (``grpc.aio``).

Tensors: input ``image`` BYTES [N] in ``raw_input_contents`` (each element a 4-byte
little-endian length and the encoded image, Triton's layout) or ``contents.bytes_contents``;
outputs as the REST endpoint's, in ``raw_output_contents`` (little-endian), in the order asked.
"""

from __future__ import annotations

import functools

import grpc
from google.protobuf import json_format
from starlette.concurrency import run_in_threadpool

from .._version import __version__
from .access import key_matches
from .models import Repository
from .proto import inference_pb2 as pb
from .proto import inference_pb2_grpc as pb_grpc
from .protocol import (
    OUTPUTS,
    ProtocolError,
    TooMany,
    bytes_elements,
    check_shape,
    detections_tensors,
)
from .service import (
    EXTENSIONS,
    Service,
    ServiceError,
    check_load_request,
    check_unload_request,
    grpc_code,
    options,
)
from .settings import Settings

OPEN_METHODS = ("ServerLive", "ServerReady", "ModelReady")  # probes carry no credentials


def _checked(method):
    """The API key, and ServiceError -> the gRPC status its HTTP status maps to."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            if name not in OPEN_METHODS:
                self.authenticate(context)
            return await method(self, request, context)
        except ServiceError as err:
            await context.abort(getattr(grpc.StatusCode, grpc_code(err)), err.message)

    return wrapper


def _param(p: pb.InferParameter):
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: Service, settings: Settings, *, api_key: str | list[str] | None,
                 is_ready) -> None:
        self.service, self.settings = service, settings
        self.api_key, self.is_ready = api_key, is_ready

    @property
    def repository(self) -> Repository:
        return self.service.repository

    def authenticate(self, context) -> None:
        if self.api_key is None:
            return
        given = dict(context.invocation_metadata()).get("authorization")
        if not key_matches(given, self.api_key):
            raise ServiceError(401, "missing or wrong API key (metadata authorization: Bearer)")

    # -- health and metadata ---------------------------------------------------------------

    @_checked
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @_checked
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=bool(self.is_ready()))

    @_checked
    async def ModelReady(self, request, context):
        try:
            mv = self.service.find(request.name, request.version, ready=False)
        except ServiceError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=mv.state == "READY")

    @_checked
    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="singleshot", version=__version__,
                                         extensions=EXTENSIONS)

    @_checked
    async def ModelMetadata(self, request, context):
        mv = self.service.find(request.name, request.version)
        meta = mv.metadata(self.repository.versions(request.name))
        meta.pop("parameters")  # no field for them in the gRPC message (REST carries them)
        return json_format.ParseDict(meta, pb.ModelMetadataResponse())

    @_checked
    async def ModelConfig(self, request, context):
        mv = self.service.find(request.name, request.version)
        config = json_format.ParseDict(mv.config(), pb.ModelConfig(), ignore_unknown_fields=True)
        return pb.ModelConfigResponse(config=config)

    @_checked
    async def ModelStatistics(self, request, context):
        if not request.name:
            chosen = self.repository.all_versions()
        elif request.version:
            chosen = [self.service.find(request.name, request.version, ready=False)]
        else:
            chosen = self.service.versions_of(request.name)
        doc = {"model_stats": [mv.stats.to_dict() for mv in chosen]}
        return json_format.ParseDict(doc, pb.ModelStatisticsResponse(), ignore_unknown_fields=True)

    # -- repository -------------------------------------------------------------------------

    @_checked
    async def RepositoryIndex(self, request, context):
        models = [pb.RepositoryIndexResponse.ModelIndex(**m)
                  for m in self.repository.index(request.ready)]
        return pb.RepositoryIndexResponse(models=models)

    @_checked
    async def RepositoryModelLoad(self, request, context):
        check_load_request({"parameters": {k: _param(v) for k, v in request.parameters.items()}})
        await run_in_threadpool(self.service.load, request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_checked
    async def RepositoryModelUnload(self, request, context):
        check_unload_request({"parameters": {k: _param(v)
                                             for k, v in request.parameters.items()}})
        await run_in_threadpool(self.service.unload, request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # -- settings ---------------------------------------------------------------------------

    @_checked
    async def TraceSetting(self, request, context):
        if request.model_name:
            self.service.find(request.model_name, ready=False)
        new = {k: list(v.value) for k, v in request.settings.items()}
        out = pb.TraceSettingResponse()
        for key, value in self.settings.trace(new).items():
            out.settings[key].value.extend(value if isinstance(value, list) else [str(value)])
        return out

    @_checked
    async def LogSettings(self, request, context):
        new = {k: getattr(v, v.WhichOneof("parameter_choice"))
               for k, v in request.settings.items() if v.WhichOneof("parameter_choice")}
        values = self.settings.update_log(new) if new else dict(self.settings.log)
        out = pb.LogSettingsResponse()
        for key, value in values.items():
            field = ("bool_param" if isinstance(value, bool) else
                     "uint32_param" if isinstance(value, int) else "string_param")
            setattr(out.settings[key], field, value)
        return out

    # -- inference --------------------------------------------------------------------------

    @_checked
    async def ModelInfer(self, request, context):
        return await self._infer(request)

    async def ModelStreamInfer(self, request_iterator, context):
        """Each request of the stream answered in order; a refused one gets its error in
        ``error_message`` and the stream goes on (as Triton's decoupled-less models do)."""
        try:
            self.authenticate(context)
        except ServiceError as err:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, err.message)
        async for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self._infer(request))
            except ServiceError as err:
                yield pb.ModelStreamInferResponse(error_message=err.message)

    async def _infer(self, request) -> pb.ModelInferResponse:
        mv = self.service.find(request.model_name, request.model_version)

        async def work():  # parsing off the event loop: its work grows with the message
            images, names = await run_in_threadpool(parse_request, request,
                                                    mv.batching.max_queue)
            opts = options({k: _param(v) for k, v in request.parameters.items()})
            dets, stages = await self.service.run(mv, images, opts,
                                                  pinned=bool(request.model_version))
            return write_response(mv.name, mv.version, request.id, names,
                                  detections_tensors(dets)), stages, len(dets)

        return await self.service.counted(mv, work)


def parse_request(request: pb.ModelInferRequest, max_images: int | None = None
                  ) -> tuple[list[bytes], list[str]]:
    """The images of input ``image`` and the output names asked for (all when none);
    ServiceError 400 for anything malformed, 413 for more than ``max_images`` images (counted
    before they are split out)."""
    images = None
    raw = request.raw_input_contents
    if len(raw) and len(raw) != len(request.inputs):
        raise ServiceError(400, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    for k, inp in enumerate(request.inputs):
        if inp.name != "image":
            continue
        if inp.datatype != "BYTES":
            raise ServiceError(400, f"input 'image' must be BYTES, got {inp.datatype!r}")
        try:
            n = check_shape(list(inp.shape), max_images)
            if len(raw):
                images = bytes_elements(raw[k], n)
            else:
                contents = inp.contents.bytes_contents
                if len(contents) > n:  # before a Python object is made for each
                    raise ProtocolError(f"input 'image' has shape [{n}] but {len(contents)} "
                                        "elements")
                images = list(contents)
        except ProtocolError as err:
            raise ServiceError(413 if isinstance(err, TooMany) else 400, str(err)) from None
        if len(images) != n:
            raise ServiceError(400, f"input 'image' has shape [{n}] but "
                                    f"{len(images)} elements")
    if images is None:
        raise ServiceError(400, "the request has no input named 'image'")
    names = [o.name for o in request.outputs]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise ServiceError(400, f"unknown output {unknown[0]!r}; the model's outputs are "
                                f"{', '.join(OUTPUTS)}")
    return images, names or list(OUTPUTS)


def write_response(model: str, version: str, request_id: str, names: list[str],
                   tensors: dict) -> pb.ModelInferResponse:
    out = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    for name in names:
        arr = tensors[name]
        out.outputs.add(name=name, datatype=OUTPUTS[name][0], shape=list(arr.shape))
        out.raw_output_contents.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    return out


async def start(service: Service, settings: Settings, host: str, port: int, *,
                api_key: str | list[str] | None, is_ready, max_message_bytes: int,
                ssl: tuple[bytes, bytes] | None = None, max_connections: int = 512,
                handshake_s: float = 10.0, idle_s: float = 300.0):
    """A started ``grpc.aio`` server on ``host:port`` (0: a free port); returns (server, port).

    Bounded as the HTTP side is, with gRPC core's own options: at most ``max_connections``
    connections (more are refused at accept), a connection that has not finished its HTTP/2
    handshake in ``handshake_s`` closed (idle TCP connections held 1,100 descriptors before), one
    without an RPC for ``idle_s`` sent GOAWAY, 100 streams per connection, and keepalive pings
    faster than every 10 s without data answered with GOAWAY (ping floods)."""
    opts = [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max(max_message_bytes, 64 << 20)),
            ("grpc.max_allowed_incoming_connections", max_connections),
            ("grpc.server_handshake_timeout_ms", int(handshake_s * 1000)),
            ("grpc.max_connection_idle_ms", int(idle_s * 1000)),
            ("grpc.max_concurrent_streams", 100),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.keepalive_permit_without_calls", 0)]
    server = grpc.aio.server(options=opts)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(service, settings, api_key=api_key, is_ready=is_ready), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if ssl is not None:
        key, cert = ssl
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        bound = server.add_insecure_port(address)
    await server.start()
    return server, bound
