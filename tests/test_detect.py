"""The Detector: zoo vs raw graphs, thresholds on zoo graphs, EXIF, and the bad-input corpus."""

import numpy as np
import onnx
import pytest
from PIL import Image

from helpers import make_corpus
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


def test_preprocess_matches_card(photo, tiny_zoo_onnx):
    """The card's recipe written out literally."""
    det = Detector(tiny_zoo_onnx)
    rgb = load_image(photo)
    img = Image.open(photo).convert("RGB").resize((300, 300), Image.BILINEAR)
    data = np.array(img).transpose(2, 0, 1).astype("float32")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    ref = np.zeros(data.shape).astype("float32")
    for i in range(3):
        ref[i] = (data[i] / 255 - mean[i]) / std[i]
    np.testing.assert_allclose(preprocess(rgb, det.spec)[0], ref, atol=1e-6)


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


def test_exif_orientation(tmp_path, tiny_zoo_onnx):
    img = Image.new("RGB", (64, 32), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif)
    assert load_image(path).shape == (64, 32, 3)
    assert load_image(path, exif=False).shape == (32, 64, 3)
    d = Detector(tiny_zoo_onnx)(path)
    assert (d.width, d.height) == (32, 64)
    d = Detector(tiny_zoo_onnx, exif=False)(path)
    assert (d.width, d.height) == (64, 32)


def test_odd_images_decode(tmp_path):
    good, bad = make_corpus(tmp_path / "c")
    for name in good:
        arr = load_image(tmp_path / "c" / name)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name
    g16 = load_image(tmp_path / "c" / "gray16.png")
    g8 = load_image(tmp_path / "c" / "gray.png")
    assert np.abs(g16.astype(int) - g8.astype(int)).max() <= 1  # scaled, not clipped to 255
    messages = {}
    for name in bad:
        with pytest.raises(ImageError) as err:
            load_image(tmp_path / "c" / name)
        messages[name] = str(err.value)
        assert name in messages[name] and "\n" not in messages[name]
    assert "empty" in messages["empty.jpg"]
    assert "truncated" in messages["truncated.jpg"]
    assert "not an image" in messages["notes.jpg"]
    assert "over the limit" in messages["huge.png"]
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


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


def test_max_pixels_reaches_past_pils_own_limit(tmp_path):
    """A 15000x15000 (225 MP) image is under the default limit of 16384x16384 and decodes,
    though PIL alone refuses anything over ~179 MP; a lower limit still refuses it."""
    path = tmp_path / "big.png"
    Image.new("1", (15000, 15000)).save(path)  # 27 kB on disk
    assert load_image(path).shape == (15000, 15000, 3)
    with pytest.raises(ImageError, match="over the limit of 200000000"):
        load_image(path, max_pixels=200_000_000)


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


def test_label_to_coco_category_map():
    """Contiguous labels 1..80 -> COCO's non-contiguous ids 1..90, with labels that do not map
    to themselves (12 -> 13 stop sign, 80 -> 90 toothbrush)."""
    from singleshot.core.detections import Detections
    from singleshot.core.spec import zoo_spec

    boxes = np.tile([[0.1, 0.1, 0.5, 0.5]], (4, 1)).astype(np.float32)
    d = Detections.from_normalized(boxes, np.array([12, 1, 80, 26]), np.array([0.9, 0.8, 0.7, 0.6]),
                                   zoo_spec(), 100, 100)
    assert d.category_ids.tolist() == [13, 1, 90, 28]
    assert d.names == ["stop sign", "person", "toothbrush", "umbrella"]
    assert [e["category_id"] for e in d.to_coco(image_id=5)] == [13, 1, 90, 28]
