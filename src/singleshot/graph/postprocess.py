"""The zoo post-processing as an ONNX subgraph (decode + softmax + NonMaxSuppression + TopK).

Built with ``onnx.helper`` rather than traced from torch, so the same nodes work at every opset
from 10 on: only ops whose signature did not change between opsets 10 and 17+ are used (Reshape
instead of Squeeze/Unsqueeze, Softmax on the last axis, TopK without the opset-11 attributes,
Min on float because integer Min needs opset 12).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.coder import SCALE_WH, SCALE_XY
from ..core.nms import NmsParams

PREFIX = "post/"


def append_zoo_postprocess(model: onnx.ModelProto, anchors_cxcywh: np.ndarray, num_classes: int,
                           params: NmsParams = NmsParams(), loc: str = "loc",
                           conf: str = "conf", batched: bool = False) -> onnx.ModelProto:
    """Turn a raw-head graph (``loc`` [1,4,A], ``conf`` [1,C+1,A]) into the zoo contract.

    Outputs replace the graph's: ``bboxes`` float32 [1,nbox,4] (xyxy normalised, unclipped),
    ``labels`` int64 [1,nbox] (1..C), ``scores`` float32 [1,nbox], nbox <= params.max_det.

    ``batched`` (opset >= 12): the batched zoo contract for ``loc`` [N,4,A], ``conf`` [N,C+1,A]:
    ``bboxes`` [N,K,4], ``labels`` [N,K], ``scores`` [N,K] with K = ``params.max_det``, padded
    with zeros past ``num_detections`` int64 [N]; each image's detections are the ones the
    batch-1 graph gives it, in the same order.
    """
    g = model.graph
    a = anchors_cxcywh.shape[0]
    c1 = num_classes + 1

    def const(name: str, value) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value), PREFIX + name))
        return PREFIX + name

    def node(op: str, inputs: list[str], name: str, n_out: int = 1, **attrs) -> list[str]:
        outs = [f"{PREFIX}{name}" if n_out == 1 else f"{PREFIX}{name}_{i}" for i in range(n_out)]
        g.node.append(helper.make_node(op, inputs, outs, name=PREFIX + name, **attrs))
        return outs

    anc_xy = const("anchor_xy", anchors_cxcywh[None, :, :2].astype(np.float32))  # [1, A, 2]
    anc_wh = const("anchor_wh", anchors_cxcywh[None, :, 2:].astype(np.float32))  # [1, A, 2]
    i64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731

    # Box decoding, in the reference's operation order: (0.1*d)*a_wh + a_xy, exp(0.2*d)*a_wh.
    (loc_t,) = node("Transpose", [loc], "loc_t", perm=[0, 2, 1])  # [1, A, 4]
    (dxy,) = node("Slice", [loc_t, const("s0", i64([0])), const("s2", i64([2])),
                            const("ax2", i64([2]))], "dxy")  # [1, A, 2]
    (dwh,) = node("Slice", [loc_t, const("s2b", i64([2])), const("s4", i64([4])),
                            const("ax2b", i64([2]))], "dwh")  # [1, A, 2]
    (xy,) = node("Mul", [dxy, const("scale_xy", np.float32(SCALE_XY))], "dxy_s")
    (xy,) = node("Mul", [xy, anc_wh], "dxy_w")
    (xy,) = node("Add", [xy, anc_xy], "cxcy")
    (wh,) = node("Mul", [dwh, const("scale_wh", np.float32(SCALE_WH))], "dwh_s")
    (wh,) = node("Exp", [wh], "dwh_e")
    (wh,) = node("Mul", [wh, anc_wh], "wh")
    (half,) = node("Mul", [wh, const("half", np.float32(0.5))], "half_wh")
    (lt,) = node("Sub", [xy, half], "x1y1")
    (rb,) = node("Add", [xy, half], "x2y2")
    (boxes,) = node("Concat", [lt, rb], "boxes", axis=2)  # [1, A, 4] xyxy

    # Class probabilities: softmax over the C+1 logits on the last axis (valid at every opset).
    (conf_t,) = node("Transpose", [conf], "conf_t", perm=[0, 2, 1])  # [1, A, C+1]
    (prob,) = node("Softmax", [conf_t], "prob", axis=2)
    (prob,) = node("Transpose", [prob], "prob_t", perm=[0, 2, 1])  # [1, C+1, A]
    (fg,) = node("Slice", [prob, const("c1", i64([1])), const("cend", i64([c1])),
                           const("ax1", i64([1]))], "fg")  # [1, C, A]

    (sel,) = node("NonMaxSuppression", [
        boxes, fg, const("max_output_boxes_per_class", i64([params.max_per_class])),
        const("iou_threshold", np.asarray([params.iou_threshold], dtype=np.float32)),
        const("score_threshold", np.asarray([params.score_threshold], dtype=np.float32)),
    ], "nms")  # [K, 3] = (batch, class, box)
    if batched:
        return _batched_tail(model, node, const, boxes, fg, sel, a, params)
    (cls,) = node("Gather", [sel, const("i1", i64(1))], "cls", axis=1)  # [K]
    (bidx,) = node("Gather", [sel, const("i2", i64(2))], "bidx", axis=1)  # [K]
    (boxes2d,) = node("Reshape", [boxes, const("shape_a4", i64([-1, 4]))], "boxes2d")  # [A, 4]
    (sel_boxes,) = node("Gather", [boxes2d, bidx], "sel_boxes", axis=0)  # [K, 4]
    (flat,) = node("Reshape", [fg, const("shape_flat", i64([-1]))], "fg_flat")  # [C*A]
    (lin,) = node("Mul", [cls, const("num_anchors", i64(a))], "cls_off")
    (lin,) = node("Add", [lin, bidx], "lin")  # [K] index into C*A
    (sel_scores,) = node("Gather", [flat, lin], "sel_scores", axis=0)  # [K]

    # k = min(K, max_det); TopK sorts descending (opset-10 TopK has no largest/sorted attributes,
    # their later defaults are the same).
    (kshape,) = node("Shape", [sel_scores], "k_all")  # [1]
    (kf,) = node("Cast", [kshape], "k_all_f", to=TensorProto.FLOAT)
    (kf,) = node("Min", [kf, const("max_det", np.asarray([params.max_det], dtype=np.float32))],
                 "k_min")
    (k,) = node("Cast", [kf], "k", to=TensorProto.INT64)
    top_v, top_i = node("TopK", [sel_scores, k], "topk", n_out=2, axis=0)  # [k], [k]
    (out_boxes,) = node("Gather", [sel_boxes, top_i], "top_boxes", axis=0)  # [k, 4]
    (out_cls,) = node("Gather", [cls, top_i], "top_cls", axis=0)  # [k]
    (out_lab,) = node("Add", [out_cls, const("one", i64(1))], "top_labels")  # 1..C

    g.node.append(helper.make_node("Reshape", [out_boxes, const("shape_b", i64([1, -1, 4]))],
                                   ["bboxes"], name=PREFIX + "bboxes"))
    g.node.append(helper.make_node("Reshape", [out_lab, const("shape_l", i64([1, -1]))],
                                   ["labels"], name=PREFIX + "labels"))
    g.node.append(helper.make_node("Reshape", [top_v, const("shape_s", i64([1, -1]))],
                                   ["scores"], name=PREFIX + "scores"))
    del g.output[:]
    g.output.extend([
        helper.make_tensor_value_info("bboxes", TensorProto.FLOAT, [1, "nbox", 4]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, [1, "nbox"]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "nbox"]),
    ])
    return model


def postprocess_model(anchors_cxcywh: np.ndarray, num_classes: int,
                      params: NmsParams = NmsParams(), opset: int = 13) -> onnx.ModelProto:
    """A standalone graph ``loc`` [1,4,A], ``conf`` [1,C+1,A] -> the zoo outputs: raw-head models
    get onnxruntime's C++ NMS (the numpy one in :mod:`singleshot.core.nms` is the reference, and
    slower when many classes have candidates)."""
    a = anchors_cxcywh.shape[0]
    graph = helper.make_graph([], "zoo_postprocess", [
        helper.make_tensor_value_info("loc", TensorProto.FLOAT, [1, 4, a]),
        helper.make_tensor_value_info("conf", TensorProto.FLOAT, [1, num_classes + 1, a]),
    ], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    return append_zoo_postprocess(model, anchors_cxcywh, num_classes, params)


def _batched_tail(model, node, const, boxes, fg, sel, a, params) -> onnx.ModelProto:
    """Per-image top-K of the NMS selection without a loop: the selected scores are scattered into
    a zero [N, C*A] map (unselected entries score 0, below any selected one), TopK takes each
    row's best K, and positions past an image's selections are padded with zeros."""
    g = model.graph
    i64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    (b,) = node("Gather", [sel, const("b_i0", i64(0))], "b_img", axis=1)  # [S]
    (cls,) = node("Gather", [sel, const("b_i1", i64(1))], "b_cls", axis=1)  # [S]
    (bidx,) = node("Gather", [sel, const("b_i2", i64(2))], "b_box", axis=1)  # [S]
    (sel_scores,) = node("GatherND", [fg, sel], "b_sel_scores")  # [S]
    (lin,) = node("Mul", [cls, const("b_num_anchors", i64(a))], "b_cls_off")
    (lin,) = node("Add", [lin, bidx], "b_lin")  # [S] index into C*A
    (b2,) = node("Reshape", [b, const("b_col", i64([-1, 1]))], "b_img_col")
    (lin2,) = node("Reshape", [lin, const("b_col2", i64([-1, 1]))], "b_lin_col")
    (idx,) = node("Concat", [b2, lin2], "b_idx", axis=1)  # [S, 2]
    (shape,) = node("Shape", [fg], "b_fg_shape")  # [N, C, A]
    (n,) = node("Slice", [shape, const("b_s0", i64([0])), const("b_s1", i64([1]))], "b_n")
    (dense_shape,) = node("Concat", [n, const("b_ca", i64([-1]))], "b_dense_shape", axis=0)
    (flat,) = node("Reshape", [fg, dense_shape], "b_fg_flat")  # [N, C*A]
    (zeros,) = node("Mul", [flat, const("b_zero", np.float32(0))], "b_zeros")
    (dense,) = node("ScatterND", [zeros, idx, sel_scores], "b_dense")  # [N, C*A]
    top_v, top_i = node("TopK", [dense, const("max_det", i64([params.max_det]))], "b_topk",
                        n_out=2, axis=1)  # [N, K]
    (cls_k,) = node("Div", [top_i, const("b_a", i64(a))], "b_top_cls")
    (box_k,) = node("Mod", [top_i, const("b_a2", i64(a))], "b_top_box")
    (box_k3,) = node("Unsqueeze", [box_k, const("b_ax2", i64([2]))], "b_top_box3") if opset >= 13 \
        else node("Unsqueeze", [box_k], "b_top_box3", axes=[2])
    (sel_boxes,) = node("GatherND", [boxes, box_k3], "b_top_boxes", batch_dims=1)  # [N, K, 4]
    (valid,) = node("Greater", [top_v, const("b_zero2", np.float32(0))], "b_valid")  # [N, K]
    (labels,) = node("Add", [cls_k, const("b_one", i64(1))], "b_labels")
    (valid3,) = node("Unsqueeze", [valid, const("b_ax2b", i64([2]))], "b_valid3") if opset >= 13 \
        else node("Unsqueeze", [valid], "b_valid3", axes=[2])
    (count,) = node("Cast", [valid], "b_valid_i", to=TensorProto.INT64)
    g.node.append(helper.make_node("Where", [valid3, sel_boxes, const("b_zb", np.float32(0))],
                                   ["bboxes"], name=PREFIX + "bboxes"))
    g.node.append(helper.make_node("Where", [valid, labels, const("b_zl", i64(0))], ["labels"],
                                   name=PREFIX + "labels"))
    g.node.append(helper.make_node("Identity", [top_v], ["scores"], name=PREFIX + "scores"))
    if opset >= 13:
        g.node.append(helper.make_node("ReduceSum", [count, const("b_ax1", i64([1]))],
                                       ["num_detections"], keepdims=0,
                                       name=PREFIX + "num_detections"))
    else:
        g.node.append(helper.make_node("ReduceSum", [count], ["num_detections"], axes=[1],
                                       keepdims=0, name=PREFIX + "num_detections"))
    del g.output[:]
    g.output.extend([
        helper.make_tensor_value_info("bboxes", TensorProto.FLOAT, ["batch", params.max_det, 4]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch", params.max_det]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", params.max_det]),
        helper.make_tensor_value_info("num_detections", TensorProto.INT64, ["batch"]),
    ])
    return model


def rebatch_zoo(model: onnx.ModelProto) -> onnx.ModelProto:
    """A batch-1 zoo graph made by singleshot (heads named ``loc``/``conf`` inside) -> the same
    network in the batched zoo contract (``zoo-batch``, dynamic batch): the raw part is cut out
    at the heads, the head-flattening Reshapes that say batch 1 are told to copy the batch
    instead (shape 0), and the batched post-processing is appended with the graph's own NMS
    constants and default boxes. ModelError for graphs it does not know how to cut."""
    import onnx.utils

    from ..core.anchors import default_boxes
    from ..errors import ModelError
    from .contract import graph_io, read_spec
    from .nms_constants import read_nms_params

    io_ = graph_io(model)
    inner = {o for n in model.graph.node for o in n.output}
    if io_.contract != "zoo" or not {"loc", "conf"} <= inner:
        raise ModelError("only singleshot's own zoo exports (heads named loc/conf) can be re-batched")
    spec, params = read_spec(model, io_), read_nms_params(model) or NmsParams()
    typed = onnx.shape_inference.infer_shapes(model)
    raw = onnx.utils.Extractor(typed).extract_model([io_.input], ["loc", "conf"])
    del raw.graph.value_info[:]  # shapes inferred for batch 1
    raw.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    for out in raw.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "batch"
    producers = {o: n for n in raw.graph.node for o in n.output}
    consts = {i.name: i for i in raw.graph.initializer}
    for node in raw.graph.node:
        if node.op_type != "Reshape":
            continue
        src = producers.get(node.input[1])
        tensor = consts.get(node.input[1]) or (src.attribute[0].t if src is not None and
                                               src.op_type == "Constant" else None)
        if tensor is None:
            continue
        shape = numpy_helper.to_array(tensor)
        if shape.ndim == 1 and len(shape) == 3 and shape[0] == 1:
            tensor.CopyFrom(numpy_helper.from_array(np.concatenate([[0], shape[1:]]).astype(
                shape.dtype), tensor.name))
    anchors = default_boxes(spec.default_boxes)
    out = append_zoo_postprocess(raw, anchors, spec.num_classes, params, batched=True)
    del out.metadata_props[:]
    for key, value in spec.with_(contract="zoo-batch").to_metadata().items():
        out.metadata_props.add(key=key, value=value)
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    onnx.checker.check_model(out)
    return out
