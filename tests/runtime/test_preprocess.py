"""Preprocessing: the card's exactly, and the fast path's detections."""


import numpy as np
import pytest
from PIL import Image

from helpers import confident
from singleshot.hub.registry import bundled_path
from singleshot.io.images import load_image
from singleshot.runtime.detector import Detector
from singleshot.runtime.preprocess import preprocess


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


DEMO = str(bundled_path("demo.onnx"))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_fast_preprocessing_keeps_detections(backend, scenes):
    """OpenCV resize differs from PIL's by rounding: confident detections stay, scores within
    0.05, boxes within 3 px (mAP on 500 scenes: bench/RESULTS.md)."""
    card = Detector(DEMO, exif=False)
    fast = Detector(DEMO, exif=False, backend=backend, preprocess="fast")
    assert fast.spec.input_dtype == "uint8"
    matched = 0
    for p in scenes:
        bc, lc, sc = confident(card(p), 0.5)
        bf, lf, sf = confident(fast(p), 0.3)
        for box, label, score in zip(bc, lc, sc):  # every confident card detection is found
            ok = (lf == label) & (np.abs(bf - box).max(1) < 3.0) & (np.abs(sf - score) < 0.05)
            assert ok.any(), (p.name, label, score)
            matched += 1
    assert matched >= 5
