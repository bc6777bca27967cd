"""`singleshot demo` end to end on the bundled model, and the bundled model itself."""

import json
import re

from typer.testing import CliRunner

from singleshot.app.cli import app
from singleshot.data.synth import CLASSES
from singleshot.hub.registry import bundled_path


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--images", "3"])
    assert res.exit_code == 0, res.output
    ap = float(re.search(r"held-out scenes: ([0-9.]+)", res.stdout).group(1))
    assert ap > 0.3  # a trained detector, not noise (0.60 on 500 held-out scenes)
    assert "mAP (COCO AP@[.5:.95]) on 3 held-out scenes" in res.stdout
    for f in ("report.md", "report.html", "detections.json", "annotations.json"):
        assert (out / f).is_file(), f
    assert len(list((out / "annotated").glob("*.jpg"))) == 3
    doc = json.loads((out / "detections.json").read_text())
    assert len(doc["images"]) == 3 and all(i["error"] is None for i in doc["images"])
    html = (out / "report.html").read_text()
    assert html.count("<img ") == 3 and "AP " in html
    md = (out / "report.md").read_text()
    assert "| inference |" in md and "| decode |" in md
    # the model card's table: fp32 and both bundled int8 variants on the same scenes
    rows = re.findall(r"^\| (demo\S*) \| ([^|]+) \| ([0-9.]+) \|", res.stdout, re.M)
    assert [(m, p.strip()) for m, p, _ in rows] == [
        ("demo", "fp32"), ("demo-int8-qdq", "int8 QDQ"), ("demo-int8-qoperator", "int8 QOperator")]
    assert all(abs(float(a) - ap) < 0.1 for _, _, a in rows)  # int8 keeps the accuracy
    assert "int8 QOperator" in md and "int8 QDQ" in html


def test_bundled_model_describes_itself():
    from singleshot.graph.inspect import describe

    path = bundled_path("demo.onnx")
    assert path.is_file(), "the bundled demo model is missing from the package"

    info = describe(path)
    assert info["contract"] == "zoo" and info["spec"]["classes"] == len(CLASSES)
    assert json.loads(info["metadata"]["class_names"]) == list(CLASSES)
    for fmt, name in (("QDQ", "demo-int8-qdq.onnx"), ("QOperator", "demo-int8-qoperator.onnx")):
        q = describe(bundled_path(name))
        assert q["quantization"]["format"] == fmt and q["quantization"]["per_channel"]
        assert q["spec"] == info["spec"]


def test_the_int8_note_names_only_variants_slower_than_fp32():
    from singleshot.app.demo import slower_than_fp32

    rows = [{"model": "demo", "format": "fp32", "speedup": 1.0},
            {"model": "demo-int8-qdq", "format": "int8 QDQ", "speedup": 0.93},
            {"model": "demo-int8-qoperator", "format": "int8 QOperator", "speedup": 1.41}]
    assert slower_than_fp32(rows) == ["demo-int8-qdq"]
    assert slower_than_fp32([rows[0], rows[2]]) == []  # 1.41x: no "slower" note under it
