"""What a graph is: quantization format and types, and everything ``singleshot info`` shows."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import onnx

from ..errors import ModelError
from .contract import graph_io, load_model, read_spec, value_dtype, value_shape
from .nms_constants import read_nms_params

QOPERATOR_OPS = {"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QLinearAdd",
                 "QLinearMul", "QLinearConcat", "QLinearSigmoid", "QLinearGlobalAveragePool"}


def quantization_info(model: onnx.ModelProto) -> dict | None:
    """How a graph is quantized: format (QDQ / QOperator), activation and weight types, per-channel."""
    ops = collections.Counter(n.op_type for n in model.graph.node)
    if not (QOPERATOR_OPS & ops.keys()) and "DequantizeLinear" not in ops:
        return None
    fmt = "QOperator" if QOPERATOR_OPS & ops.keys() else "QDQ"
    inits = {i.name: i for i in model.graph.initializer}
    act_types, w_types, per_channel = set(), set(), False
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            act_types.add(onnx.helper.tensor_dtype_to_np_dtype(inits[n.input[2]].data_type).name)
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            w_types.add(onnx.helper.tensor_dtype_to_np_dtype(inits[n.input[0]].data_type).name)
            scale = inits.get(n.input[1])
            if scale is not None and int(np.prod(scale.dims or [1])) > 1:
                per_channel = True
        if n.op_type == "QLinearConv":
            w = inits.get(n.input[3])
            if w is not None:
                w_types.add(onnx.helper.tensor_dtype_to_np_dtype(w.data_type).name)
            ws = inits.get(n.input[4])
            if ws is not None and int(np.prod(ws.dims or [1])) > 1:
                per_channel = True
            zp = inits.get(n.input[2])
            if zp is not None:
                act_types.add(onnx.helper.tensor_dtype_to_np_dtype(zp.data_type).name)
    return {"format": fmt, "activations": sorted(act_types), "weights": sorted(w_types),
            "per_channel": per_channel,
            "quantized_ops": sum(v for k, v in ops.items() if k in QOPERATOR_OPS) or
            ops.get("QuantizeLinear", 0)}


def describe(path: str | os.PathLike) -> dict:
    """Everything ``singleshot info`` prints, as a JSON-ready dict."""
    model = load_model(path)
    inits = {i.name for i in model.graph.initializer}
    info: dict = {
        "path": str(path),
        "size_bytes": Path(path).stat().st_size,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "inputs": [{"name": i.name, "shape": list(value_shape(i)), "dtype": value_dtype(i)}
                   for i in model.graph.input if i.name not in inits],
        "outputs": [{"name": o.name, "shape": list(value_shape(o)), "dtype": value_dtype(o)}
                    for o in model.graph.output],
        "ops": dict(collections.Counter(n.op_type for n in model.graph.node).most_common()),
        "parameters": int(sum(int(np.prod(i.dims)) for i in model.graph.initializer)),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }
    try:
        io = graph_io(model, str(path))
        info["contract"] = io.contract
        spec = read_spec(model, io)
        info["spec"] = {"input_size": list(spec.input_size), "classes": spec.num_classes,
                        "anchors": spec.default_boxes.num_anchors,
                        "from_metadata": bool(info["metadata"].get("contract"))}
        if io.contract in ("zoo", "zoo-batch"):
            nms = read_nms_params(model)
            info["nms"] = nms.__dict__ if nms else None
    except ModelError as err:
        info["contract"] = None
        info["contract_error"] = str(err)
    info["quantization"] = quantization_info(model)
    return info
