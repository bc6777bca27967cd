"""The export parity check: tie order is free, wrong post-processing is caught."""

import numpy as np
import onnx
import pytest
import torch

from singleshot.core.anchors import DefaultBoxConfig, default_boxes
from singleshot.core.nms import postprocess_raw
from singleshot.export.exporter import build_onnx, export_onnx
from singleshot.export.parity import check_parity, match_detections, sample_input
from singleshot.runtime.session import make_session


def _saturated(make_model):
    """A tiny model whose softmax saturates: class logits x1000, so hundreds of boxes score
    exactly 1.0 and NMS visits tied boxes in an order onnxruntime and numpy need not share."""
    model = make_model(seed=3)
    with torch.no_grad():
        for head in model.conf:
            head.weight.mul_(1000.0)
            head.bias.mul_(1000.0)
    return model


def test_export_accepts_saturated_scores(make_model, tmp_path):
    """A correct export is never refused: every one of the 200 scores is exactly 1.0, tie
    order differs, and the check still passes - while the graph reproduces the numpy
    reference's detections as a set of scores and stays a valid NMS of its own heads."""
    from singleshot.core.coder import decode, softmax
    from singleshot.core.nms import nms_violations

    model = _saturated(make_model)
    out = tmp_path / "sat.onnx"
    report = export_onnx(model, out, opset=13)
    assert report.detections == 200 and report.unmatched == 0 and report.probe_detections > 20
    proto = onnx.load(str(out))
    x = sample_input(300)
    b, l, s = (o[0] for o in make_session(proto).run(None, {"image": x}))
    assert (s == 1.0).all() and len(s) == 200
    with torch.no_grad():
        loc, conf = (t.numpy()[0] for t in model(torch.from_numpy(x)))
    anchors = default_boxes(DefaultBoxConfig.ssd300())
    assert nms_violations((b, l, s), decode(loc.T, anchors), softmax(conf, axis=0)[1:]) == []


def test_export_check_refuses_a_wrong_post_processing(tiny_model):
    """The check has teeth: default boxes moved by 2% in the graph's decoding are caught on the
    model's heads and on the probe."""
    from singleshot.errors import ModelError

    proto = build_onnx(tiny_model, opset=13)
    for init in proto.graph.initializer:
        if init.name == "post/anchor_wh":
            arr = onnx.numpy_helper.to_array(init) * 1.02
            init.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), init.name))
    with pytest.raises(ModelError, match="post-processing"):
        check_parity(proto, tiny_model)


def test_parity_check_ignores_tie_order_on_saturated_heads(make_model):
    """On saturated heads (every kept score exactly 1.0) a runtime that visits tied boxes in
    another order - here the numpy NMS over the boxes in reverse order - keeps other boxes than
    the reference: the old count of unmatched detections refused such an export; the check
    accepts it, and still refuses a result that no tie order explains."""
    from singleshot.core.nms import NmsParams
    from singleshot.export.parity import postprocess_problems

    model = _saturated(make_model)
    with torch.no_grad():
        loc, conf = (t.numpy()[0] for t in model(torch.from_numpy(sample_input(300))))
    anchors = default_boxes(DefaultBoxConfig.ssd300())
    ref = postprocess_raw(loc, conf, anchors)
    other = postprocess_raw(loc[:, ::-1], conf[:, ::-1], anchors[::-1])  # ties visited backwards
    assert (ref[2] == 1.0).all() and (other[2] == 1.0).all() and len(other[2]) == 200
    assert match_detections(other, ref) > 2  # what the old check counted as "unmatched"
    problems, differ = postprocess_problems(other, loc, conf, anchors, NmsParams())
    assert problems == [] and differ == match_detections(other, ref)
    broken = (other[0] + 0.01, other[1], other[2])
    assert postprocess_problems(broken, loc, conf, anchors, NmsParams())[0]
