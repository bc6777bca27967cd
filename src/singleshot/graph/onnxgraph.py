"""Reading and adjusting detector graphs: which contract a graph follows, its spec from metadata,
the NMS constants of zoo graphs (read and rewritten), and the facts ``singleshot info`` prints."""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError
from ..core.nms import NmsParams
from ..core.spec import ModelSpec, zoo_spec

QOPERATOR_OPS = {"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QLinearAdd",
                 "QLinearMul", "QLinearConcat", "QLinearSigmoid", "QLinearGlobalAveragePool"}


@dataclass(frozen=True)
class GraphIO:
    """Names of a detector graph's tensors. For ``zoo``: outputs (bboxes, labels, scores);
    for ``raw``: (loc, conf)."""

    contract: str
    input: str
    input_shape: tuple
    input_dtype: str
    outputs: tuple[str, ...]


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load an ONNX file with a one-line error for missing or damaged files."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such model file")
    if p.stat().st_size == 0:
        raise ModelError(f"{p}: empty file (0 bytes)")
    try:
        model = onnx.load(str(p))
    except Exception as err:  # onnx raises DecodeError and others from protobuf
        raise ModelError(f"{p}: not a valid ONNX model ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:150] if str(err) else ''})") from None
    if not model.graph.node:
        raise ModelError(f"{p}: ONNX file has an empty graph")
    return model


def _shape(vi: onnx.ValueInfoProto) -> tuple:
    dims = vi.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)


def _dtype(vi: onnx.ValueInfoProto) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name


def graph_io(model: onnx.ModelProto, name: str = "model") -> GraphIO:
    """Tell the contract from the outputs: 3 outputs (boxes, int64 labels, scores) -> zoo,
    2 rank-3 float outputs (loc [N,4,A], conf [N,C+1,A]) -> raw. ModelError otherwise."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(_shape(inputs[0])) != 4:
        desc = ", ".join(f"{i.name}{list(_shape(i))}" for i in inputs) or "none"
        raise ModelError(f"{name}: expected one image input [N,3,H,W], the graph has: {desc}")
    inp = inputs[0]
    outs = list(model.graph.output)
    names = [o.name for o in outs]
    if len(outs) == 3:
        by_name = {o.name: o for o in outs}
        if {"bboxes", "labels", "scores"} <= by_name.keys():
            order = ("bboxes", "labels", "scores")
        else:  # unnamed zoo-like graph: tell the outputs apart by dtype and rank
            labels = [o.name for o in outs if _dtype(o).startswith("int")]
            boxes = [o.name for o in outs if o.name not in labels and len(_shape(o)) == 3]
            scores = [o.name for o in outs if o.name not in labels + boxes]
            if not (len(labels) == len(boxes) == len(scores) == 1):
                raise ModelError(f"{name}: outputs {names} are not bboxes/labels/scores")
            order = (boxes[0], labels[0], scores[0])
        return GraphIO("zoo", inp.name, _shape(inp), _dtype(inp), order)
    if len(outs) == 2 and all(len(_shape(o)) == 3 for o in outs):
        by_name = {o.name: o for o in outs}
        if {"loc", "conf"} <= by_name.keys():
            order = ("loc", "conf")
        else:
            four = [o.name for o in outs if _shape(o)[1] == 4]
            if len(four) != 1:
                raise ModelError(f"{name}: cannot tell loc from conf among outputs {names}")
            order = (four[0], next(n for n in names if n != four[0]))
        return GraphIO("raw", inp.name, _shape(inp), _dtype(inp), order)
    raise ModelError(f"{name}: outputs {names} follow neither the zoo contract "
                     "(bboxes, labels, scores) nor the raw-head one (loc, conf)")


def read_spec(model: onnx.ModelProto, io: GraphIO) -> ModelSpec:
    """The model's spec: its metadata, else zoo defaults sized from the input shape."""
    props = {p.key: p.value for p in model.metadata_props}
    h, w = io.input_shape[2], io.input_shape[3]
    size = h if isinstance(h, int) and h > 0 else 1200
    base = zoo_spec(300) if size == 300 else zoo_spec(1200)
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        base = base.with_(input_size=(h, w))
    base = base.with_(contract=io.contract)
    return ModelSpec.from_metadata(props, fallback=base)


# ---- NMS constants in zoo graphs -------------------------------------------------------------

def _const_value(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    return None


def _nms_node(model: onnx.ModelProto) -> onnx.NodeProto | None:
    nodes = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"]
    return nodes[0] if len(nodes) == 1 else None


def read_nms_params(model: onnx.ModelProto) -> NmsParams | None:
    """The thresholds baked into a zoo graph (None when it has no single NMS node). A value that
    is not a plain constant (computed in the graph) reads as the zoo default."""
    node = _nms_node(model)
    if node is None:
        return None
    vals = [(_const_value(model, node.input[i]) if len(node.input) > i and node.input[i] else None)
            for i in (2, 3, 4)]
    default = NmsParams()
    # An absent input means 0 boxes / IoU 0 / no score threshold (ONNX defaults).
    absent = [len(node.input) <= i or not node.input[i] for i in (2, 3, 4)]
    max_pc = int(vals[0].reshape(-1)[0]) if vals[0] is not None else \
        (0 if absent[0] else default.max_per_class)
    # float(str(float32)) gives the short decimal (0.05, not 0.0500000007) users typed.
    iou = float(str(vals[1].reshape(-1)[0])) if vals[1] is not None else \
        (0.0 if absent[1] else default.iou_threshold)
    score = float(str(vals[2].reshape(-1)[0])) if vals[2] is not None else \
        (float("-inf") if absent[2] else default.score_threshold)
    return NmsParams(score, iou, max_pc, _topk_cap(model) or max_pc)


def _topk_k_constants(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, int, np.ndarray]]:
    """Constants on the path that computes the K of the TopK after NMS: (node, input index, value)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    topk = [n for n in model.graph.node if n.op_type == "TopK" and len(n.input) > 1]
    found, seen = [], set()
    stack = [(None, -1, t.input[1]) for t in topk]
    while stack:
        consumer, idx, tensor = stack.pop()
        value = _const_value(model, tensor)
        if value is not None and consumer is not None and value.size == 1:
            found.append((consumer, idx, value))
            continue
        prod = producers.get(tensor)
        # Stop at NMS and at Shape/Size: what lies behind them is data, not the cap.
        if prod is None or id(prod) in seen or prod.op_type in ("NonMaxSuppression", "Shape",
                                                                  "Size"):
            continue
        seen.add(id(prod))
        stack.extend((prod, i, t) for i, t in enumerate(prod.input) if t)
    return found


def _topk_cap(model: onnx.ModelProto) -> int | None:
    caps = [int(v.reshape(-1)[0]) for _, _, v in _topk_k_constants(model)
            if 0 < float(v.reshape(-1)[0]) and float(v.reshape(-1)[0]).is_integer()]
    return max(caps) if caps else None


def rewrite_nms_params(model: onnx.ModelProto, new: NmsParams) -> onnx.ModelProto:
    """Set a zoo graph's NMS thresholds and detection cap (in place; returns the model).

    New constants get new names and only the NMS / TopK-path inputs are rewired, so a constant
    shared with other nodes is never changed under them.
    """
    node = _nms_node(model)
    if node is None:
        raise ModelError("graph has no single NonMaxSuppression node to adjust")
    old = read_nms_params(model)
    while len(node.input) < 5:
        node.input.append("")
    values = {2: np.asarray([new.max_per_class], dtype=np.int64),
              3: np.asarray([new.iou_threshold], dtype=np.float32),
              4: np.asarray([new.score_threshold], dtype=np.float32)}
    for i, value in values.items():
        name = f"singleshot/nms_input{i}"
        model.graph.initializer.extend([numpy_helper.from_array(value, name)])
        node.input[i] = name
    if old is not None and new.max_det != old.max_det:
        hits = [(n, i, v) for n, i, v in _topk_k_constants(model)
                if float(v.reshape(-1)[0]) == float(old.max_det)]
        if not hits:
            raise ModelError(
                f"cannot change this graph's detection cap of {old.max_det}: no constant found "
                "on its TopK path (export a raw-head graph for other caps)")
        for k, (n, i, v) in enumerate(hits):
            name = f"singleshot/topk_cap{k}"
            model.graph.initializer.extend([numpy_helper.from_array(
                np.full(v.shape, new.max_det, dtype=v.dtype), name)])
            n.input[i] = name
    return model


# ---- description for `singleshot info` -------------------------------------------------------

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
        "inputs": [{"name": i.name, "shape": list(_shape(i)), "dtype": _dtype(i)}
                   for i in model.graph.input if i.name not in inits],
        "outputs": [{"name": o.name, "shape": list(_shape(o)), "dtype": _dtype(o)}
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
        if io.contract == "zoo":
            nms = read_nms_params(model)
            info["nms"] = nms.__dict__ if nms else None
    except ModelError as err:
        info["contract"] = None
        info["contract_error"] = str(err)
    info["quantization"] = quantization_info(model)
    return info


def inline_constant_identities(model: onnx.ModelProto) -> int:
    """Replace ``Identity(initializer)`` nodes by initializers of their own (in place).

    torch's exporter shares equal constants (e.g. the zero biases of several convs) through
    Identity nodes; quantizers then no longer see those biases as constants. Returns the number
    of nodes removed."""
    inits = {i.name: i for i in model.graph.initializer}
    graph_outputs = {o.name for o in model.graph.output}
    keep, added = [], []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and \
                node.output[0] not in graph_outputs:
            copy_ = onnx.TensorProto()
            copy_.CopyFrom(inits[node.input[0]])
            copy_.name = node.output[0]
            added.append(copy_)
        else:
            keep.append(node)
    if added:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        model.graph.initializer.extend(added)
    used = {i for n in model.graph.node for i in n.input}
    unused = [i for i in model.graph.initializer if i.name not in used and
              i.name not in graph_outputs]
    for init in unused:
        model.graph.initializer.remove(init)
    return len(added)


def with_outputs(model: onnx.ModelProto, names: tuple[str, ...]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the intermediate tensors ``names`` (e.g. the heads
    ``loc``/``conf`` inside a zoo graph, for parity checks)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend([onnx.helper.make_empty_tensor_value_info(n) for n in names])
    return probe
