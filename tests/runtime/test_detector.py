"""The Detector: zoo and raw graphs, thresholds, wrong model files, any decoded image."""

import numpy as np
import onnx
import pytest
from PIL import Image

from singleshot.core.anchors import default_boxes
from singleshot.core.nms import NmsParams, postprocess_raw
from singleshot.errors import ImageError, ModelError
from singleshot.export.parity import match_detections
from singleshot.io.images import load_image
from singleshot.runtime.detector import Detector
from singleshot.runtime.preprocess import preprocess
from singleshot.runtime.session import make_session


def test_zoo_and_raw_graphs_agree(tiny_zoo_onnx, tiny_raw_onnx, photo):
    zoo, raw = Detector(tiny_zoo_onnx), Detector(tiny_raw_onnx)
    assert zoo.io.contract == "zoo" and raw.io.contract == "raw"
    a, b = zoo(photo), raw(photo)
    assert len(a) > 10
    assert match_detections((a.xyxy, a.labels, a.scores), (b.xyxy, b.labels, b.scores),
                            box_tol=1e-2, score_tol=1e-5) == 0
    assert set(a.timings) == {"decode", "preprocess", "inference", "postprocess"}


def _raw_reference(tiny_raw_onnx, photo, params):
    det = Detector(tiny_raw_onnx)
    x = preprocess(load_image(photo), det.spec)
    loc, conf = make_session(str(tiny_raw_onnx)).run(None, {"image": x})
    return postprocess_raw(loc[0], conf[0], default_boxes(det.spec.default_boxes), params)


@pytest.mark.parametrize("params", [
    NmsParams(0.2, 0.5, 200, 200),     # stricter score: applied to the outputs
    NmsParams(0.01, 0.5, 200, 200),    # looser score: graph constant rewritten
    NmsParams(0.05, 0.3, 200, 200),    # other IoU: rewritten
    NmsParams(0.05, 0.5, 200, 17),     # fewer detections: cut
    NmsParams(0.02, 0.6, 300, 300),    # more detections than the graph's cap: rewritten
])
def test_zoo_thresholds_are_applied(tiny_zoo_onnx, tiny_raw_onnx, photo, params):
    det = Detector(tiny_zoo_onnx, conf=params.score_threshold, iou=params.iou_threshold,
                   max_det=params.max_det)
    x = preprocess(load_image(photo), det.spec)
    got = det.infer(x)
    ref = _raw_reference(tiny_raw_onnx, photo, params)
    assert len(got[2]) == len(ref[2])
    assert match_detections(got, ref, box_tol=1e-4, score_tol=1e-5) <= max(1, len(ref[2]) // 100)
    assert (got[2] > params.score_threshold).all()


def test_default_thresholds_leave_graph_untouched(tiny_zoo_onnx):
    det = Detector(tiny_zoo_onnx)
    assert det.params == det.graph_params == NmsParams()


def test_wrong_model_files(tmp_path):
    from onnx import TensorProto, helper

    with pytest.raises(ModelError, match="no such model"):
        Detector(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage" * 50)
    with pytest.raises(ModelError, match="junk.onnx"):
        Detector(junk)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    wrong = tmp_path / "wrong_inputs.onnx"
    onnx.save(helper.make_model(g), str(wrong))
    with pytest.raises(ModelError, match="expected one image input"):
        Detector(wrong)


def test_detector_takes_any_decoded_image(photo):
    """Grayscale [H, W], [H, W, 1], RGBA [H, W, 4] arrays and PIL images in any mode give the
    detections of the same image as RGB; other arrays get a clear ImageError."""
    det = Detector("demo", conf=0.3)
    rgb = load_image(photo)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    as_rgb = det(np.repeat(gray[:, :, None], 3, axis=2))
    for image in (gray, gray[:, :, None], Image.fromarray(gray)):
        d = det(image)
        assert (d.width, d.height) == (rgb.shape[1], rgb.shape[0])
        np.testing.assert_array_equal(d.labels, as_rgb.labels)
        np.testing.assert_allclose(d.xyxy, as_rgb.xyxy)
    ref = det(rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    for image in (rgba, Image.fromarray(rgb), Image.fromarray(rgba, "RGBA")):
        d = det(image)
        np.testing.assert_array_equal(d.labels, ref.labels)
        np.testing.assert_allclose(d.scores, ref.scores)
    for bad, msg in ((rgb.astype(np.float32), "uint8"), (rgb[:, :, :2], "shape"),
                     (np.zeros((0, 5, 3), np.uint8), "shape")):
        with pytest.raises(ImageError, match=msg):
            det(bad)
