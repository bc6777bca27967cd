"""Static int8 quantization: formats, methods, calibration, float tail, float-kept convs."""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app
from singleshot.errors import UsageError
from singleshot.graph.contract import graph_io, read_spec
from singleshot.graph.inspect import describe
from singleshot.io.images import load_image
from singleshot.quant.static import ImageFolderReader, Recipe, quantize_model, tail_op_types
from singleshot.runtime.detector import Detector
from singleshot.runtime.preprocess import preprocess


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("calib")
    write_dataset(root, 12, seed=9, workers=1)
    return root / "images"


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_quantize_formats(tiny_zoo_onnx, calib_dir, tmp_path, fmt):
    out = quantize_model(tiny_zoo_onnx, tmp_path / f"{fmt}.onnx", calib_dir,
                         Recipe(format=fmt, num_images=8))
    q, f = onnx.load(str(out)), onnx.load(str(tiny_zoo_onnx))
    assert tail_op_types(q) == tail_op_types(f)  # decode, softmax, NMS, TopK stay float
    ops = {n.op_type for n in q.graph.node}
    if fmt == "qoperator":
        assert "QLinearConv" in ops
    else:
        assert "QLinearConv" not in ops and {"QuantizeLinear", "DequantizeLinear"} <= ops
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


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_every_calibration_method(tiny_zoo_onnx, calib_dir, tmp_path, method):
    """Each documented --method calibrates (entropy and percentile used to crash inside
    onnxruntime's histogram collector on the tail's data-dependent shapes) and gives a model
    whose class probabilities stay close to fp32's."""
    out = tmp_path / f"{method}.onnx"
    res = CliRunner().invoke(app, ["quantize", str(tiny_zoo_onnx), "-o", str(out), "--calib",
                                   str(calib_dir), "--num-images", "4", "--method", method])
    assert res.exit_code == 0, res.output
    assert f"{method} calibration on 4 images" in res.stdout
    q, f = onnx.load(str(out)), onnx.load(str(tiny_zoo_onnx))
    assert json.loads({p.key: p.value for p in q.metadata_props}["quantization"])["method"] == method
    img = preprocess(load_image(next(calib_dir.iterdir()), exif=False), read_spec(f, graph_io(f)))
    (_, cf), (_, cq) = _heads(f, img), _heads(q, img)
    soft = [np.exp(c - c.max(1, keepdims=True)) for c in (cf, cq)]
    prob = [e / e.sum(1, keepdims=True) for e in soft]
    assert np.abs(prob[0] - prob[1]).mean() < 0.02


def test_quantizing_a_quantized_model_is_refused(calib_dir, tmp_path):
    """onnxruntime would write a file it then refuses ("two nodes with same node name")."""
    from singleshot.hub.registry import bundled_path

    for name in ("demo-int8-qdq.onnx", "demo-int8-qoperator", "demo-int8-qdq"):  # file or name
        out = tmp_path / f"{name}.out.onnx"
        model = str(bundled_path(name)) if name.endswith(".onnx") else name
        res = CliRunner().invoke(app, ["quantize", model, "-o", str(out),
                                       "--calib", str(calib_dir), "--num-images", "2"])
        assert res.exit_code == 2 and "already quantized" in res.stderr, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()


def _heads(model, x):
    """The raw loc/conf tensors inside a zoo graph."""
    from singleshot.graph.edit import with_outputs
    from singleshot.runtime.session import make_session

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


def test_convs_kept_in_float_compute_in_float(tiny_zoo_onnx, calib_dir, tmp_path):
    """Convs kept in float read float values and run as float kernels on this CPU. In the file:
    no DequantizeLinear feeds them (the quantizer folds Relus into its quantization; those must
    come back for float readers). As onnxruntime runs it (its QDQ fusions differ by ISA): the
    graph it optimizes holds exactly that many float convs on float inputs, and no int8 conv
    kernel when every conv is kept, while the fully quantized model runs int8 kernels."""
    from singleshot.quant.static import prepare_float_model, runtime_conv_kernels

    f = prepare_float_model(onnx.load(str(tiny_zoo_onnx)), 13)
    convs = sorted(n.name for n in f.graph.node if n.op_type == "Conv")
    half = set(convs[::2])
    models = {k: onnx.load(str(quantize_model(tiny_zoo_onnx, tmp_path / f"{k}.onnx", calib_dir,
                                              Recipe(num_images=4), exclude=ex)))
              for k, ex in (("float", set(convs)), ("half", half), ("int8", set()))}
    for k in ("float", "half"):
        q = models[k]
        dq = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        kept = set(convs) if k == "float" else half
        assert all(not set(n.input) & dq for n in q.graph.node if n.name in kept)
    kernels = {k: runtime_conv_kernels(m) for k, m in models.items()}
    assert kernels["float"] == {"int8": 0, "float": len(convs), "dequantized": 0}, kernels
    assert kernels["half"]["float"] == len(half), kernels
    assert kernels["int8"]["int8"] > 0 and kernels["int8"]["float"] == 0, kernels
    # and numerically: fewer rounding steps, closer to fp32 (Add/MaxPool inputs stay rounded, so
    # no fixed ratio holds: int8 convs round less on VNNI CPUs than on AVX2 ones)
    img = preprocess(load_image(next(calib_dir.iterdir()), exif=False), read_spec(f, graph_io(f)))
    ref = _heads(f, img)
    err = [sum(float(np.abs(a - b).mean()) for a, b in zip(_heads(models[k], img), ref))
           for k in ("float", "int8")]
    assert err[0] < err[1], err
