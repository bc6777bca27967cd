"""NMS constants computed in zoo graphs never cut the outputs."""

import onnx

from singleshot.core.nms import NmsParams
from singleshot.io.images import load_image
from singleshot.runtime.detector import Detector
from singleshot.runtime.preprocess import preprocess
from singleshot.runtime.session import make_session


def test_computed_nms_constants_never_cut_outputs(tiny_zoo_onnx, photo):
    """A zoo graph whose thresholds are computed (not plain constants) reads as the zoo defaults,
    and without user overrides its outputs pass through untouched."""
    proto = onnx.load(str(tiny_zoo_onnx))
    nms = next(n for n in proto.graph.node if n.op_type == "NonMaxSuppression")
    for i in (2, 4):
        proto.graph.node.append(onnx.helper.make_node("Identity", [nms.input[i]], [f"computed{i}"]))
        nms.input[i] = f"computed{i}"
    from singleshot.graph.nms_constants import read_nms_params

    assert read_nms_params(proto) == NmsParams()
    det = Detector(proto)
    x = preprocess(load_image(photo), det.spec)
    raw = make_session(proto).run(None, {"image": x})
    got = det.infer(x)
    assert len(got[2]) == raw[2].shape[1] > 0
