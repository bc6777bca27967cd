"""singleshot verify: recorded test sets in the zoo's layout, from folders, .onnx files and
archives, on onnxruntime and OpenVINO; a changed output fails naming the set and detection."""

import json
import tarfile

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from singleshot.app.cli import app


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    """`export --test-data 2` output, and the same packed as a zoo-style .tar.gz."""
    root = tmp_path_factory.mktemp("verify")
    ckpt = root / "m.pth"
    torch.save({"model": tiny_model.state_dict()}, ckpt)
    model = root / "tiny" / "model.onnx"
    res = CliRunner().invoke(app, ["export", str(ckpt), "-o", str(model), "--input-size", "300",
                                   "--test-data", "2"])
    assert res.exit_code == 0 and "test_data_set_0, test_data_set_1" in res.stdout, res.output
    archive = root / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model.parent, arcname="tiny")
    return model, archive


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_archive_folder_and_file_verify(exported, backend):
    model, archive = exported
    for source in (archive, model.parent, model):
        res = CliRunner().invoke(app, ["verify", str(source), "--backend", backend,
                                       "--precision", "fp32", "--json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert doc["passed"] and len(doc["sets"]) == 2 and doc["backend"] == backend
        assert all(s["matched"] == s["detections"] > 0 for s in doc["sets"])
    res = CliRunner().invoke(app, ["verify", str(model)])
    assert res.exit_code == 0 and "test_data_set_1: pass" in res.stdout and "tolerances" in res.stdout


def test_a_changed_output_fails_naming_set_and_detection(exported, tmp_path):
    import shutil

    model, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(model.parent, copy)
    scores_file = copy / "test_data_set_1" / "output_2.pb"
    scores = numpy_helper.to_array(onnx.load_tensor(str(scores_file))).copy()
    scores[0, 3] -= 0.01  # beyond the fp32 tolerance of 0.001
    scores_file.write_bytes(numpy_helper.from_array(scores).SerializeToString())
    res = CliRunner().invoke(app, ["verify", str(copy)])
    assert res.exit_code == 1
    assert "test_data_set_0: pass" in res.stdout and "test_data_set_1: FAIL" in res.stdout
    assert "recorded detection 3" in res.stdout
    res = CliRunner().invoke(app, ["verify", str(copy), "--score-tol", "0.02"])
    assert res.exit_code == 0  # a looser tolerance accepts it


def test_nothing_to_verify(tmp_path, exported):
    model, _ = exported
    (tmp_path / "m.onnx").write_bytes(model.read_bytes())
    for source in (tmp_path / "m.onnx", tmp_path / "missing"):
        res = CliRunner().invoke(app, ["verify", str(source)])
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert np.isfinite(1.0)
