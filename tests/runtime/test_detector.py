"""The Detector: zoo and raw graphs, thresholds, wrong model files, any decoded image."""

import numpy as np
import onnx
import pytest
from PIL import Image

from singleshot.core.anchors import default_boxes
from singleshot.core.nms import NmsParams, postprocess_raw
from singleshot.errors import ImageError, ModelError, UsageError
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


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("graph", ["zoo", "raw"])
def test_per_call_options_equal_a_detector_built_with_them(tiny_zoo_onnx, tiny_raw_onnx, photo,
                                                           backend, graph):
    """det(image, conf=, iou=, max_det=) applies to that call only, gives what a Detector built
    with those options gives, and never builds another session (thresholds are graph inputs)."""
    model = tiny_zoo_onnx if graph == "zoo" else tiny_raw_onnx
    det = Detector(model, backend=backend, precision="fp32")
    session = getattr(det.backend, "session", None) or det.backend.compiled
    base = det(photo)
    for opts in ({"conf": 0.3}, {"conf": 0.02, "iou": 0.3, "max_det": 300}, {"max_det": 7},
                 {"iou": 0.7}):
        got = det(photo, **opts)
        ref = Detector(model, backend=backend, precision="fp32", **opts)(photo)
        np.testing.assert_array_equal(got.labels, ref.labels)
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-6)
        np.testing.assert_allclose(got.xyxy, ref.xyxy, atol=1e-4)
    assert (getattr(det.backend, "session", None) or det.backend.compiled) is session
    again = det(photo)  # the detector's own options are untouched
    np.testing.assert_array_equal(again.labels, base.labels)
    np.testing.assert_allclose(again.scores, base.scores)


@pytest.mark.parametrize("graph", ["zoo", "raw"])
def test_classes_filter_before_the_cap(tiny_zoo_onnx, tiny_raw_onnx, photo, graph):
    """classes= keeps only those classes as if the others scored zero before the per-image cap:
    max_det=5 gives the 5 best of those classes, not what is left of the overall top 5."""
    det = Detector(tiny_zoo_onnx if graph == "zoo" else tiny_raw_onnx)
    full = det(photo, max_det=1000, conf=0.01)
    counts = np.bincount(full.labels)
    label = int(np.argsort(counts)[-2])  # a class with detections, not the most frequent
    cat, name = int(det.spec.category_ids[label - 1]), det.spec.class_names[label - 1]
    expect = full[full.labels == label]
    assert len(expect) > 1 and (det(photo, max_det=len(expect), conf=0.01).labels != label).any()
    for classes in ([cat], [name], name, (cat, cat)):
        got = det(photo, max_det=len(expect), conf=0.01, classes=classes)
        assert (got.labels == label).all() and len(got) == len(expect)
        np.testing.assert_allclose(got.scores, expect.scores, atol=1e-6)
    with pytest.raises(UsageError, match="unknown class 'no such class'"):
        det(photo, classes=["no such class"])


def test_a_list_gives_a_list(tiny_zoo_onnx, photo):
    det = Detector(tiny_zoo_onnx)
    rgb = load_image(photo)
    out = det([photo, rgb, photo.read_bytes()], conf=0.3)
    assert isinstance(out, list) and len(out) == 3
    for d in out:
        np.testing.assert_array_equal(d.labels, out[0].labels)
        assert d.scores.min() > 0.3


def test_graph_with_computed_thresholds_refuses_what_it_cannot_do(tiny_zoo_onnx, photo):
    proto = onnx.load(str(tiny_zoo_onnx))
    nms = next(n for n in proto.graph.node if n.op_type == "NonMaxSuppression")
    proto.graph.node.append(onnx.helper.make_node("Identity", [nms.input[3]], ["computed_iou"]))
    nms.input[3] = "computed_iou"
    det = Detector(proto)
    assert det.postprocessor.mode == "fixed"
    assert det(photo, conf=0.3).scores.min() > 0.3 and len(det(photo, max_det=3)) == 3
    for opts in ({"iou": 0.3}, {"classes": [1]}, {"conf": 0.01}):
        with pytest.raises(UsageError, match="computes its NMS thresholds"):
            det(photo, **opts)


def test_raw_head_graphs_run_whole_batches(tiny_raw_onnx, photo):
    """A raw-head graph takes a dynamic batch: one backend call for all images, then each
    image's post-processing - the same detections as one at a time."""
    from singleshot.data.synth import make_scene

    det = Detector(tiny_raw_onnx)
    assert det.batch_size is None
    images = [make_scene(8, i)[0] for i in range(3)] + [load_image(photo)]
    for d, im in zip(det.detect_batch(images, conf=0.1), images):
        ref = det.detect_array(im, conf=0.1)
        np.testing.assert_array_equal(d.labels, ref.labels)
        np.testing.assert_allclose(d.scores, ref.scores, atol=1e-5)
        np.testing.assert_allclose(d.xyxy, ref.xyxy, atol=1e-3)


def test_agnostic_option_on_every_graph_kind(make_model, photo, tmp_path):
    """agnostic=True: no two results of different classes overlap past the IoU; what is left is
    the per-class result minus the suppressed boxes; per call or per detector."""
    from singleshot.core.boxes import box_iou
    from singleshot.core.nms import agnostic_nms
    from singleshot.export.exporter import export_onnx

    two = make_model(num_classes=2)  # both classes score on the same anchors (shared boxes)
    export_onnx(two, tmp_path / "zoo.onnx", opset=13)
    export_onnx(two, tmp_path / "raw.onnx", opset=13, raw=True)
    for model in (tmp_path / "zoo.onnx", tmp_path / "raw.onnx"):
        det = Detector(model)
        plain = det(photo, conf=0.01, clip=False)  # suppression sees the unclipped boxes
        agn = det(photo, conf=0.01, agnostic=True, clip=False)
        keep = agnostic_nms(plain.xyxy, plain.scores, 0.5)
        assert len(keep) < len(plain), "the tiny model should report overlapping classes"
        assert np.allclose(agn.xyxy, plain.xyxy[keep]) and agn.names == [plain.names[i]
                                                                          for i in keep]
        iou = box_iou(agn.xyxy, agn.xyxy)
        np.fill_diagonal(iou, 0)
        assert (iou <= 0.5 + 1e-6).all()
        again = Detector(model, agnostic=True)(photo, conf=0.01, clip=False)
        assert np.allclose(again.xyxy, agn.xyxy)
        assert len(Detector(model, agnostic=True)(photo, conf=0.01, agnostic=False,
                                                  clip=False)) == len(plain)
    with pytest.raises(UsageError, match="agnostic"):
        Detector(tmp_path / "zoo.onnx")(photo, agnostic="yes")


def test_a_list_goes_on_past_a_bad_image_and_none_is_a_type_error(tiny_zoo_onnx, photo, tmp_path):
    det = Detector(tiny_zoo_onnx)
    missing = tmp_path / "missing.jpg"
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    out = det([photo, str(missing), junk])
    assert [d.error is None for d in out] == [True, False, False]
    assert out[0].path == str(photo) and len(out[0]) == len(det(photo))
    assert out[1].path == str(missing) and "missing.jpg" in out[1].error and len(out[1]) == 0
    assert out[1].to_dict()["error"] == out[1].error
    with pytest.raises(ImageError):
        det([photo, str(missing)], errors="raise")
    with pytest.raises(TypeError, match="path .* bytes, a PIL image, a uint8 array"):
        det(None)
    with pytest.raises(TypeError, match="int"):
        det(3)
    with pytest.raises(UsageError, match="unknown class"):  # an option: raised, not per image
        det([photo], classes=["no such class"])
