"""Int8 quantization: float tail untouched, calibration inputs, both formats run and agree with
fp32, metadata, and a bad calibration folder."""

import json

import numpy as np
import onnx
import pytest
from PIL import Image
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
    # int8 agrees with fp32 on a calibration-like image
    img = next(calib_dir.iterdir())
    a, b = Detector(tiny_zoo_onnx)(img), Detector(out)(img)
    misses = 0
    for box, lab, sc in zip(b.xyxy[:20], b.labels[:20], b.scores[:20]):  # the int8 top 20
        near = (a.labels == lab) & (np.abs(a.scores - sc) < 0.03) & \
               (np.abs(a.xyxy - box).max(axis=1) < 3.0)
        misses += not near.any()
    assert misses <= 2


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
