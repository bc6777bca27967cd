"""The NMS constants of zoo graphs (score and IoU thresholds, caps), read and rewritten."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..core.nms import NmsParams
from ..errors import ModelError
from .edit import tensor_producers


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
    producers = tensor_producers(model)
    topk = [n for n in model.graph.node if n.op_type == "TopK" and len(n.input) > 1]
    found, seen = [], set()
    stack = [(t, 1, t.input[1]) for t in topk]  # K itself may be the constant
    while stack:
        consumer, idx, tensor = stack.pop()
        value = _const_value(model, tensor)
        if value is not None and value.size == 1:
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


def _cap_constants(model: onnx.ModelProto,
                   cap: int) -> list[tuple[onnx.NodeProto, int, np.ndarray]]:
    """The constants on the TopK path that hold the detection cap ``cap``."""
    return [(n, i, v) for n, i, v in _topk_k_constants(model) if float(v.reshape(-1)[0]) == cap]


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
        hits = _cap_constants(model, old.max_det)
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


# Graph inputs that carry a zoo graph's post-processing options per call (see expose_nms_inputs).
NMS_INPUTS = ("nms_max_per_class", "nms_iou_threshold", "nms_score_threshold", "max_det",
              "class_mask")


def expose_nms_inputs(model: onnx.ModelProto, num_classes: int) -> onnx.ModelProto:
    """A copy of a zoo graph whose post-processing options are inputs, so that one session serves
    any thresholds per call: ``nms_max_per_class`` int64 [1], ``nms_iou_threshold`` float [1],
    ``nms_score_threshold`` float [1] (the NonMaxSuppression inputs), ``max_det`` int64 [1] (every
    constant on the TopK path that equals the graph's cap, cast to its type) and ``class_mask``
    float [1, C, 1], multiplied into the scores NonMaxSuppression reads (0: that class never
    selected; the scores the graph outputs are unchanged). ModelError when the graph has no
    single NMS node or no cap constant on its TopK path."""
    from onnx import TensorProto, helper

    old = read_nms_params(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    node = _nms_node(out)
    if node is None or old is None:
        raise ModelError("graph has no single NonMaxSuppression node to drive per call")
    if any(len(node.input) <= i or not node.input[i] or _const_value(out, node.input[i]) is None
           for i in (2, 3, 4)):  # computed thresholds: replacing them would change the graph
        raise ModelError("the graph computes its NMS thresholds; they cannot become inputs")
    hits = _cap_constants(out, old.max_det)
    if not hits:
        raise ModelError(f"no constant for the detection cap of {old.max_det} on the TopK path")
    g = out.graph
    while len(node.input) < 5:
        node.input.append("")
    g.input.extend([
        helper.make_tensor_value_info("nms_max_per_class", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("nms_iou_threshold", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("nms_score_threshold", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("max_det", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("class_mask", TensorProto.FLOAT, [1, num_classes, 1]),
    ])
    node.input[2], node.input[3], node.input[4] = NMS_INPUTS[:3]
    masked = node.input[1] + "/class_masked"
    mul = helper.make_node("Mul", [node.input[1], "class_mask"], [masked],
                           name="singleshot/class_mask")
    node.input[1] = masked
    new_nodes = []
    for k, (n, i, v) in enumerate(hits):
        cast = f"singleshot/max_det{k}"
        new_nodes += [
            helper.make_node("Cast", ["max_det"], [cast + "_cast"],
                             to=helper.np_dtype_to_tensor_dtype(v.dtype), name=cast + "_cast"),
            helper.make_node("Reshape", [cast + "_cast", cast + "_shape"], [cast],
                             name=cast + "_reshape"),
        ]
        g.initializer.append(numpy_helper.from_array(np.asarray(v.shape, np.int64), cast + "_shape"))
        n.input[i] = cast
    nodes = new_nodes + list(g.node)  # they read graph inputs only: first
    nodes.insert(next(k for k, n in enumerate(nodes) if n is node), mul)  # right before NMS
    del g.node[:]
    g.node.extend(nodes)
    return out


def nms_feeds(params: NmsParams, num_classes: int, classes: np.ndarray | None = None) -> dict:
    """The values of :func:`expose_nms_inputs`'s inputs for ``params``; ``classes``: 0-based
    class indices to keep (None: all)."""
    mask = np.ones((1, num_classes, 1), np.float32)
    if classes is not None:
        mask[:] = 0
        mask[0, np.asarray(classes, np.int64), 0] = 1
    values = (np.asarray([params.max_per_class], np.int64),
              np.asarray([params.iou_threshold], np.float32),
              np.asarray([params.score_threshold], np.float32),
              np.asarray([params.max_det], np.int64), mask)
    return dict(zip(NMS_INPUTS, values))
