"""The one guard (singleshot.io.guard): no command writes over one of its inputs, reads its own
output back, lets a folder named like a registry model shadow it, or leaves stale files beside
a new run's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from helpers import lively_model
from singleshot.app.cli import app
from singleshot.core.limits import RangeError


def run(*args, cwd=None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        res = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)
    return res.exit_code, res.stdout, res.stderr


def digest(path: Path) -> str:
    if path.is_dir():
        return json.dumps(sorted((str(p.relative_to(path)), digest(p))
                                 for p in path.rglob("*") if p.is_file()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def inputs(tmp_path, scenes):
    """A checkpoint, a float model, a folder of images and its annotations."""
    from singleshot.export.exporter import export_onnx

    ckpt = tmp_path / "best.pt"
    torch.save({"model": lively_model().state_dict()}, ckpt)
    model = tmp_path / "model.onnx"
    export_onnx(lively_model(), model, opset=13)
    root = tmp_path / "set"  # a copy: the session's scenes must survive a guard that fails
    shutil.copytree(scenes[0].parent.parent, root)
    return {"ckpt": ckpt, "model": model, "images": root / "images",
            "annotations": root / "annotations.json", "root": root}


def _aliases(path: Path, tmp_path: Path) -> list[Path]:
    """The path itself, a symlink to it and (for files) a hard link to it."""
    sym = tmp_path / f"link-{path.name}"
    sym.symlink_to(path)
    out = [path, sym]
    if path.is_file():
        hard = tmp_path / f"hard-{path.name}"
        os.link(path, hard)
        out.append(hard)
    return out


def test_every_command_refuses_to_write_over_its_inputs(inputs, tmp_path):
    m, ckpt, images, ann = inputs["model"], inputs["ckpt"], inputs["images"], inputs["annotations"]
    cases = []
    for alias in _aliases(m, tmp_path):
        cases += [(["quantize", m, "-o", alias, "--calib", images], m),
                  (["export", m, "--batch", "dynamic", "-o", alias], m)]
    for alias in _aliases(ckpt, tmp_path):
        cases.append((["export", ckpt, "-o", alias, "--input-size", "300"], ckpt))
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    cases.append((["export", ckpt, "-o", names, "--class-names", names], names))
    for folder in _aliases(images, tmp_path):  # a folder output that is, or holds, an input
        cases += [(["detect", images, "-o", folder, "-m", m], images),
                  (["detect", next(images.iterdir()), "-o", folder, "--overwrite"], images),
                  (["eval", "-m", m, "--images", images, "--annotations", ann, "-o", folder,
                    "--overwrite"], images),
                  (["bench", m, "--images", images, "-o", folder, "--overwrite"], images)]
    root = inputs["root"]
    cases += [(["eval", "-m", m, "--images", images, "--annotations", ann, "-o", root,
                "--overwrite"], root),
              (["train", "--data", root, "-o", root, "--overwrite", "--max-steps", "1"], root),
              (["demo", "-m", m, "-o", tmp_path, "--overwrite"], m)]
    for args, protected in cases:
        before = digest(protected)
        code, _, stderr = run(*args)
        assert code == 2 and "Traceback" not in stderr, (args, code, stderr)
        assert len(stderr.strip().splitlines()) == 1, (args, stderr)
        assert digest(protected) == before, (args, stderr)


def test_detect_never_reads_its_own_output(tmp_path, scenes):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.jpg").write_bytes(scenes[0].read_bytes())
    for _ in range(2):
        code, _, stderr = run("detect", src, "--recursive", "-o", src / "out", "--json")
        assert code == 0, stderr
        doc = json.loads((src / "out" / "detections.json").read_text())
        assert [im["path"] for im in doc["images"]] == [str(src / "a.jpg")]
    # another run's output folder beside the photos is skipped too, and said
    code, _, stderr = run("detect", src, "--recursive", "-o", tmp_path / "second")
    assert code == 0 and "skipped 1 singleshot output folder" in stderr
    doc = json.loads((tmp_path / "second" / "detections.json").read_text())
    assert len(doc["images"]) == 1


def test_a_folder_named_like_a_registry_model_never_shadows_it(tmp_path, scenes):
    # `demo -o demo` (the README's kind of command) and then every command in that folder
    assert run("demo", "-o", "demo", "--num-images", "1", "--no-compare", cwd=tmp_path)[0] == 0
    assert run("demo", "-o", "demo", "--num-images", "1", "--no-compare", cwd=tmp_path)[0] == 0
    assert run("detect", scenes[0], "-o", "demo2", cwd=tmp_path)[0] == 0
    shutil.rmtree(tmp_path / "demo")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "report.md").write_text("an earlier singleshot demo -o demo\n")
    code, stdout, stderr = run("detect", scenes[0], cwd=tmp_path)
    assert code == 0, stderr
    code, stdout, _ = run("info", "demo", cwd=tmp_path)
    assert code == 0 and "assets/demo.onnx" in stdout
    code, _, stderr = run("info", tmp_path / "demo")
    assert code == 2 and "is a folder, not a model file" in stderr
    code, _, stderr = run("detect", scenes[0], "-m", tmp_path / "demo")
    assert code == 2 and "is a folder" in stderr


def test_a_rerun_leaves_exactly_the_new_set(tmp_path):
    out = tmp_path / "d"
    assert run("data", "synth", "-o", out, "--num-images", "3")[0] == 0
    code, _, stderr = run("data", "synth", "-o", out, "--num-images", "2")
    assert code == 0 and "previous-1" in stderr
    ann = json.loads((out / "annotations.json").read_text())
    assert len(ann["images"]) == 2 and len(list((out / "images").iterdir())) == 2
    assert len(list((out / "previous-1" / "images").iterdir())) == 3
    demo = tmp_path / "demo"
    assert run("demo", "-o", demo, "--num-images", "3", "--no-compare")[0] == 0
    code, _, stderr = run("demo", "-o", demo, "--num-images", "2", "--no-compare")
    assert code == 0 and "previous-1" in stderr
    assert len(list((demo / "scenes").iterdir())) == 2
    assert len(json.loads((demo / "detections.json").read_text())["images"]) == 2


def test_a_folder_singleshot_did_not_write_is_refused_unless_overwrite(tmp_path, scenes):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    for args in (["data", "synth", "-o", mine, "--num-images", "1"],
                 ["detect", scenes[0], "-o", mine],
                 ["demo", "-o", mine, "--num-images", "1", "--no-compare"],
                 ["bench", "demo", "-o", mine, "--iterations", "1"]):
        code, _, stderr = run(*args)
        assert code == 2 and "--overwrite" in stderr and "not written by singleshot" in stderr
        assert (mine / "thesis.tex").read_text() == "precious"
    code, _, stderr = run("data", "synth", "-o", mine, "--num-images", "1", "--overwrite")
    assert code == 0 and (mine / "previous-1" / "thesis.tex").read_text() == "precious"
    # another command's output is not taken over either
    code, _, stderr = run("detect", scenes[0], "-o", mine)
    assert code == 2 and "data synth" in stderr


def test_detect_overwrite_starts_over_and_a_mismatch_names_it(tmp_path, scenes, tiny_zoo_onnx):
    out = tmp_path / "run"
    assert run("detect", scenes[0], "-o", out)[0] == 0
    code, _, stderr = run("detect", scenes[0], "-o", out, "-m", tiny_zoo_onnx)
    assert code == 2 and "--overwrite" in stderr
    code, _, stderr = run("detect", scenes[0], "-o", out, "-m", tiny_zoo_onnx, "--overwrite")
    assert code == 0, stderr
    assert (out / "previous-1" / "detections.json").is_file()


def test_library_checks_the_same_ranges():
    from singleshot.runtime.detector import Detector

    for kwargs, name in (({"threads": 0}, "threads"), ({"streams": 0}, "streams"),
                         ({"conf": float("nan")}, "conf"), ({"max_det": 2**63}, "max_det")):
        with pytest.raises(ValueError, match=name) as err:
            Detector("demo", **kwargs)
        assert isinstance(err.value, RangeError)
    from singleshot.errors import UsageError

    # a message names options as the user types them
    assert UsageError("{opt:cpus-per-worker} must be above 0").render(
        lambda n: "--" + n.replace("_", "-")) == "--cpus-per-worker must be above 0"


def test_serve_on_a_taken_port_is_one_line_exit_2():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, stderr = run("serve", "--port", taken.getsockname()[1])
    assert code == 2 and "cannot listen" in stderr and "--port" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_folders_of_earlier_versions_are_known_by_their_files(tmp_path):
    from singleshot.io.guard import is_output_folder, written_by

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "train_config.json").write_text("{}")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "detections.jsonl").write_text("")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "summary.json").write_text("{}")
    assert written_by(tmp_path / "t") == "train" and written_by(tmp_path / "d") == "singleshot"
    assert not is_output_folder(tmp_path / "mine")
    code, _, stderr = run("data", "synth", "-o", tmp_path / "t", "--num-images", "1")
    assert code == 2 and "singleshot train" in stderr
