"""``singleshot serve``: the detector behind HTTP (Open Inference Protocol v2 and /detect)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from .common import BackendOpt, PrecisionOpt, PreprocessOpt, _require_extra, app, user_errors


@app.command()
@user_errors
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="ONNX file or registry name.")] = "demo",
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    name: Annotated[Optional[str], typer.Option(help="Model name in the protocol (default: the registry name or file stem).")] = None,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, MB (413 above).")] = 32.0,
    api_key: Annotated[Optional[str], typer.Option(help="Require 'Authorization: Bearer KEY' (health endpoints excepted).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads.")] = None,
    backend: BackendOpt = "onnxruntime",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "card",
) -> None:
    """Serve a detector over HTTP: Open Inference Protocol v2 (KServe/Triton REST, binary tensor
    data extension) at /v2, and POST /detect with an image body."""
    _require_extra("fastapi", "serve", "serve")
    _require_extra("uvicorn", "serve", "serve")
    import uvicorn

    from ...runtime.detector import Detector
    from ...serve.server import create_app

    if not 0 < port < 65536:
        raise UsageError(f"--port must be 1..65535, got {port}")
    if max_body_mb <= 0:
        raise UsageError("--max-body-mb must be positive")
    det = Detector(model, threads=threads, backend=backend, precision=precision,
                   preprocess=preprocess)
    name = name or (Path(model).stem if model.endswith(".onnx") else model)
    uvicorn.run(create_app(det, name, api_key=api_key, max_body_mb=max_body_mb), host=host,
                port=port, log_level="info")
