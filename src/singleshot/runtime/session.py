"""onnxruntime sessions with explicit providers and one-line errors for models it cannot load."""

from __future__ import annotations

import onnx

from ..errors import ModelError


def make_session(model: onnx.ModelProto | str, threads: int | None = None,
                 providers: list[str] | None = None):
    """An onnxruntime session with explicit providers (CUDA first when present, then CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    available = ort.get_available_providers()
    if providers is None:
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        return ort.InferenceSession(data, opts, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"onnxruntime cannot load the model: {first[:300]}") from None
