"""Backends: onnxruntime, OpenVINO (f32, bf16 or its refusal, precision names), torch."""

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import confident, same_detections
from singleshot.app.cli import app
from singleshot.errors import UsageError
from singleshot.hub.registry import bundled_path
from singleshot.io.images import load_image
from singleshot.runtime.backends import resolve_backend
from singleshot.runtime.detector import Detector

DEMO = str(bundled_path("demo.onnx"))


DEMO_QDQ = str(bundled_path("demo-int8-qdq.onnx"))


def test_auto_backend_rule_and_order():
    """Where nothing is measured, auto is OpenVINO (CI installs every backend); the measured
    pick takes the first candidate within 10% of the fastest, in today's order."""
    from singleshot.runtime.autoselect import candidates, choose

    assert resolve_backend("auto") == "openvino"
    with pytest.raises(UsageError, match="unknown backend"):
        resolve_backend("tensorflow")
    assert candidates("auto", True, True) == [("openvino", "auto"), ("openvino", "fp32"),
                                              ("onnxruntime", "fp32")]
    assert candidates("auto", True, False) == [("openvino", "auto"), ("onnxruntime", "fp32")]
    assert candidates("auto", False, True) == [("onnxruntime", "fp32")]
    assert candidates("bf16", True, True) == [("openvino", "bf16")]
    assert candidates("fp32", True, True) == [("openvino", "fp32"), ("onnxruntime", "fp32")]
    assert choose([10.5, 20.0, 10.0]) == 0  # within 10%: the preferred one stays
    assert choose([12.0, 20.0, 10.0]) == 2
    assert choose([30.0, 9.0, 10.0]) == 1


def test_auto_backend_is_measured_once_and_cached(tmp_path):
    """backend="auto" times the candidates on the model, says what it picked and why, and
    caches the pick per model file and CPU under $SINGLESHOT_HOME (the tests' own home)."""
    import json

    from singleshot.progress import Progress, set_default

    class Notes(Progress):
        def __init__(self):
            self.lines = []

        def note(self, message):
            self.lines.append(message)

    notes = Notes()
    previous = set_default(notes)
    try:
        det = Detector(DEMO, backend="auto")
        again = Detector(DEMO, backend="auto")
    finally:
        set_default(previous)
    assert "measured" in notes.lines[0] and "ms per inference" in notes.lines[0]
    assert "measured before" in notes.lines[1]
    cache = json.loads((tmp_path / "home" / "auto-backend.json").read_text())
    (entry,) = cache.values()
    assert (det.backend.name, again.backend.name) == (entry["backend"],) * 2
    assert len(entry["times_ms"]) >= 2 and all(t > 0 for t in entry["times_ms"])


@pytest.mark.parametrize("model", [DEMO, DEMO_QDQ])
def test_openvino_matches_onnxruntime(model, scenes):
    """f32 OpenVINO vs onnxruntime on the fp32 model; the QDQ model runs in OpenVINO too (its
    int8 kernels round differently, hence the looser tolerance)."""
    ref = Detector(model, exif=False)
    ov = Detector(model, exif=False, backend="openvino", precision="f32")
    assert ov.backend.name == "openvino" and ov.backend.precision == ("int8" if "qdq" in model else "fp32")
    for p in scenes:
        int8 = "qdq" in model
        same_detections(ref(p), ov(p), score_tol=0.05 if int8 else 1e-4,
                         box_tol_px=3.0 if int8 else 0.05)


def test_openvino_bf16_or_clear_refusal(scenes):
    import openvino as ov

    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if not has_bf16:
        with pytest.raises(UsageError, match="no bf16 support"):
            Detector(DEMO, backend="openvino", precision="bf16")
        return
    det = Detector(DEMO, exif=False, backend="openvino", precision="bf16")
    assert det.backend.precision == "bf16"
    # auto is OpenVINO's default, bf16 on a bf16 CPU: it must be reported as such
    assert Detector(DEMO, backend="openvino").backend.precision == "bf16"
    q = Detector(DEMO_QDQ, backend="openvino", precision="bf16").backend
    assert (q.precision, q.float_precision) == ("int8", "bf16")
    # bf16 keeps 8 mantissa bits: a neighbouring default box may win NMS, so boxes are
    # matched by overlap, not pixel by pixel
    ref, got = (confident(d) for d in (Detector(DEMO, exif=False)(scenes[0]), det(scenes[0])))
    assert len(ref[1]) == len(got[1]) > 0 and (ref[1] == got[1]).all()
    np.testing.assert_allclose(ref[2], got[2], atol=0.05)
    from singleshot.core.boxes import box_iou

    assert np.diag(box_iou(ref[0], got[0])).min() > 0.8


def test_torch_backend_matches_exported_graph(tiny_model, tiny_raw_onnx, tmp_path, photo):
    from singleshot.model.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny_model, tiny_model.cfg)
    t = Detector(ckpt, backend="torch")
    o = Detector(tiny_raw_onnx)
    assert t.backend.name == "torch" and t.spec.input_size == o.spec.input_size
    x = o.preprocess(load_image(photo))
    for a, b in zip(t.backend.run(x), o.backend.run(x)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(UsageError, match="checkpoints"):
        Detector(tiny_raw_onnx, backend="torch")
    with pytest.raises(UsageError, match="export it first"):
        Detector(ckpt)
    # --preprocess fast is honoured by the torch backend too: OpenCV resize, host normalisation
    rgb = load_image(photo)
    tf = Detector(ckpt, backend="torch", preprocess="fast")
    of = Detector(tiny_raw_onnx, preprocess="fast")
    assert tf.preprocess_mode == "fast" and tf.spec.input_dtype == "float32"
    assert not np.array_equal(tf.preprocess(rgb), t.preprocess(rgb))  # another resize
    a, b = tf(rgb), of(rgb)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)


def test_bf16_refusal_for_every_cpu_kind():
    """The refusal branch, with the capabilities each CPU kind reports injected (the test above
    runs the branch of this session's CPU for real)."""
    from singleshot.runtime.backends import require_bf16

    avx2, epyc, xeon = ["FP32", "INT8", "BIN"], ["BF16", "FP32", "INT8"], ["BF16", "FP32", "INT8", "FP16"]
    with pytest.raises(UsageError, match="no bf16 support"):
        require_bf16("bf16", avx2)
    for caps in (avx2, epyc, xeon):
        require_bf16("fp32", caps)
        require_bf16("auto", caps)
    require_bf16("bf16", epyc)
    require_bf16("bf16", xeon)


def test_openvino_precision_names():
    """The compiled model reports its precision as an ov.Type whose str() is
    "<Type: 'bfloat16'>" (never "bf16"); every spelling maps to our names."""
    import openvino as ov

    from singleshot.runtime.backends import ov_type_name

    assert ov_type_name(ov.Type.bf16) == "bf16" and str(ov.Type.bf16) != "bf16"
    assert ov_type_name(ov.Type.f32) == "fp32" and ov_type_name(ov.Type.f16) == "fp16"
    assert ov_type_name("bf16") == "bf16" and ov_type_name("f32") == "fp32"
    det = Detector(DEMO, backend="openvino", precision="fp32")
    assert det.backend.precision == "fp32"  # f32 and fp32 are one precision
    assert Detector(DEMO, backend="openvino", precision="f32").backend.precision == "fp32"


def test_precision_a_backend_cannot_honour_is_refused():
    backend = "onnxruntime"
    with pytest.raises(UsageError, match="precision bf16 needs backend openvino"):
        Detector(DEMO, backend=backend, precision="bf16")
    assert Detector(DEMO, backend=backend, precision="fp32").backend.precision == "fp32"
    assert Detector(DEMO, backend=backend, precision="f32").backend.precision == "fp32"
    res = CliRunner().invoke(app, ["detect", "x.jpg", "--precision", "bf16"])
    assert res.exit_code == 2 and "bf16 needs --backend openvino" in res.stderr
