"""`singleshot demo` end to end (on the bundled model when it is installed, else on a 6-class
model exported here), and the bundled model's metadata."""

import json

import pytest
from helpers import lively_model
from typer.testing import CliRunner

from singleshot.cli import app
from singleshot.data.synth import CLASSES
from singleshot.registry import bundled_path


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    """The bundled demo model if present; otherwise a 6-class model with the shapes' names."""
    bundled = bundled_path("demo.onnx")
    if bundled.is_file():
        return str(bundled)
    from singleshot.export import export_onnx

    path = tmp_path_factory.mktemp("demo") / "shapes.onnx"
    export_onnx(lively_model(num_classes=len(CLASSES)), path, class_names=CLASSES,
                category_ids=tuple(range(1, len(CLASSES) + 1)))
    return str(path)


def test_demo_end_to_end(shapes_model, tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--images", "3", "--model", shapes_model])
    assert res.exit_code == 0, res.output
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


def test_bundled_model_describes_itself():
    from singleshot.onnxgraph import describe

    path = bundled_path("demo.onnx")
    assert path.is_file(), "the bundled demo model is missing from the package"

    info = describe(path)
    assert info["contract"] == "zoo" and info["spec"]["classes"] == len(CLASSES)
    assert json.loads(info["metadata"]["class_names"]) == list(CLASSES)
