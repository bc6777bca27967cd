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
                           conf: str = "conf") -> onnx.ModelProto:
    """Turn a raw-head graph (``loc`` [1,4,A], ``conf`` [1,C+1,A]) into the zoo contract.

    Outputs replace the graph's: ``bboxes`` float32 [1,nbox,4] (xyxy normalised, unclipped),
    ``labels`` int64 [1,nbox] (1..C), ``scores`` float32 [1,nbox], nbox <= params.max_det.
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
