"""Export at each opset, raw heads with a dynamic batch, metadata, one full-size 1200 export."""

import numpy as np
import onnx
import pytest
import torch

from singleshot.core.anchors import DefaultBoxConfig, default_boxes
from singleshot.core.nms import postprocess_raw
from singleshot.core.spec import ModelSpec, zoo_spec
from singleshot.errors import UsageError
from singleshot.export.exporter import build_onnx, export_onnx
from singleshot.export.parity import check_parity, match_detections, sample_input
from singleshot.graph.contract import graph_io, read_spec
from singleshot.graph.nms_constants import read_nms_params
from singleshot.model import build_model
from singleshot.runtime.detector import Detector
from singleshot.runtime.session import make_session


@pytest.mark.parametrize("opset", [10, 12, 13, 17])
def test_zoo_export_each_opset(tiny_model, opset):
    proto = build_onnx(tiny_model, opset=opset)
    assert proto.opset_import[0].version == opset
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["image"]
    outs = {o.name: o for o in proto.graph.output}
    assert list(outs) == ["bboxes", "labels", "scores"]
    assert outs["labels"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    ops = {n.op_type for n in proto.graph.node}
    assert {"NonMaxSuppression", "TopK", "Softmax", "Exp"} <= ops
    report = check_parity(proto, tiny_model)
    assert report.detections > 20 and report.unmatched == 0
    # torch heads + numpy post-processing = the graph's outputs, on a second input
    x = sample_input(300, seed=7)
    b, l, s = make_session(proto).run(None, {"image": x})
    with torch.no_grad():
        loc, conf = (t.numpy() for t in tiny_model(torch.from_numpy(x)))
    ref = postprocess_raw(loc[0], conf[0], default_boxes(DefaultBoxConfig.ssd300()))
    assert b.shape[0] == 1 and b.shape[2] == 4 and l.dtype == np.int64
    assert 1 <= l.min() and l.max() <= 80
    assert match_detections((b[0], l[0], s[0]), ref, box_tol=1e-4, score_tol=1e-4) == 0


@pytest.mark.parametrize("opset", [10, 13, 17])
def test_raw_export_dynamic_batch(tiny_model, opset):
    proto = build_onnx(tiny_model, opset=opset, raw=True)
    assert graph_io(proto).contract == "raw"
    x = np.concatenate([sample_input(300, 1), sample_input(300, 2), sample_input(300, 3)])
    loc, conf = make_session(proto).run(None, {"image": x})
    assert loc.shape == (3, 4, 8732) and conf.shape == (3, 81, 8732)
    with torch.no_grad():
        tl, tc = tiny_model(torch.from_numpy(x))
    np.testing.assert_allclose(loc, tl.numpy(), atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(conf, tc.numpy(), atol=1e-3, rtol=1e-3)
    assert "NonMaxSuppression" not in {n.op_type for n in proto.graph.node}


def test_metadata_roundtrip(tmp_path, make_model):
    model = make_model(num_classes=3)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, opset=12, class_names=("cat", "dog", "fox"), category_ids=(5, 7, 9))
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    for key in ("contract", "input_size", "layout", "input_dtype", "mean", "std", "default_boxes",
                "class_names", "category_ids", "model_config"):
        assert key in props
    spec = read_spec(proto, graph_io(proto))
    assert spec.contract == "zoo" and spec.input_size == (300, 300)
    assert spec.class_names == ("cat", "dog", "fox") and spec.category_ids == (5, 7, 9)
    assert spec.default_boxes == DefaultBoxConfig.ssd300()
    assert ModelSpec.from_metadata(spec.to_metadata()) == spec
    det = Detector(path)
    assert det.spec.num_classes == 3


def test_zoo_file_without_metadata_gets_zoo_defaults(tiny_zoo_onnx):
    proto = onnx.load(str(tiny_zoo_onnx))
    del proto.metadata_props[:]
    spec = read_spec(proto, graph_io(proto))
    assert spec.class_names == zoo_spec().class_names
    assert spec.input_size == (300, 300) and spec.default_boxes == DefaultBoxConfig.ssd300()
    assert read_nms_params(proto).score_threshold == 0.05


def test_export_refuses_wrong_class_names(tiny_model):
    from singleshot.errors import ModelError

    with pytest.raises(ModelError, match="class names"):
        build_onnx(tiny_model, class_names=("a", "b"))
    with pytest.raises(ModelError, match="opset"):
        build_onnx(tiny_model, opset=9)


@pytest.mark.slow
def test_full_size_1200_export_and_run(tmp_path, photo):
    """The real architecture (width 1.0, 15130 anchors) end to end: export, parity, detect."""
    torch.manual_seed(0)
    model = build_model("1200").eval()
    with torch.no_grad():  # realistic score ranges: a few classes above the background
        for i, head in enumerate(model.conf):
            bias = head.bias.view(81, -1)
            bias.zero_()
            bias[[1, 12, 18]] = 2.0  # labels 12 and 18 are COCO ids 13 and 19
    path = tmp_path / "full.onnx"
    report = export_onnx(model, path, opset=12)
    assert report.unmatched == 0 and report.detections == 200
    proto = onnx.load(str(path))
    assert read_spec(proto, graph_io(proto)).default_boxes.num_anchors == 15130
    det = Detector(path)
    d = det(photo)
    assert 0 < len(d) <= 200 and d.width == 320 and d.height == 240
    assert (d.xyxy[:, [0, 2]] <= 320).all() and (d.xyxy[:, [1, 3]] <= 240).all() and (d.xyxy >= 0).all()
    # labels that do not map to themselves: 12 -> category 13 (stop sign), 18 -> 19 (horse)
    assert set(d.labels.tolist()) <= {1, 12, 18} and {12, 18} & set(d.labels.tolist())
    by_label = {1: (1, "person"), 12: (13, "stop sign"), 18: (19, "horse")}
    for label, cat, name in zip(d.labels.tolist(), d.category_ids.tolist(), d.names):
        assert (cat, name) == by_label[label]


@pytest.fixture(scope="module")
def eight_images():
    from singleshot.data.synth import make_scene

    return [make_scene(21, i, size=(320 + 16 * i, 240 + 8 * i))[0] for i in range(8)]


def _normalized(d):
    return d.xyxy / np.array([d.width, d.height, d.width, d.height], np.float32)


@pytest.mark.parametrize("opset", [12, 13, 17])
def test_batched_zoo_export_gives_every_image_its_batch1_result(tiny_model, tmp_path, opset,
                                                                eight_images):
    """export --batch dynamic: the batched zoo contract passes the checker and the parity check,
    and a batch of 8 different images returns what the batch-1 zoo graph gives each, on
    onnxruntime and OpenVINO: same labels in the same order, boxes and scores within 1e-5."""
    one, many = tmp_path / "one.onnx", tmp_path / "many.onnx"
    export_onnx(tiny_model, one, opset=opset)
    report = export_onnx(tiny_model, many, opset=opset, batch="dynamic")
    assert report.unmatched == 0 and report.probe_detections > 0
    proto = onnx.load(str(many))
    onnx.checker.check_model(proto, full_check=True)
    io_ = graph_io(proto)
    assert io_.contract == "zoo-batch" and io_.outputs[-1] == "num_detections"
    assert read_spec(proto, io_).contract == "zoo-batch"
    for backend in ("onnxruntime", "openvino"):
        single = Detector(one, backend=backend, precision="fp32")
        batched = Detector(many, backend=backend, precision="fp32")
        assert batched.batch_size is None and single.batch_size == 1
        got = batched.detect_batch(eight_images)
        assert len(got) == 8
        for im, d in zip(eight_images, got):
            ref = single(im)
            assert len(ref) > 0
            np.testing.assert_array_equal(d.labels, ref.labels)
            np.testing.assert_allclose(d.scores, ref.scores, atol=1e-5)
            np.testing.assert_allclose(_normalized(d), _normalized(ref), atol=1e-5)
        # per-call options reach the batched graph too
        strict = batched.detect_batch(eight_images[:2], conf=0.3, max_det=5)
        for im, d in zip(eight_images[:2], strict):
            ref = single(im, conf=0.3, max_det=5)
            np.testing.assert_array_equal(d.labels, ref.labels)


def test_fixed_batch_and_batch1_graphs(tiny_model, tiny_zoo_onnx, tmp_path, eight_images):
    """A fixed-batch graph takes up to its batch (padded); a batch-1 graph refuses a batch and
    names its real one; det(list) works on both."""
    path = tmp_path / "b2.onnx"
    export_onnx(tiny_model, path, opset=13, batch=2)
    det = Detector(path)
    assert det.batch_size == 2 and len(det.detect_batch(eight_images[:1])) == 1
    with pytest.raises(UsageError, match="batches of 2"):
        det.detect_batch(eight_images[:3])
    assert [len(d) for d in det(eight_images[:3])] == [len(Detector(path)(im)) for im in eight_images[:3]]
    one = Detector(tiny_zoo_onnx)
    with pytest.raises(UsageError, match=r"takes batch 1 \(its input is \[1, 3, 300, 300\]\)"):
        one.detect_batch(eight_images[:2])
    assert len(one(eight_images[:2])) == 2


def test_batched_file_runs_in_every_command(tmp_path, tiny_model):
    """--batch with opset 10 is refused; the batched file runs in detect, eval, bench, info and
    quantize (which keeps the contract)."""
    import json

    from typer.testing import CliRunner

    from singleshot.app.cli import app
    from singleshot.data.synth import write_dataset
    from singleshot.graph.inspect import describe

    ckpt = tmp_path / "m.pth"
    torch.save({"model": tiny_model.state_dict()}, ckpt)
    run = lambda *a: CliRunner().invoke(app, [str(x) for x in a])  # noqa: E731
    res = run("export", ckpt, "-o", tmp_path / "x.onnx", "--batch", "dynamic", "--opset", "10",
              "--input-size", "300")
    assert res.exit_code == 2 and "opset 12" in res.stderr
    model = tmp_path / "b.onnx"
    res = run("export", ckpt, "-o", model, "--batch", "dynamic", "--input-size", "300")
    assert res.exit_code == 0 and "batched zoo contract" in res.stdout, res.output
    data = tmp_path / "data"
    write_dataset(data, 3, seed=4, workers=1)
    res = run("detect", data / "images", "--model", model, "--json")
    assert res.exit_code == 0 and len(json.loads(res.stdout)["images"]) == 3
    batched = run("detect", data / "images", "--model", model, "--json", "--batch", "2")
    assert batched.exit_code == 0, batched.output
    for a, b in zip(json.loads(res.stdout)["images"], json.loads(batched.stdout)["images"]):
        assert [d["category_id"] for d in a["detections"]] == \
            [d["category_id"] for d in b["detections"]]
        np.testing.assert_allclose([d["score"] for d in a["detections"]],
                                   [d["score"] for d in b["detections"]], atol=2e-5)
    from singleshot.core.labels import COCO_CATEGORY_IDS, COCO_NAMES

    ann = json.loads((data / "annotations.json").read_text())  # ids 1..6 are COCO ids too
    ann["categories"] = [{"id": i, "name": n} for i, n in zip(COCO_CATEGORY_IDS, COCO_NAMES)]
    (data / "coco.json").write_text(json.dumps(ann))
    res = run("eval", "-m", model, "--images", data / "images", "--annotations",
              data / "coco.json", "--json", "-o", tmp_path / "ev")
    assert res.exit_code == 0 and 0 <= json.loads(res.stdout)["AP"] <= 1, res.output
    res2 = run("eval", "-m", model, "--images", data / "images", "--annotations",
               data / "coco.json", "--json", "-o", tmp_path / "ev2", "--batch", "2")
    assert res2.exit_code == 0 and json.loads(res2.stdout)["AP"] == pytest.approx(
        json.loads(res.stdout)["AP"], abs=1e-4)
    one = tmp_path / "one.onnx"
    export_onnx(tiny_model, one, opset=13, check=False)
    for cmd in (["detect", data / "images", "--model", one],
                ["eval", "--images", data / "images", "--annotations", data / "coco.json", "-m", one,
                 "-o", tmp_path / "ev3"]):
        res = run(*cmd, "--batch", "2")  # a batch-1 graph: refused, naming its batch
        assert res.exit_code == 2 and "takes batch 1" in res.stderr, res.output
    res = run("bench", model, "--backend", "onnxruntime", "--iterations", "1", "--warmup", "0",
              "--no-throughput", "--json")
    assert res.exit_code == 0, res.output
    res = run("quantize", model, "-o", tmp_path / "q.onnx", "--calib", data / "images",
              "--num-images", "2")
    assert res.exit_code == 0, res.output
    info = describe(tmp_path / "q.onnx")
    assert info["contract"] == "zoo-batch" and info["quantization"] and info["nms"]
    assert describe(model)["contract"] == "zoo-batch"


def test_rebatch_a_zoo_onnx(tmp_path, eight_images):
    """export MODEL.onnx --batch dynamic re-batches a singleshot zoo graph (no checkpoint
    needed): each image of a batch gets the original's detections; anything else is refused."""
    from typer.testing import CliRunner

    from singleshot.app.cli import app

    out = tmp_path / "demo-batch.onnx"
    res = CliRunner().invoke(app, ["export", "demo", "--batch", "dynamic", "-o", str(out)])
    assert res.exit_code == 0 and "gives each its batch-1 detections" in res.stdout, res.output
    one, many = Detector("demo", precision="fp32"), Detector(out, precision="fp32")
    assert many.io.contract == "zoo-batch" and many.batch_size is None
    for im, d in zip(eight_images, many.detect_batch(eight_images)):
        ref = one(im)
        np.testing.assert_array_equal(d.labels, ref.labels)
        np.testing.assert_allclose(d.scores, ref.scores, atol=1e-5)
    res = CliRunner().invoke(app, ["export", "demo", "-o", str(tmp_path / "x.onnx")])
    assert res.exit_code == 2 and "re-batched" in res.stderr
    res = CliRunner().invoke(app, ["export", str(out), "--batch", "dynamic", "-o",
                                   str(tmp_path / "y.onnx")])
    assert res.exit_code == 2 and "re-batched" in res.stderr  # already batched: not a zoo graph
