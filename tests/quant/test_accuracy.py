"""Accuracy-aware quantization: drop targets, trials, the CLI."""

import json

import onnx
import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app
from singleshot.errors import UsageError
from singleshot.quant.static import Recipe


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("calib")
    write_dataset(root, 12, seed=9, workers=1)
    return root / "images"


def test_drop_target_parsing():
    from singleshot.quant.accuracy import DropTarget, float_counts

    assert DropTarget.parse("1%") == DropTarget(0.01, True)
    assert DropTarget.parse("0.01") == DropTarget(0.01, False)
    assert DropTarget.parse("1%").allows(0.5, 0.496) and not DropTarget.parse("1%").allows(0.5, 0.494)
    assert DropTarget.parse("0.01").allows(0.5, 0.491) and not DropTarget.parse("0.01").allows(0.5, 0.489)
    for bad in ("one percent", "-1%", "150%", "1.5"):
        with pytest.raises(UsageError, match="^max_drop must") as err:  # the library's name
            DropTarget.parse(bad)
        assert err.value.render(lambda n: f"--{n.replace('_', '-')}").startswith("--max-drop must")
    assert float_counts(5) == [1, 2, 4] and float_counts(1) == [] and float_counts(8) == [1, 2, 4]


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory):
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("evalset")
    write_dataset(root, 30, seed=3, workers=1)
    return root


def test_accuracy_aware_trials(eval_set, calib_dir, tmp_path):
    """A target no trial can meet forces the search through its trials: each keeps the next
    most sensitive convs in float, and the written model is the one the report chose."""
    from singleshot.hub.registry import bundled_path
    from singleshot.quant.accuracy import DropTarget, quantize_accuracy_aware, report_path

    out = tmp_path / "demo-int8.onnx"
    never = DropTarget(-1.0, False)  # int8 would have to gain a whole mAP point: never allowed
    report = quantize_accuracy_aware(
        bundled_path("demo.onnx"), out, calib_dir, Recipe(num_images=8),
        eval_images=eval_set / "images", eval_annotations=eval_set / "annotations.json",
        target=never, max_trials=2)
    assert json.loads(report_path(out).read_text()) == json.loads(json.dumps(report))
    assert not report["met_target"] and out.exists()
    trials = report["trials"]
    assert len(trials) == 3 and trials[0]["float_nodes"] == [] and 0 < report["fp32"]["mAP"] <= 1
    ranked = [r["node"] for r in report["sensitivity"]]
    assert len(ranked) > 10 and all(r["local"] <= r["error"] + 1e-12 for r in report["sensitivity"])
    for t, k in zip(trials[1:], (1, 2)):
        assert t["float_nodes"] == ranked[:k]
    for t in trials:
        assert not t["within_target"]
        assert t["inference_ms"] > 0 and t["drop_absolute"] == pytest.approx(report["fp32"]["mAP"] - t["mAP"])
    chosen = trials[report["chosen_trial"]]
    assert chosen["mAP"] == max(t["mAP"] for t in trials)  # none met it: the most accurate
    q = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in q.metadata_props}["quantization"])
    assert meta["float_nodes"] == sorted(chosen["float_nodes"])
    # the chosen float convs take float inputs: no DequantizeLinear feeds them
    dq = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    by_name = {n.name: n for n in q.graph.node}
    for name in chosen["float_nodes"]:
        assert by_name[name].op_type == "Conv" and not set(by_name[name].input) & dq
    # the file written is the chosen trial: same mAP when evaluated again
    res = CliRunner().invoke(app, ["eval", "-m", str(out), "--images", str(eval_set / "images"),
                                   "--annotations", str(eval_set / "annotations.json"), "--json",
                                   "--out", str(tmp_path / "ev")])
    assert json.loads(res.stdout)["AP"] == pytest.approx(chosen["mAP"], abs=1e-9)


def test_accuracy_aware_cli(eval_set, calib_dir, tmp_path):
    """A target the first trial meets (any drop below 0.99 mAP): exit 0, the table printed,
    one trial, no sensitivity search."""
    from singleshot.hub.registry import bundled_path
    from singleshot.quant.accuracy import report_path

    args = ["quantize", str(bundled_path("demo.onnx")), "--calib", str(calib_dir),
            "--num-images", "4", "--eval-images", str(eval_set / "images"),
            "--eval-annotations", str(eval_set / "annotations.json"), "--eval-limit", "10"]
    out = tmp_path / "easy.onnx"
    res = CliRunner().invoke(app, [*args, "-o", str(out), "--max-drop", "0.99"])
    assert res.exit_code == 0, res.output
    assert "| fp32 | all |" in res.stdout and out.exists()
    report = json.loads(report_path(out).read_text())
    assert report["met_target"] and len(report["trials"]) == 1 and report["sensitivity"] == []


def test_accuracy_aware_needs_both_eval_options(tiny_zoo_onnx, calib_dir, tmp_path):
    res = CliRunner().invoke(app, ["quantize", str(tiny_zoo_onnx), "-o", str(tmp_path / "x.onnx"),
                                   "--calib", str(calib_dir), "--eval-images", str(calib_dir)])
    assert res.exit_code == 2 and "--eval-annotations" in res.stderr
    res = CliRunner().invoke(app, ["quantize", str(tiny_zoo_onnx), "-o", str(tmp_path / "x.onnx"),
                                   "--calib", str(calib_dir), "--eval-images", str(calib_dir),
                                   "--eval-annotations", str(tmp_path / "none.json")])
    assert res.exit_code == 2 and "none.json" in res.stderr and not (tmp_path / "x.onnx").exists()
