"""``singleshot serve``: the detector behind HTTP (Open Inference Protocol v2 and /detect)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from .common import (
    BackendOpt,
    PrecisionOpt,
    PreprocessOpt,
    ThreadsOpt,
    _require_extra,
    app,
    ranged,
    user_errors,
)


@app.command()
@user_errors
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="ONNX file or registry name.")] = "demo",
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, ranged("port", help="Port.")] = 8000,
    grpc_port: Annotated[int, ranged("grpc_port", "--grpc-port", help="gRPC port (OIP v2 / Triton GRPCInferenceService); 0 picks a free one and prints it.")] = 8001,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="HTTP only.")] = False,
    name: Annotated[Optional[str], typer.Option(help="Model name in the protocol (default: the registry name or file stem).")] = None,
    model_repository: Annotated[Optional[Path], typer.Option("--model-repository", help="Serve every model of this folder (NAME/1/model.onnx, NAME/2/..., or NAME.onnx as version 1) instead of --model.")] = None,
    version_policy: Annotated[str, typer.Option("--version-policy", help="With --model-repository: latest:N, all or specific:1,3.")] = "latest:1",
    poll_s: Annotated[Optional[float], ranged("poll_s", "--poll-s", help="With --model-repository: look at the folder this often (new versions loaded and warmed before they take traffic); default: only at start and on repository load.")] = None,
    max_body_mb: Annotated[float, ranged("max_body_mb", help="Largest request body, MB (413 above).")] = 32.0,
    api_key: Annotated[Optional[str], typer.Option(help="Require 'Authorization: Bearer KEY' (health endpoints excepted).")] = None,
    instances: Annotated[Optional[int], ranged("instances", help="Detector copies in this process (one queue, the cores shared out; default 2 on 2 or more cores, 1 on one).")] = None,
    max_batch: Annotated[int, ranged("max_batch", help="Images per batch at most (dynamic batching).")] = 8,
    max_delay_ms: Annotated[Optional[float], ranged("max_delay_ms", help="How long a batch waits for more requests (default 0 for a graph that takes one image per call, 5 for a batching graph).")] = None,
    max_queue: Annotated[int, ranged("max_queue", help="Images waiting at most; beyond it requests get 503 with Retry-After.")] = 64,
    max_connections: Annotated[int, ranged("max_connections", "--max-connections", help="Open HTTP connections at most; more get 503 and are closed.")] = 512,
    head_timeout_s: Annotated[float, ranged("timeout_s", "--head-timeout-s", help="A request's head (line and headers) must arrive within this after the connection or the last response.")] = 10.0,
    read_timeout_s: Annotated[float, ranged("timeout_s", "--read-timeout-s", help="Close a connection that sends no byte for this long while a request is due or coming in.")] = 10.0,
    max_pixels: Annotated[int, ranged("max_pixels", "--max-pixels", help="Refuse larger images from their header, before decoding (400).")] = 40_000_000,
    cors: Annotated[Optional[list[str]], typer.Option("--cors", help="An origin allowed to call from a browser (repeat for more; none by default).")] = None,
    ssl_certfile: Annotated[Optional[Path], typer.Option("--ssl-certfile", help="Serve HTTPS with this certificate (PEM), with --ssl-keyfile.")] = None,
    ssl_keyfile: Annotated[Optional[Path], typer.Option("--ssl-keyfile", help="The certificate's private key (PEM).")] = None,
    threads: ThreadsOpt = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "fast",
) -> None:
    """Serve a detector over HTTP (Open Inference Protocol v2 - KServe/Triton REST with the
    binary tensor data, model configuration, repository, statistics and logging extensions - at
    /v2, and POST /detect with an image body) and over gRPC (Triton's GRPCInferenceService).

    The defaults are the fastest configuration measured on the 2-core machines this project
    runs on (bench/RESULTS.md): --backend auto (measured once per model and CPU: OpenVINO where
    it is faster), --preprocess fast (within the documented tolerance of the card's), two
    detector instances on 2 or more cores, and no batching delay for a graph that takes one
    image per call."""
    _require_extra("fastapi", "serve", "serve")
    _require_extra("uvicorn", "serve", "serve")
    from ...runtime.detector import Detector
    from ...serve.folder import FolderRepository, VersionPolicy
    from ...serve.models import Batching
    from ...serve.server import check_listen, create_app, serve_forever

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

    # the instances share the cores: each runtime gets its part, so their pools do not fight
    instances = instances or (2 if (os.cpu_count() or 1) >= 2 else 1)
    per = threads or max(1, (os.cpu_count() or 1) // instances)

    def make(path) -> list:
        return [Detector(str(path), threads=per, backend=backend, precision=precision,
                         preprocess=preprocess) for _ in range(instances)]

    repository, dets = None, None
    batching = Batching(max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue)
    if model_repository is not None:
        if name is not None:
            raise UsageError("--name names the one model of --model; a repository's models are "
                             "named by their folders")
        repository = FolderRepository(model_repository, make,
                                      policy=VersionPolicy.parse(version_policy),
                                      batching=batching)
    else:
        if poll_s is not None:
            raise UsageError("--poll-s watches a --model-repository folder")
        dets = make(model)
        name = name or (Path(model).stem if model.endswith(".onnx") else model)
    serve_forever(create_app(dets, name, api_key=api_key, max_body_mb=max_body_mb,
                             max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue,
                             repository=repository, poll_s=poll_s,
                             max_pixels=max_pixels, cors=cors,
                             grpc_port=None if no_grpc else grpc_port, grpc_host=host,
                             ssl_files=(str(ssl_certfile), str(ssl_keyfile)) if ssl_certfile
                             else None),
                  host, port, ssl_certfile=ssl_certfile and str(ssl_certfile),
                  ssl_keyfile=ssl_keyfile and str(ssl_keyfile), head_timeout_s=head_timeout_s,
                  read_timeout_s=read_timeout_s, max_connections=max_connections)
