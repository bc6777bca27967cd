"""A command given no --out takes runs/<kind>/<time>: two started in the same second get a folder
each (sharing one, the second found the first's results and refused - seen with two evals)."""

import json

from typer.testing import CliRunner

from singleshot.app.cli import app
from singleshot.io.files import new_run_folder


def test_folders_of_one_second_are_distinct(tmp_path):
    made = [new_run_folder("eval", tmp_path) for _ in range(3)]
    assert len(set(made)) == 3 and all(p.is_dir() for p in made)
    assert made[1].name == made[0].name + "-2" or made[1].name[:15] != made[0].name[:15]


def test_two_evals_without_out_in_one_second(tmp_path, monkeypatch, scenes):
    images = scenes[0].parent
    anns = images.parent / "annotations.json"
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        res = CliRunner().invoke(app, ["eval", "-m", "demo", "--images", str(images),
                                       "--annotations", str(anns), "--limit", "2", "--json",
                                       "--no-report"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["AP"] >= 0
    assert len(list((tmp_path / "runs" / "eval").iterdir())) == 2
