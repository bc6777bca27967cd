"""Int8 quantization: float tail untouched, calibration inputs, both formats run and agree with
fp32, metadata, and a bad calibration folder."""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from singleshot.cli import app
from singleshot.errors import UsageError
from singleshot.imageio import load_image
from singleshot.onnxgraph import describe, graph_io, read_spec
from singleshot.preprocess import preprocess
from singleshot.quantize import ImageFolderReader, Recipe, quantize_model, tail_op_types
from singleshot.runtime import Detector


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("calib")
    write_dataset(root, 12, seed=9, workers=1, progress=False)
    return root / "images"


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_quantize_formats(tiny_zoo_onnx, calib_dir, tmp_path, fmt):
    out = quantize_model(tiny_zoo_onnx, tmp_path / f"{fmt}.onnx", calib_dir,
                         Recipe(format=fmt, num_images=8), log=lambda m: None)
    q, f = onnx.load(str(out)), onnx.load(str(tiny_zoo_onnx))
    assert tail_op_types(q) == tail_op_types(f)  # decode, softmax, NMS, TopK stay float
    ops = {n.op_type for n in q.graph.node}
    assert ("QLinearConv" in ops) == (fmt == "qoperator") and "QuantizeLinear" in ops or "QLinearConv" in ops
    props = {p.key: p.value for p in q.metadata_props}
    assert json.loads(props["quantization"])["format"] == fmt and props["contract"] == "zoo"
    assert read_spec(q, graph_io(q)) == read_spec(f, graph_io(f)).with_(
        extra=read_spec(q, graph_io(q)).extra)
    info = describe(out)
    assert info["quantization"]["format"] == ("QDQ" if fmt == "qdq" else "QOperator")
    assert info["quantization"]["per_channel"] and info["contract"] == "zoo"
    # int8 agrees with fp32: same post-processing, so compare the class probabilities that feed
    # it on a calibration-like image (the tiny test model has random weights and near-tied
    # scores, so detection lists would differ by ranking noise alone)
    img = preprocess(load_image(next(calib_dir.iterdir()), exif=False), read_spec(f, graph_io(f)))
    fp, iq = (_heads(m, img) for m in (f, q))
    prob = [np.exp(c - c.max(1, keepdims=True)) / np.exp(c - c.max(1, keepdims=True)).sum(1, keepdims=True)
            for _, c in (fp, iq)]
    assert np.abs(prob[0] - prob[1]).mean() < 0.02
    assert np.corrcoef(fp[0].ravel(), iq[0].ravel())[0, 1] > 0.95  # box offsets


def _heads(model, x):
    """The raw loc/conf tensors inside a zoo graph."""
    from singleshot.onnxgraph import with_outputs
    from singleshot.runtime import make_session

    return make_session(with_outputs(model, ("loc", "conf"))).run(["loc", "conf"], {"image": x})


def test_calibration_reads_model_inputs(tiny_zoo_onnx, calib_dir):
    proto = onnx.load(str(tiny_zoo_onnx))
    spec = read_spec(proto, graph_io(proto))
    reader = ImageFolderReader(calib_dir, spec, "image", 5)
    assert len(reader) == 5
    first = reader.get_next()
    assert set(first) == {"image"} and first["image"].shape == (1, 3, 300, 300)
    np.testing.assert_array_equal(first["image"], preprocess(load_image(reader.paths[0], exif=False), spec))
    reader.set_range(2, 4)
    assert reader.get_next() is not None and reader.get_next() is not None and reader.get_next() is None


def test_bad_calibration_folder(tiny_zoo_onnx, tmp_path):
    with pytest.raises(UsageError, match="no such calibration folder"):
        quantize_model(tiny_zoo_onnx, tmp_path / "x.onnx", tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images")
    with pytest.raises(UsageError, match="no image files"):
        quantize_model(tiny_zoo_onnx, tmp_path / "x.onnx", empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    res = CliRunner().invoke(app, ["quantize", str(tiny_zoo_onnx), "-o", str(tmp_path / "x.onnx"),
                                   "--calib", str(broken)])
    assert res.exit_code == 2 and "could be read" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "x.onnx").exists()


def test_quantize_cli_prints_recipe(tiny_raw_onnx, calib_dir, tmp_path):
    res = CliRunner().invoke(app, ["quantize", str(tiny_raw_onnx), "-o", str(tmp_path / "raw8.onnx"),
                                   "--calib", str(calib_dir), "--num-images", "4"])
    assert res.exit_code == 0, res.output
    assert "QDQ, uint8 activations" in res.stdout and "per-channel" in res.stdout
    d = Detector(tmp_path / "raw8.onnx")(next(calib_dir.iterdir()))
    assert d.width > 0
