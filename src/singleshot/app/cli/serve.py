"""``singleshot serve``: the detector behind HTTP (Open Inference Protocol v2 and /detect)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from .common import (
    AddressOpt,
    BackendOpt,
    PrecisionOpt,
    PreprocessOpt,
    ThreadsOpt,
    _require_extra,
    app,
    flag,
    ranged,
    user_errors,
)


LOCAL_ONLY = ("model_repository", "version_policy", "poll_s", "max_connections",
              "head_timeout_s", "read_timeout_s", "body_timeout_s", "max_connections_per_client",
              "ssl_certfile", "ssl_keyfile", "follow_symlinks")
RAY_ONLY = ("address", "replicas", "autoscale", "cpus_per_worker", "max_ongoing_requests",
            "target_ongoing_requests", "upscale_delay_s", "downscale_delay_s",
            "metrics_interval_s", "detach", "stop", "write_config", "app_name", "proxy")
RAY_HELP = "Ray Serve (--engine ray)"


@app.command()
@user_errors
def serve(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="ONNX file or registry name.")] = "demo",
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, ranged("port", help="Port.")] = 8000,
    grpc_port: Annotated[int, ranged("grpc_port", "--grpc-port", help="gRPC port (OIP v2 / Triton GRPCInferenceService); 0 picks a free one and prints it (local only).")] = 8001,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="HTTP only.")] = False,
    name: Annotated[Optional[str], typer.Option(help="Model name in the protocol (default: the registry name or file stem).")] = None,
    model_repository: Annotated[Optional[Path], typer.Option("--model-repository", help="Serve every model of this folder (NAME/1/model.onnx, NAME/2/..., or NAME.onnx as version 1) instead of --model.")] = None,
    version_policy: Annotated[str, typer.Option("--version-policy", help="With --model-repository: latest:N, all or specific:1,3.")] = "latest:1",
    poll_s: Annotated[Optional[float], ranged("poll_s", "--poll-s", help="With --model-repository: look at the folder this often (new versions loaded and warmed before they take traffic); default: only at start and on repository load.")] = None,
    max_body_mb: Annotated[float, ranged("max_body_mb", help="Largest request body, MB (413 above).")] = 32.0,
    api_key: Annotated[Optional[str], typer.Option(help="Require 'Authorization: Bearer KEY' (health endpoints excepted). Visible in ps: prefer --api-key-file or SINGLESHOT_API_KEY.")] = None,
    api_key_file: Annotated[Optional[Path], typer.Option("--api-key-file", help="Require one of the keys in this file (one a line: several for a rotation); SINGLESHOT_API_KEY (commas between several) adds to them.")] = None,
    allowed_hosts: Annotated[Optional[list[str]], typer.Option("--allowed-hosts", help="A Host name the server answers to (repeat for more; '*' any). Default: the loopback names and the bind address (any name when bound to 0.0.0.0 or ::); others get 400 (DNS rebinding).")] = None,
    instances: Annotated[Optional[int], ranged("instances", help="Detector copies in this process (one queue, the cores shared out; default 2 on 2 or more cores for a model input up to 512 px such as the demo's, else 1 with every core; under Ray: per replica, default 1).")] = None,
    max_batch: Annotated[int, ranged("max_batch", help="Images per batch at most (dynamic batching).")] = 8,
    max_delay_ms: Annotated[Optional[float], ranged("max_delay_ms", help="How long a batch waits for more requests (default 0 for a graph that takes one image per call, 5 for a batching graph).")] = None,
    max_queue: Annotated[int, ranged("max_queue", help="Images waiting at most; beyond it requests get 503 with Retry-After.")] = 64,
    max_connections: Annotated[int, ranged("max_connections", "--max-connections", help="Open HTTP connections at most; more get 503 and are closed.")] = 512,
    head_timeout_s: Annotated[float, ranged("timeout_s", "--head-timeout-s", help="A request's head (line and headers) must arrive within this after the connection or the last response.")] = 10.0,
    read_timeout_s: Annotated[float, ranged("timeout_s", "--read-timeout-s", help="Close a connection that sends no byte for this long while a request is due or coming in.")] = 10.0,
    max_pixels: Annotated[int, ranged("max_pixels", "--max-pixels", help="Refuse larger images from their header, before decoding (400).")] = 40_000_000,
    max_request_pixels: Annotated[int, ranged("max_pixels", "--max-request-pixels", help="Refuse a request whose images add up to more pixels, from their headers (413).")] = 64_000_000,
    max_pixels_in_flight: Annotated[int, ranged("max_pixels", "--max-pixels-in-flight", help="Decoded pixels held by all requests at once; a request past it waits up to 1 s, then gets 503 with Retry-After.")] = 128_000_000,
    body_timeout_s: Annotated[float, ranged("timeout_s", "--body-timeout-s", help="Close a connection whose request body is still coming this long after its head.")] = 60.0,
    max_connections_per_client: Annotated[Optional[int], ranged("max_connections", "--max-connections-per-client", help="Open HTTP connections from one address at most (default: half of --max-connections).")] = None,
    max_model_mb: Annotated[float, ranged("max_body_mb", "--max-model-mb", help="Refuse a model file larger than this, or one whose input or constant-folded tensors would take more (checked before it loads).")] = 1024.0,
    follow_symlinks: Annotated[bool, typer.Option("--follow-symlinks", help="With --model-repository: serve model files whose link leaves the folder.")] = False,
    cors: Annotated[Optional[list[str]], typer.Option("--cors", help="An origin allowed to call from a browser (repeat for more; none by default).")] = None,
    ssl_certfile: Annotated[Optional[Path], typer.Option("--ssl-certfile", help="Serve HTTPS with this certificate (PEM), with --ssl-keyfile.")] = None,
    ssl_keyfile: Annotated[Optional[Path], typer.Option("--ssl-keyfile", help="The certificate's private key (PEM).")] = None,
    threads: ThreadsOpt = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "fast",
    engine: Annotated[str, typer.Option("--engine", help="local (this process) or ray (a Ray Serve application: replicas across a cluster).", rich_help_panel=RAY_HELP)] = "local",
    address: AddressOpt = None,
    replicas: Annotated[Optional[int], ranged("workers", "--replicas", help="Replicas of the detector (default 1).", rich_help_panel=RAY_HELP)] = None,
    autoscale: Annotated[Optional[str], typer.Option("--autoscale", metavar="MIN,MAX", help="Autoscale between MIN and MAX replicas on the ongoing requests per replica (instead of --replicas).", rich_help_panel=RAY_HELP)] = None,
    cpus_per_worker: Annotated[Optional[float], ranged("cpus_per_worker", "--cpus-per-worker", help="CPUs per replica, and the runtime's threads (default 1; fractions share a core).", rich_help_panel=RAY_HELP)] = None,
    max_ongoing_requests: Annotated[Optional[int], ranged("max_queue", "--max-ongoing-requests", help="Requests in one replica at most; Ray's proxy holds the rest (default 16).", rich_help_panel=RAY_HELP)] = None,
    target_ongoing_requests: Annotated[Optional[float], ranged("target_ongoing", "--target-ongoing-requests", help="--autoscale: the ongoing requests per replica it aims at (Ray's default 2).", rich_help_panel=RAY_HELP)] = None,
    upscale_delay_s: Annotated[Optional[float], ranged("delay_s", "--upscale-delay-s", help="--autoscale: load above the target this long before a replica is added (Ray's default 30).", rich_help_panel=RAY_HELP)] = None,
    downscale_delay_s: Annotated[Optional[float], ranged("delay_s", "--downscale-delay-s", help="--autoscale: load below the target this long before a replica is removed (Ray's default 600).", rich_help_panel=RAY_HELP)] = None,
    metrics_interval_s: Annotated[Optional[float], ranged("timeout_s", "--metrics-interval-s", hidden=True)] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Deploy, print how to reach and stop it, and return (the application stays on the cluster).", rich_help_panel=RAY_HELP)] = False,
    stop: Annotated[Optional[str], typer.Option("--stop", metavar="NAME", help="Delete application NAME from the cluster and exit.", rich_help_panel=RAY_HELP)] = None,
    write_config: Annotated[Optional[Path], typer.Option("--write-config", metavar="FILE", help="Write a Ray Serve config file (serve deploy, KubeRay) for these options and exit.", rich_help_panel=RAY_HELP)] = None,
    proxy: Annotated[str, typer.Option("--proxy", help="The local Ray instance's ingress: python (Ray Serve's proxy: only requests on a dead replica fail) or haproxy (Ray Serve's HAProxy ingress: 1.8x the requests/s on the demo model, measured; a cluster sets it as RAY_SERVE_ENABLE_HA_PROXY=1 when it starts).", rich_help_panel=RAY_HELP)] = "python",
    app_name: Annotated[str, typer.Option("--app-name", help="The Ray Serve application's name (a running one of that name is updated in place: a rolling update).", rich_help_panel=RAY_HELP)] = "singleshot",
) -> None:
    """Serve a detector over HTTP (Open Inference Protocol v2 - KServe/Triton REST with the
    binary tensor data, model configuration, repository, statistics and logging extensions - at
    /v2, and POST /detect with an image body) and over gRPC (Triton's GRPCInferenceService).

    The defaults are the fastest configuration measured on the 2-core machines this project
    runs on (bench/RESULTS.md): --backend auto (measured once per model and CPU: OpenVINO where
    it is faster), --preprocess fast (within the documented tolerance of the card's), two
    detector instances on 2 or more cores for a small model (one with every core for the 1200
    model), and no batching delay for a graph that takes one image per call.

    --engine ray runs the same server as a Ray Serve application: every detector, batching
    and request-limit option applies inside each replica; TLS, the connection limits
    (--max-connections, --head-timeout-s, --read-timeout-s) belong to Ray's proxy, and the
    model repository options to local serve: they are refused there."""
    _require_extra("fastapi", "serve", "serve")
    _require_extra("uvicorn", "serve", "serve")
    from ...serve.access import read_keys
    from ...serve.build import ServerConfig

    given = {p for p in ctx.params  # typer's click: its own ParameterSource, compared by name
             if getattr(ctx.get_parameter_source(p), "name", "") == "COMMANDLINE"}
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got {engine!r}")
    wrong = sorted(given & set(RAY_ONLY if engine == "local" else LOCAL_ONLY))
    if wrong:
        where = ("only with --engine ray" if engine == "local" else
                 "local serve only (under Ray, TLS and connection limits are Ray's proxy's; "
                 "serve a repository's models as separate applications)")
        raise UsageError(f"{', '.join(flag(w) for w in wrong)}: {where}")
    config = ServerConfig(model=model, name=name, backend=backend, precision=precision,
                          preprocess=preprocess, threads=threads, instances=instances,
                          max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue,
                          max_body_mb=max_body_mb, max_pixels=max_pixels,
                          max_request_pixels=max_request_pixels,
                          max_pixels_in_flight=max_pixels_in_flight, max_model_mb=max_model_mb,
                          follow_symlinks=follow_symlinks,
                          api_key=read_keys(api_key, api_key_file), cors=cors,
                          allowed_hosts=allowed_hosts, host=host,
                          model_repository=None if model_repository is None
                          else str(model_repository),
                          version_policy=version_policy, poll_s=poll_s)
    config.check()
    if engine == "ray":
        from .serve_ray import serve_on_ray

        return serve_on_ray(config, given, host=host, port=port,
                            grpc_port=None if no_grpc else grpc_port, address=address,
                            replicas=replicas, autoscale=autoscale,
                            cpus_per_worker=cpus_per_worker,
                            max_ongoing_requests=max_ongoing_requests,
                            target_ongoing_requests=target_ongoing_requests,
                            upscale_delay_s=upscale_delay_s, downscale_delay_s=downscale_delay_s,
                            metrics_interval_s=metrics_interval_s, detach=detach, stop=stop,
                            write_config=write_config, app_name=app_name, proxy=proxy)

    from ...serve.build import build_app
    from ...serve.server import check_listen, serve_forever

    check_listen(host, port)  # before the model loads
    if not no_grpc and grpc_port:
        if grpc_port == port:
            raise UsageError(f"--grpc-port {grpc_port} is the HTTP --port too: choose another")
        check_listen(host, grpc_port, "grpc_port")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise UsageError("--ssl-certfile and --ssl-keyfile go together")
    for f in (ssl_certfile, ssl_keyfile):
        if f is not None and not f.is_file():
            raise UsageError(f"{f}: no such file")
    app_ = build_app(config, grpc_port=None if no_grpc else grpc_port, grpc_host=host,
                     ssl_files=(str(ssl_certfile), str(ssl_keyfile)) if ssl_certfile else None,
                     max_connections=max_connections, head_timeout_s=head_timeout_s)
    serve_forever(app_, host, port, ssl_certfile=ssl_certfile and str(ssl_certfile),
                  ssl_keyfile=ssl_keyfile and str(ssl_keyfile), head_timeout_s=head_timeout_s,
                  read_timeout_s=read_timeout_s, max_connections=max_connections,
                  body_timeout_s=body_timeout_s, per_client=max_connections_per_client)
