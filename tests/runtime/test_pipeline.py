"""The overlapped pipeline keeps order and equals sequential runs."""

import numpy as np

from singleshot.errors import ImageError
from singleshot.hub.registry import bundled_path
from singleshot.io.images import load_image
from singleshot.runtime.detector import Detector

DEMO = str(bundled_path("demo.onnx"))


def test_pipeline_matches_sequential_and_keeps_order(scenes):
    from singleshot.runtime.pipeline import detect_pipelined

    det = Detector(DEMO, exif=False, streams=2, threads=1)
    items = [p.read_bytes() for p in scenes] + [b"not an image"] + [scenes[0].read_bytes()]
    out = list(detect_pipelined(det, items, lambda b: load_image(b, exif=False), streams=2))
    assert [o[0] for o in out] == items
    assert isinstance(out[-2][1], ImageError) and out[-2][2] is None
    for data, d, rgb in out[:-2] + out[-1:]:
        ref = det.detect_array(load_image(data, exif=False))
        np.testing.assert_array_equal(d.labels, ref.labels)
        np.testing.assert_allclose(d.xyxy, ref.xyxy, atol=1e-3)
        assert set(d.timings) == {"decode", "preprocess", "inference", "postprocess"}
        assert rgb.shape == (d.height, d.width, 3)
