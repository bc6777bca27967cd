"""Static int8 quantization of detector graphs on onnxruntime.quantization.

What is ours (onnxruntime has no notion of it): finding the backbone of an unknown detector graph
(every node that feeds a Conv, found by graph analysis, not names) so that the post-processing
(decode, softmax, NMS, TopK) stays in float; calibration images through exactly the model's
preprocessing; chunked calibration so histogram methods fit in memory on 1200x1200 inputs; the
recipe recorded in the model's metadata.

Default recipe (measured on this machine kind, see reference/PERFORMANCE.md): QDQ, uint8
asymmetric activations, int8 symmetric per-channel weights, opset >= 13, float tail.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from io import StringIO
from pathlib import Path

import numpy as np
import onnx

from ..core.spec import ModelSpec
from ..errors import ModelError, UsageError
from ..graph.contract import graph_io, load_model, read_spec
from ..graph.edit import inline_constant_identities, tensor_producers
from ..io.files import atomic_path
from ..io.images import IMAGE_EXTENSIONS, load_image
from ..progress import Progress, resolve
from ..runtime.preprocess import preprocess


@dataclass(frozen=True)
class Recipe:
    """How a model is quantized; stored as JSON in the output's ``quantization`` metadata."""

    format: str = "qdq"  # qdq | qoperator
    activations: str = "uint8"  # uint8 (asymmetric) | int8
    per_channel: bool = True
    method: str = "minmax"  # minmax | entropy | percentile
    num_images: int = 100
    opset: int = 13

    def validate(self) -> "Recipe":
        """UsageError for a value the quantizer does not offer (checked before any work)."""
        for option, value, allowed in (("format", self.format, FORMATS),
                                       ("activations", self.activations, ACTIVATIONS),
                                       ("method", self.method, METHODS)):
            if value not in allowed:
                raise UsageError(f"{{opt:{option}}} must be one of {', '.join(allowed)}, "
                                 f"got {value!r}")
        return self

    @property
    def symmetric_activations(self) -> bool:
        """int8 activations are quantized symmetric, uint8 asymmetric (ActivationSymmetric)."""
        return self.activations == "int8"

    def describe(self) -> str:
        return (f"{'QOperator' if self.format == 'qoperator' else 'QDQ'}, {self.activations} "
                f"activations ({'symmetric' if self.symmetric_activations else 'asymmetric'}), "
                f"int8 {'per-channel' if self.per_channel else 'per-tensor'} symmetric weights, "
                f"{self.method} calibration on {self.num_images} images, opset >= {self.opset}, "
                "post-processing after the last Conv kept in float")


FORMATS = ("qdq", "qoperator")
ACTIVATIONS = ("uint8", "int8")
METHODS = ("minmax", "entropy", "percentile")


def recipe_of(model_path: str | os.PathLike) -> Recipe:
    """The recipe a singleshot-quantized file records (images actually used included)."""
    model = onnx.load(str(model_path), load_external_data=False)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["quantization"])
    return Recipe(**{k: v for k, v in meta.items() if k in Recipe.__dataclass_fields__})


class ImageFolderReader:
    """onnxruntime ``CalibrationDataReader`` over image files, preprocessed exactly as the model
    expects (``spec``). Supports ``set_range`` so calibration can run in chunks."""

    def __init__(self, folder: str | os.PathLike, spec: ModelSpec, input_name: str,
                 num_images: int) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such calibration folder")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise UsageError(f"{folder}: no image files for calibration")
        self.paths, self.skipped = [], []
        # Keep the first num_images that decode. They are decoded again when fed: a decode costs
        # milliseconds next to a calibration inference, and holding 100 preprocessed 1200x1200
        # tensors would cost 1.7 GB; knowing the count up front keeps the recorded recipe exact.
        for p in files:
            if len(self.paths) == num_images:
                break
            try:
                load_image(p, exif=False)
                self.paths.append(p)
            except Exception as err:  # noqa: BLE001 - reported, calibration goes on
                self.skipped.append(f"{p}: {err}")
        if not self.paths:
            raise UsageError(f"{folder}: none of {len(files)} image files could be read")
        self.spec, self.input_name = spec, input_name
        self.start, self.end, self.pos = 0, len(self.paths), 0

    def __len__(self) -> int:
        return len(self.paths)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self.pos = start_index, end_index, start_index

    batch = 1  # a fixed-batch graph takes each image repeated to its batch

    def tensor(self, i: int) -> np.ndarray:
        x = preprocess(load_image(self.paths[i], exif=False), self.spec)
        return np.repeat(x, self.batch, axis=0) if self.batch > 1 else x

    def get_next(self) -> dict | None:
        if self.pos >= min(self.end, len(self.paths)):
            return None
        self.pos += 1
        return {self.input_name: self.tensor(self.pos - 1)}


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (onnxruntime selects nodes to quantize by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


CONV_OPS = ("Conv", "QLinearConv", "ConvInteger")


def backbone_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that feed some Conv (and the Convs): the part worth quantizing.
    Everything after the last convolutions - box decoding, softmax, NMS, TopK - is left out."""
    producer = tensor_producers(model)
    keep: set[str] = set()
    stack = [n for n in model.graph.node if n.op_type in CONV_OPS]
    while stack:
        node = stack.pop()
        if node.name in keep:
            continue
        keep.add(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    if not keep:
        raise ModelError("the graph has no Conv nodes to quantize")
    return keep


def _upgrade_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return model
    try:
        from onnx import version_converter

        return version_converter.convert_version(model, opset)
    except Exception as err:  # the converter raises several types
        raise ModelError(f"cannot upgrade the model from opset {current} to {opset}: {err}") from None


def prepare_float_model(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The float graph exactly as the quantizer sees it: opset >= ``opset``, constant Identity
    nodes inlined, every node named (node names are how float convs are chosen)."""
    model = _upgrade_opset(model, opset)
    inline_constant_identities(model)
    name_nodes(model)
    return model


def _chunk(n: int, at_most: int = 8) -> int:
    """The largest divisor of n not above ``at_most`` (onnxruntime's strided calibration needs
    chunks that divide the image count)."""
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def quantize_model(model_path: str | os.PathLike, out: str | os.PathLike,
                   calib_dir: str | os.PathLike, recipe: Recipe = Recipe(),
                   exclude: set[str] = frozenset(), progress: Progress | None = None,
                   calibration_cache: str | os.PathLike | None = None) -> Path:
    """Quantize ``model_path`` into ``out`` with ``recipe``; ``exclude``: extra node names to keep
    in float (accuracy-aware search). ``calibration_cache``: a JSON file onnxruntime writes the
    calibrated ranges to, and reads them back from on the next call (ranges do not depend on
    ``exclude`` or the format, so a search calibrates once). Returns the output path."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    progress = resolve(progress)
    recipe.validate()
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    model = load_model(model_path)
    io = graph_io(model, str(model_path))
    spec = read_spec(model, io)
    if io.input_dtype != "float32":
        raise ModelError(f"{model_path}: input is {io.input_dtype}; quantize a float32 model")
    from ..graph.inspect import quantization_info

    if quantization_info(model):  # onnxruntime would write a file it cannot load itself
        raise ModelError(f"{model_path}: already quantized ({quantization_info(model)['format']}); "
                         "quantize the float32 model")
    reader = ImageFolderReader(calib_dir, spec, io.input, recipe.num_images)
    if isinstance(io.input_shape[0], int) and io.input_shape[0] > 1:
        reader.batch = io.input_shape[0]
    for msg in reader.skipped:
        progress.note(f"skipped unreadable calibration image {msg}")
    if len(reader) < recipe.num_images:
        progress.note(f"calibrating on {len(reader)} images: {calib_dir} has no more readable ones "
            f"(asked for {recipe.num_images})")
    model = prepare_float_model(model, recipe.opset)
    quantize = backbone_nodes(model) - set(exclude)
    props = {p.key: p.value for p in model.metadata_props}
    used = Recipe(**{**asdict(recipe), "num_images": len(reader)})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="singleshot-quant-") as tmp:
        src = Path(tmp) / "float.onnx"
        onnx.save(model, str(src))
        dst = Path(tmp) / "int8.onnx"
        # No Q/DQ on conv outputs: a quantized output is only needed by a quantized consumer,
        # which adds its own; so the head convs' float outputs flow into the float tail.
        extra = {"ActivationSymmetric": recipe.symmetric_activations, "WeightSymmetric": True,
                 "CalibStridedMinMax": _chunk(len(reader)),
                 "OpTypesToExcludeOutputQuantization": ["Conv"]}
        try:
            # onnxruntime logs an advice to pre-process at every call, on the root logger, and
            # prints histogram progress on stdout, where a library must not write
            logging.disable(logging.WARNING)
            with contextlib.redirect_stdout(StringIO()):
                quantize_static(
                    str(src), str(dst), reader,
                    quant_format=QuantFormat.QDQ if recipe.format == "qdq" else QuantFormat.QOperator,
                    per_channel=recipe.per_channel,
                    activation_type=QuantType.QUInt8 if recipe.activations == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, nodes_to_quantize=sorted(quantize),
                    # calibrate only the backbone's op types: onnxruntime's histogram collector
                    # (entropy, percentile) stacks each tensor over images and fails on the tail's
                    # data-dependent shapes (NMS, TopK, Gather outputs)
                    op_types_to_quantize=sorted({n.op_type for n in model.graph.node
                                                 if n.name in quantize}),
                    calibrate_method=methods[recipe.method], extra_options=extra,
                    calibration_cache_path=str(calibration_cache) if calibration_cache else None)
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"quantization failed: {str(err).splitlines()[0][:300]}") from None
        finally:
            logging.disable(logging.NOTSET)
        q = onnx.load(str(dst))
    if exclude:
        _unquantize_inputs(q, model, set(exclude))
    del q.metadata_props[:]
    props["quantization"] = json.dumps({**asdict(used), "float_nodes": sorted(exclude)})
    for key, value in props.items():
        q.metadata_props.add(key=key, value=value)
    with atomic_path(out) as tmp:
        onnx.save(q, str(tmp))
    return out


def _unquantize_inputs(model: onnx.ModelProto, float_model: onnx.ModelProto,
                       nodes: set[str]) -> None:
    """Feed the float ``nodes`` their inputs' float values. A tensor that a quantized node also
    reads is quantized once and every reader is given its DequantizeLinear output, so a conv
    kept in float would still see int8 rounding. The QuantizeLinear's input is the float value,
    except where the quantizer removed a Relu by folding it into the quantization (the conv
    before it then writes the Relu's output name with values before the Relu): that Relu is put
    back for the float readers. Q/DQ pairs left without readers are removed."""
    producer = tensor_producers(model)
    kept = {n.name for n in model.graph.node}
    float_nodes = {n.name: n for n in float_model.graph.node}
    float_producer = tensor_producers(float_model)
    added: dict[str, str] = {}
    for node in list(model.graph.node):
        if node.name not in nodes or node.name not in float_nodes:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                continue
            fp = float_producer.get(float_nodes[node.name].input[i])
            if fp is None or fp.name in kept:
                node.input[i] = q.input[0]
            elif fp.op_type == "Relu":
                if q.input[0] not in added:
                    added[q.input[0]] = q.input[0] + "_float_relu"
                    model.graph.node.append(onnx.helper.make_node(
                        "Relu", [q.input[0]], [added[q.input[0]]], name=fp.name + "_float"))
                node.input[i] = added[q.input[0]]
            # any other removed op: the reader keeps the dequantized value
    from onnxruntime.quantization.onnx_model import ONNXModel

    while True:  # prune what nobody reads any more
        read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(n.output) & read]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    wrapped = ONNXModel(model)  # edits `model` in place
    wrapped.clean_initializers()  # their scales and zero points
    wrapped.topological_sort()  # the Relus put back were appended at the end


def tail_op_types(model: onnx.ModelProto) -> dict[str, int]:
    """Op-type counts of the nodes after the last convolutions (those that feed none), without
    the DequantizeLinear that turns a QOperator conv's output back to float."""
    import collections

    name_nodes(model)
    feed = backbone_nodes(model)
    return dict(collections.Counter(n.op_type for n in model.graph.node
                                    if n.name not in feed and n.op_type != "DequantizeLinear"))


# Ops that only move or reshape data: a value read through them is still the value before.
_LAYOUT_OPS = ("ReorderInput", "ReorderOutput", "Transpose", "Reshape", "Identity")


def runtime_conv_kernels(model: onnx.ModelProto) -> dict[str, int]:
    """How onnxruntime runs the convolutions of ``model`` on this CPU, read from the graph it
    optimizes (``SessionOptions.optimized_model_filepath``; its QDQ fusions depend on the ISA):
    ``int8`` kernels (QLinearConv...), ``float`` convs on float inputs, and ``dequantized``
    float convs that read a DequantizeLinear output (int8-rounded values or weights)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="singleshot-opt-") as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        optimized = onnx.load(opts.optimized_model_filepath)
    dq: set[str] = set()  # DequantizeLinear outputs, also through layout ops (NCHWc reorders)
    for n in optimized.graph.node:  # the optimized graph is topologically sorted
        if n.op_type == "DequantizeLinear" or (n.op_type in _LAYOUT_OPS and n.input[0] in dq):
            dq.update(n.output)
    counts = {"int8": 0, "float": 0, "dequantized": 0}
    for n in optimized.graph.node:
        if "Conv" in n.op_type and ("QLinear" in n.op_type or "Integer" in n.op_type):
            counts["int8"] += 1  # QLinearConv, ConvInteger, NhwcQLinearConv... whatever the ISA
        elif n.op_type in ("Conv", "FusedConv"):
            counts["dequantized" if set(n.input) & dq else "float"] += 1
    return counts
