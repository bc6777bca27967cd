"""The normalisation folded into the graph equals the card's."""

import numpy as np
import onnx

from singleshot.hub.registry import bundled_path
from singleshot.io.images import load_image

DEMO = str(bundled_path("demo.onnx"))


def test_folded_normalization_equals_card_preprocessing(photo):
    """The uint8 graph computes the card's normalisation: with the card's PIL resize its heads
    equal the float graph's."""
    from singleshot.graph.contract import graph_io, read_spec
    from singleshot.graph.edit import with_outputs
    from singleshot.graph.normalize import fold_normalization
    from singleshot.runtime.preprocess import preprocess, preprocess_uint8
    from singleshot.runtime.session import make_session

    proto = onnx.load(DEMO)
    io_, spec = graph_io(proto), read_spec(proto, graph_io(proto))
    folded, fspec = fold_normalization(proto, io_.input, spec)
    onnx.checker.check_model(folded)
    assert fspec.input_dtype == "uint8" and spec.input_dtype == "float32"
    rgb = load_image(photo)
    u8 = preprocess_uint8(rgb, fspec, fast=False)
    assert u8.dtype == np.uint8 and u8.shape == (1, 3, 300, 300)
    a = make_session(with_outputs(proto, ("conf",))).run(["conf"], {"image": preprocess(rgb, spec)})[0]
    b = make_session(with_outputs(folded, ("conf",))).run(["conf"], {"image": u8})[0]
    np.testing.assert_allclose(a, b, atol=1e-4)
