"""Inference backends behind one small interface: onnxruntime, OpenVINO, torch eager.

A backend runs the detector network on a preprocessed batch-1 tensor and returns the graph's
outputs (zoo: bboxes, labels, scores; raw: loc, conf), in that order. Post-processing of raw
graphs, thresholds and box scaling stay in :class:`~singleshot.runtime.detector.Detector`, so every
backend gives the same detections for the same outputs.

``auto`` is chosen by measurement on the model (:mod:`singleshot.runtime.autoselect`);
``resolve_backend("auto")`` is the rule used where nothing can be measured: OpenVINO where it is
installed, else onnxruntime. torch only on request (it runs checkpoints, not ONNX files).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from ..errors import ModelError, UsageError

BACKENDS = ("onnxruntime", "openvino", "torch")
PRECISIONS = ("auto", "fp32", "bf16")  # "f32" (OpenVINO's spelling) means fp32


def normalize_precision(precision: str) -> str:
    """``precision`` -> auto | fp32 | bf16 (``f32`` is accepted for fp32)."""
    p = str(precision).lower()
    p = {"f32": "fp32", "float32": "fp32", "bfloat16": "bf16"}.get(p, p)
    if p not in PRECISIONS:
        raise UsageError(f"{{opt:precision}} must be auto, fp32 (or f32) or bf16, got {precision!r}")
    return p


def check_precision(backend: str, precision: str) -> str:
    """The normalised precision, or UsageError where ``backend`` cannot honour it (only OpenVINO
    computes in bf16 here; onnxruntime and torch compute what the graph says)."""
    p = normalize_precision(precision)
    if p == "bf16" and backend != "openvino":
        raise UsageError(f"{{opt:precision}} bf16 needs {{opt:backend}} openvino ({backend} computes in the "
                         "model's own precision)")
    return p


def require_bf16(precision: str, capabilities) -> None:
    """UsageError when bf16 is asked of a CPU whose OpenVINO ``OPTIMIZATION_CAPABILITIES``
    lack BF16 (no AMX, no AVX512-BF16)."""
    if precision == "bf16" and "BF16" not in set(capabilities):
        raise UsageError("this CPU has no bf16 support (no AMX or AVX512-BF16); use "
                         "{opt:precision} fp32 or auto")


def ov_type_name(value) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT (an ``ov.Type`` such as ``<Type: 'bfloat16'>``, or a
    string) -> fp32 | bf16 | fp16. ``str()`` of the Type never says "bf16", so compare names."""
    text = str(getattr(value, "to_string", lambda: value)()).lower()
    text = text.removeprefix("<type: '").removesuffix("'>")
    return {"bf16": "bf16", "bfloat16": "bf16", "f16": "fp16", "float16": "fp16",
            "fp16": "fp16"}.get(text, "fp32")


class Backend(Protocol):
    name: str  # onnxruntime | openvino | torch
    precision: str  # what the convolutions compute in: fp32 | bf16 | int8
    float_precision: str  # what the float ops compute in: fp32 | bf16
    streams: int  # how many requests may run at once (throughput mode)

    def run(self, x: np.ndarray, extra: dict | None = None) -> list[np.ndarray]:
        """Input [1, 3, h, w] (the graph's dtype) and the graph's other inputs (``extra``: per-call
        post-processing options) -> the graph's outputs, in contract order."""
        ...


def model_precision(model: onnx.ModelProto) -> str:
    """fp32, or int8 when the graph holds quantized ops (its post-processing stays fp32)."""
    from ..graph.inspect import quantization_info

    return "int8" if quantization_info(model) else "fp32"


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OrtBackend:
    """onnxruntime: CUDA where present (other providers when passed), else CPU. Its ``run`` is
    thread-safe, so ``streams`` threads may share one session (each with ``threads`` intra-op
    threads)."""

    name = "onnxruntime"
    float_precision = "fp32"

    def __init__(self, model: onnx.ModelProto, output_names: tuple[str, ...], input_name: str, *,
                 threads: int | None = None, streams: int = 1,
                 providers: list[str] | None = None) -> None:
        from .session import make_session

        self.session = make_session(model, threads, providers)
        self.providers = self.session.get_providers()
        self.input_name, self.output_names = input_name, list(output_names)
        self.streams = max(1, streams)
        base = model_precision(model)
        self.precision = base
        self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else "gpu"

    def run(self, x: np.ndarray, extra: dict | None = None) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: x, **(extra or {})})


class OpenVinoBackend:
    """OpenVINO on the CPU. ``precision``: ``auto`` (the runtime's default: bf16 on CPUs with
    AMX/AVX512-BF16, else f32), ``f32`` or ``bf16`` (refused where the CPU cannot). ``streams``
    > 1 compiles for throughput (that many parallel infer requests, one per calling thread)."""

    name = "openvino"

    def __init__(self, model: onnx.ModelProto, output_names: tuple[str, ...], input_name: str, *,
                 threads: int | None = None, streams: int = 1, precision: str = "auto") -> None:
        import openvino as ov

        precision = normalize_precision(precision)
        core = ov.Core()
        require_bf16(precision, core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        config: dict = {"PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY"}
        if streams > 1:
            config["NUM_STREAMS"] = int(streams)
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = {"fp32": "f32"}.get(precision, precision)
        try:
            ov_model = core.read_model(model.SerializeToString(), b"")
            self.compiled = core.compile_model(ov_model, "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError subclasses with long texts
            raise ModelError(f"OpenVINO cannot compile the model: {_ov_reason(str(err))}") from None
        self.streams = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        # what the float parts compute in (an int8 model's unquantized ops and tail too)
        self.float_precision = ov_type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.precision = "int8" if model_precision(model) == "int8" else self.float_precision
        by_name = {n: o for o in self.compiled.outputs for n in o.get_names()}
        self._outputs = [by_name[n] for n in output_names]
        self.input_name = input_name
        self._local = threading.local()

    def run(self, x: np.ndarray, extra: dict | None = None) -> list[np.ndarray]:
        req = getattr(self._local, "request", None)
        if req is None:  # one infer request per thread: requests are not thread-safe
            req = self._local.request = self.compiled.create_infer_request()
        res = req.infer({self.input_name: x, **(extra or {})})
        return [np.asarray(res[o]) for o in self._outputs]


def _ov_reason(text: str) -> str:
    """The telling line of an OpenVINO error (its first lines are source locations)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    failed = [ln.removeprefix("-- ").split(" with a message")[0] for ln in lines
              if ln.startswith("-- ")]
    if failed:
        return "unsupported or invalid operations: " + ", ".join(dict.fromkeys(failed))[:300]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return (useful[0] if useful else lines[0] if lines else "unknown error")[:300]


class TorchBackend:
    """torch eager on a checkpoint (any format ``singleshot export`` reads): the network's raw
    heads, in float32, for parity checks and debugging."""

    name = "torch"
    precision = float_precision = "fp32"
    streams = 1

    def __init__(self, checkpoint: str | os.PathLike, *, threads: int | None = None) -> None:
        try:
            import torch
        except ImportError:
            raise UsageError("the torch backend needs torch: pip install 'singleshot[torch]'") from None
        from ..model.checkpoint import detector_from_checkpoint
        from ..model.metadata import spec_for

        if threads:
            torch.set_num_threads(int(threads))

        self.model, ckpt = detector_from_checkpoint(checkpoint)
        self.spec = spec_for(self.model, "raw", ckpt.class_names, ckpt.category_ids)
        self.output_names = ("loc", "conf")

    def run(self, x: np.ndarray, extra: dict | None = None) -> list[np.ndarray]:
        import torch  # raw heads: post-processing options apply after this stage

        with torch.inference_mode():
            loc, conf = self.model(torch.from_numpy(np.asarray(x, dtype=np.float32)))
        return [loc.numpy(), conf.numpy()]


def resolve_backend(name: str) -> str:
    """``auto`` -> the backend to use here; other names are checked."""
    name = name.lower()
    if name == "auto":
        return "openvino" if openvino_available() else "onnxruntime"
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}: choose auto, {', '.join(BACKENDS)}")
    if name == "openvino" and not openvino_available():
        raise UsageError("the openvino backend needs the 'openvino' extra (openvino is not "
                         "installed): pip install 'singleshot[openvino]'")
    if name == "torch":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise UsageError("the torch backend needs the 'torch' extra (torch is not "
                             "installed): pip install 'singleshot[torch]'")
    return name


def threads_per_stream(backend: str, streams: int, threads: int | None = None) -> int | None:
    """The intra-op threads each of ``streams`` concurrent calls should get: onnxruntime and
    torch calls each run a pool of their own, so the cores are split among them (two full pools
    fight over the cores: slower than one); OpenVINO shares one pool among its infer requests
    (None: its own choice). ``threads`` given wins."""
    if threads or streams <= 1 or backend == "openvino":
        return threads
    return max(1, (os.cpu_count() or 2) // streams)


def is_checkpoint(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in (".pt", ".pth", ".pytorch", ".ckpt")
