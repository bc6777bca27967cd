"""The run journal: manifest check, lines cut short by a kill, appends once per key, and the
final document streamed in input order with every input exactly once."""

import json

import pytest

from singleshot.errors import UsageError
from singleshot.io.journal import AssemblyError, Journal


def journal(tmp_path):
    return Journal(tmp_path / "run", key=lambda e: e["path"])


def test_assemble_in_input_order_with_repeats(tmp_path):
    j = journal(tmp_path)
    j.open({"model": "m"})
    with j.appender() as add:
        for p in ("c", "a", "b"):
            assert add({"path": p, "n": ord(p)})
        assert not add({"path": "a", "n": 0})  # a retried batch's repeat is not written
    n = j.assemble(["a", "b", "c", "a"], tmp_path / "doc.json", {"model": "m"},
                   transform=lambda e: {"path": e["path"]})
    doc = json.loads((tmp_path / "doc.json").read_text())
    assert n == 4 and doc == {"model": "m", "images": [{"path": p} for p in "abca"]}
    j.assemble([], tmp_path / "empty.json", {"model": "m"})
    assert json.loads((tmp_path / "empty.json").read_text()) == {"model": "m", "images": []}


def test_assembly_names_missing_and_duplicated_inputs(tmp_path):
    j = journal(tmp_path)
    j.dir.mkdir()
    j.path.write_text("".join(json.dumps({"path": p}) + "\n" for p in ("a", "b", "b")))
    with pytest.raises(AssemblyError) as err:
        j.assemble(["a", "b", "zz-missing"], tmp_path / "doc.json", {})
    msg = str(err.value)
    assert "1 input(s) have no result (zz-missing)" in msg
    assert "1 input(s) have more than one (b)" in msg
    assert not (tmp_path / "doc.json").exists()


def test_line_cut_short_is_redone_and_appends_start_fresh(tmp_path):
    j = journal(tmp_path)
    j.dir.mkdir()
    j.path.write_text(json.dumps({"path": "a"}) + "\n" + '{"path": "b", "detec')  # killed here
    assert j.keys() == {"a"}
    with j.appender() as add:
        assert add({"path": "b"})
    assert j.keys() == {"a", "b"}
    assert len(j.path.read_text().splitlines()) == 3


def test_other_manifest_is_refused(tmp_path):
    j = journal(tmp_path)
    j.open({"model_sha256": "1" * 64, "conf": 0.25, "model_path": "/x"})
    with j.appender() as add:
        add({"path": "a"})
    j.open({"model_sha256": "1" * 64, "conf": 0.25, "model_path": "/moved"})  # same model
    with pytest.raises(UsageError, match=r"conf 0.25 -> 0.5"):
        j.open({"model_sha256": "1" * 64, "conf": 0.5, "model_path": "/x"})


def test_an_interrupted_run_keeps_its_lines_and_is_marked(tmp_path):
    j = journal(tmp_path)
    j.open({"model": "m"})
    with pytest.raises(KeyboardInterrupt):
        with j.appender() as add:
            add({"path": "a"})
            raise KeyboardInterrupt
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["interrupted"] is True and run["results"] == 1 and run["model"] == "m"
    assert j.keys() == {"a"}
    j.open({"model": "m"})  # resumed: the same manifest, the mark gone until it is cut again
    assert "interrupted" not in json.loads((tmp_path / "run" / "run.json").read_text())
