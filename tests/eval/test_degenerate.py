"""`eval` says when its numbers mislead: nothing readable, no objects, a partial results file."""

import json

from typer.testing import CliRunner

from singleshot.app.cli import app


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def test_every_image_missing_is_exit_1_and_said(scenes, tmp_path):
    empty = tmp_path / "noimages"
    empty.mkdir()
    ann = scenes[0].parent.parent / "annotations.json"
    code, _, stderr = run("eval", "-m", "demo", "--images", empty, "--annotations", ann,
                          "-o", tmp_path / "e")
    assert code == 1 and "nothing was evaluated" in stderr and "images/s" not in stderr


def test_no_objects_and_partial_results(scenes, tmp_path):
    ann = json.loads((scenes[0].parent.parent / "annotations.json").read_text())
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({**ann, "annotations": []}))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": ann["images"][0]["id"], "category_id": 1,
                                    "bbox": [1, 1, 5, 5], "score": 0.9}]))
    code, _, stderr = run("eval", "--results", results, "--annotations", bare, "-o",
                          tmp_path / "e1")
    assert code == 1 and "holds no objects" in stderr
    code, _, stderr = run("eval", "--results", results, "--annotations",
                          scenes[0].parent.parent / "annotations.json", "-o", tmp_path / "e2")
    assert code == 0 and f"detections for 1 of {len(ann['images'])} image(s)" in stderr
