"""`singleshot mlperf` with LoadGen's real mlperf_loadgen: every scenario in both modes, the
accuracy log scored as MLPerf's scorer does (checked by an independent scorer against eval),
the settings LoadGen used, INVALID runs said with LoadGen's reasons, compliance TEST01/04/05."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Eight synthetic scenes (the demo model's domain) in COCO format."""
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("mlperf-set")
    write_dataset(root, 8, seed=11, workers=1)
    return root / "images", root / "annotations.json"


def _independent_map(log: Path, annotations: Path) -> float:
    """MLPerf's scoring as the reference file describes it, written apart from the harness:
    hex -> float32 x 7, each qsl_idx once, boxes x image size (unclipped) -> xywh, label l ->
    ([0] + getCatIds())[l], COCOeval over the images seen."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
    info = json.loads(annotations.read_text())["images"]
    inv = [0, *gt.getCatIds()]
    seen, dets = set(), []
    for e in json.loads(log.read_text()):
        if e["qsl_idx"] in seen:
            continue
        seen.add(e["qsl_idx"])
        im = info[e["qsl_idx"]]
        vals = np.frombuffer(bytes.fromhex(e["data"]), np.float32)
        for i in range(0, len(vals) - 6, 7):
            _, ymin, xmin, ymax, xmax, score, label = (float(v) for v in vals[i:i + 7])
            dets.append({"image_id": im["id"], "category_id": inv[int(label)], "score": score,
                         "bbox": [xmin * im["width"], ymin * im["height"],
                                  (xmax - xmin) * im["width"], (ymax - ymin) * im["height"]]})
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.imgIds = sorted(info[q]["id"] for q in seen)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.mark.parametrize("conf", ["model", "0.9"])
def test_the_accuracy_log_scores_as_eval(dataset, tmp_path, conf):
    images, ann = dataset
    code, stdout, stderr = run("mlperf", "--images", images, "--annotations", ann, "--mode",
                               "accuracy", "--scenario", "Offline", "--quick", "--conf", conf,
                               "-o", tmp_path / "m", "--json")
    assert code == 0, stderr
    (row,) = json.loads(stdout)["rows"]
    log = tmp_path / "m" / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
    entries = json.loads(log.read_text())
    if conf == "0.9":  # an image with no detection still counts
        assert any(len(e["data"]) < 2 * 4 * 7 for e in entries)
    code, stdout, stderr = run("eval", "-m", "demo", "--images", images, "--annotations", ann,
                               "--json", "-o", tmp_path / "e",
                               *([] if conf == "model" else []))
    assert code == 0, stderr
    if conf == "model":
        ap = json.loads(stdout)["AP"]
        assert abs(row["mAP"] - ap) < 1e-4
    assert abs(_independent_map(log, ann) - row["mAP"]) < 1e-9
    # a repeated qsl_idx is scored once, by both
    doubled = tmp_path / "doubled.json"
    doubled.write_text(json.dumps(entries + entries[:2]))
    from singleshot.eval.annotations import load_annotations
    from singleshot.perf.mlperf.accuracy import score_log

    assert abs(score_log(doubled, load_annotations(ann))["mAP"] - row["mAP"]) < 1e-12
    assert abs(_independent_map(doubled, ann) - row["mAP"]) < 1e-9


def test_every_scenario_runs_in_both_modes_and_is_valid(dataset, tmp_path):
    images, ann = dataset
    code, stdout, stderr = run("mlperf", "--images", images, "--annotations", ann, "--scenario",
                               "all", "--mode", "performance", "--quick", "-o", tmp_path / "p",
                               "--json")
    assert code == 0, stderr
    rows = json.loads(stdout)["rows"]
    assert [r["scenario"] for r in rows] == ["SingleStream", "MultiStream", "Server", "Offline"]
    assert all(r["metric"] > 0 for r in rows), rows
    # SingleStream and Offline have no latency bound: VALID whatever else runs on the machine.
    # MultiStream and Server are judged against latency bounds set from a rate measured a
    # moment before; on a shared 2-core box a --quick run can miss them (seen in CI): there
    # LoadGen's verdict is reported, not asserted
    assert all(r["result"] == "VALID" for r in rows
               if r["scenario"] in ("SingleStream", "Offline")), rows
    assert all(r["result"] in ("VALID", "INVALID") for r in rows), rows
    assert "not submission-grade" in stderr
    code, stdout, stderr = run("mlperf", "--images", images, "--annotations", ann, "--scenario",
                               "all", "--mode", "accuracy", "--quick", "-o", tmp_path / "a",
                               "--json")
    assert code == 0, stderr
    maps = {r["mAP"] for r in json.loads(stdout)["rows"]}
    assert len(maps) == 1 and maps.pop() > 0.3  # the same responses in every scenario


def test_settings_reach_loadgen(dataset, tmp_path):
    from singleshot.perf.mlperf.harness import parse_detail

    images, ann = dataset
    user = tmp_path / "user.conf"
    user.write_text("ssd-resnet34.SingleStream.target_latency = 7\n"
                    "*.SingleStream.min_query_count = 70\nresnet50.*.min_query_count = 5\n")
    code, _, stderr = run("mlperf", "--images", images, "--annotations", ann, "--user-conf", user,
                          "--min-duration-s", "0.3", "-o", tmp_path / "s")
    assert code == 0, stderr
    d = parse_detail(tmp_path / "s" / "SingleStream" / "performance" / "mlperf_log_detail.txt")
    assert d["effective_qsl_rng_seed"] == 6655344265603136530  # the v2.0 seeds, exactly
    assert d["effective_sample_index_rng_seed"] == 15863379492028895792
    assert d["effective_schedule_rng_seed"] == 12662793979680847247
    assert d["requested_performance_sample_count_override"] == 64
    assert d["effective_target_latency_percentile"] == 0.9
    assert d["effective_min_query_count"] == 70 and d["effective_min_duration_ms"] == 300
    assert d["requested_single_stream_expected_latency_ns"] == 7_000_000


def test_an_impossible_server_target_is_invalid_with_loadgens_reason(dataset, tmp_path):
    images, ann = dataset
    code, stdout, stderr = run("mlperf", "--images", images, "--annotations", ann, "--scenario",
                               "Server", "--quick", "--target-qps", "1000", "--target-latency-ms",
                               "1", "-o", tmp_path / "x")
    assert code == 0, stderr
    assert "INVALID" in stdout and "Server INVALID (LoadGen):" in stdout
    assert "Performance constraints satisfied: NO" in stdout


def test_compliance_tests_and_the_submission_tree(dataset, tmp_path):
    from singleshot.eval.annotations import load_annotations
    from singleshot.perf.mlperf import conf as mconf
    from singleshot.perf.mlperf.suite import run_suite
    from singleshot.runtime.detector import Detector

    images, ann = dataset
    out = tmp_path / "sub"
    code, stdout, stderr = run("mlperf", "--images", images, "--annotations", ann, "--scenario",
                               "SingleStream", "--mode", "submission", "--compliance",
                               "TEST01,TEST04,TEST05", "--quick", "--system-name", "box",
                               "-o", out, "--json")
    (row,) = json.loads(stdout)["rows"]
    # TEST01 is exact for a deterministic SUT; TEST04/05 compare timings (noise on a shared
    # 2-core machine can move a 1-second run by more than 5%): they must run and be judged by
    # the reference's margins, and the exit code must follow the verdicts
    assert row["compliance"]["TEST01"] == "PASS", row
    assert set(row["compliance"]) == {"TEST01", "TEST04", "TEST05"}
    assert code == (1 if "FAIL" in row["compliance"].values() else 0), stderr
    for test, margin in (("TEST04", 0.10), ("TEST05", 0.05)):
        v = json.loads((out / "compliance" / "box" / "ssd-resnet34" / "SingleStream" / test /
                        "verify.json").read_text())
        assert v["ratio"] == pytest.approx(v["audited"] / v["normal"]) and v["margin"] == margin
        assert v["passed"] == (abs(v["ratio"] - 1) <= margin or (test == "TEST04" and
                                                                 v["ratio"] > 1))
        assert row["compliance"][test] == ("PASS" if v["passed"] else "FAIL")
    base = out / "results" / "box" / "ssd-resnet34" / "SingleStream"
    for f in ("performance/run_1/mlperf_log_summary.txt", "performance/run_1/mlperf_log_detail.txt",
              "accuracy/mlperf_log_accuracy.json", "accuracy/accuracy.txt"):
        assert (base / f).is_file(), f
    assert (base / "accuracy" / "accuracy.txt").read_text().startswith("mAP=")
    t01 = out / "compliance" / "box" / "ssd-resnet34" / "SingleStream" / "TEST01"
    assert json.loads((t01 / "verify.json").read_text())["sampled"] > 0
    system = json.loads((out / "systems" / "box.json").read_text())
    assert system["model_sha256"] and system["host_processor_core_count"]
    # a SUT that answers wrongly in performance mode fails TEST01
    gt = load_annotations(ann)
    paths = [images / im["file_name"] for im in gt.images]
    rows = run_suite(Detector("demo", exif=False), paths, gt, tmp_path / "bad",
                     scenarios=["SingleStream"], mode="submission", compliance=["TEST01"],
                     values_of=lambda s: mconf.effective(s, quick=True), corrupt=True)
    assert rows[0]["compliance"] == {"TEST01": "FAIL"}
    shutil.rmtree(tmp_path / "bad")


@pytest.mark.parametrize("args, fragment", [
    (["--scenario", "Bogus"], "--scenario"),
    (["--mode", "fast"], "--mode"),
    (["--compliance", "TEST09", "--mode", "submission"], "--compliance"),
    (["--user-conf", "missing.conf"], "--user-conf"),
    (["--mlperf-conf", "BAD"], "expected 'model.scenario.key = value'"),
])
def test_bad_input_is_one_line(dataset, tmp_path, args, fragment):
    images, ann = dataset
    (tmp_path / "BAD").write_text("this is not a conf line\n")
    args = [a if a != "BAD" else tmp_path / "BAD" for a in args]
    code, _, stderr = run("mlperf", "--images", images, "--annotations", ann, *args,
                          "-o", tmp_path / "o")
    assert code == 2 and fragment in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_model_of_other_classes_is_refused(dataset, tmp_path, tiny_zoo_onnx):
    images, ann = dataset
    code, _, stderr = run("mlperf", "-m", tiny_zoo_onnx, "--images", images, "--annotations", ann,
                          "--mode", "accuracy", "-o", tmp_path / "o")
    assert code == 2 and "Traceback" not in stderr and not (tmp_path / "o").exists()


def test_relative_paths_work(dataset, tmp_path, monkeypatch):
    """LoadGen runs in its log folder (audit.config): the QSL's relative paths must not break."""
    images, ann = dataset
    monkeypatch.chdir(images.parent)
    code, stdout, stderr = run("mlperf", "--images", "images", "--annotations",
                               "annotations.json", "--mode", "accuracy", "--scenario",
                               "SingleStream", "--quick", "-o", tmp_path / "r")
    assert code == 0, stderr


def test_batches_give_the_same_accuracy_log(dataset, tmp_path):
    """Offline in batches of 3 (a re-batched demo model) scores as batch 1 does."""
    images, ann = dataset
    batched = tmp_path / "demo-dyn.onnx"
    assert run("export", "demo", "--batch", "dynamic", "-o", batched)[0] == 0
    maps = []
    for model, batch in (("demo", "1"), (batched, "3")):
        code, stdout, stderr = run("mlperf", "-m", model, "--images", images, "--annotations", ann,
                                   "--mode", "accuracy", "--scenario", "Offline", "--quick",
                                   "--batch", batch, "-o", tmp_path / f"b{batch}", "--json")
        assert code == 0, stderr
        maps.append(json.loads(stdout)["rows"][0]["mAP"])
    assert abs(maps[0] - maps[1]) < 1e-4


def test_an_interrupted_suite_keeps_what_finished_and_says_so(dataset, tmp_path):
    from singleshot.eval.annotations import load_annotations
    from singleshot.perf.mlperf import conf as mconf
    from singleshot.perf.mlperf.suite import run_suite
    from singleshot.runtime.detector import Detector

    images, ann = dataset
    gt = load_annotations(ann)

    def note(text):  # Ctrl-C as the second scenario starts
        if text.startswith("Offline"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(Detector("demo", exif=False), [images / im["file_name"] for im in gt.images],
                  gt, tmp_path / "i", scenarios=["SingleStream", "Offline"], mode="accuracy",
                  values_of=lambda s: mconf.effective(s, quick=True), note=note)
    doc = json.loads((tmp_path / "i" / "summary.json").read_text())
    assert doc["interrupted"] is True and [r["scenario"] for r in doc["rows"]] == ["SingleStream"]
    assert (tmp_path / "i" / "SingleStream" / "accuracy" / "mlperf_log_accuracy.json").is_file()


def test_a_run_of_hours_is_said_before_it_starts():
    from singleshot.perf.mlperf import conf as mconf
    from singleshot.perf.mlperf.harness import fill_expectations

    full = fill_expectations(mconf.effective("Offline"), "Offline", 540.0, 2)
    assert any("will take about 111 min" in n and "--quick" in n for n in full), full
    quick = fill_expectations(mconf.effective("Offline", quick=True), "Offline", 540.0, 2)
    assert not any("will take" in n for n in quick)


@pytest.fixture(scope="module")
def zoo1200(tmp_path_factory):
    """Tiny models in the zoo's 1200 layout (1x3x1200x1200 in; bboxes, labels, scores out;
    15130 anchors, 80 classes): fp32 as ssd-12, its int8 QDQ as ssd-12-qdq; and images whose
    ground truth is the fp32 model's own detections, in COCO category ids (1..90, with gaps)."""
    from helpers import lively_model, own_detections_dataset
    from singleshot.export.exporter import export_onnx

    root = tmp_path_factory.mktemp("zoo1200")
    fp32 = root / "tiny-1200.onnx"
    export_onnx(lively_model("1200", width=0.0625), fp32, opset=13)
    data = own_detections_dataset(root / "set", fp32, n=6, empty=4)
    int8 = root / "tiny-1200-int8.onnx"
    code, _, stderr = run("quantize", fp32, "-o", int8, "--calib", data / "images",
                          "--num-images", "4")
    assert code == 0, stderr
    return {"fp32": fp32, "int8": int8}, data


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_zoo_1200_models_score_as_eval_and_run_valid(zoo1200, tmp_path, precision):
    """Labels 1..80 go back to COCO's ids through the scorer's inverse map: a wrong map would
    score near 0 on ground truth made of the model's own detections."""
    models, data = zoo1200
    model, images, ann = models[precision], data / "images", data / "instances.json"
    code, stdout, stderr = run("mlperf", "-m", model, "--images", images, "--annotations", ann,
                               "--mode", "accuracy", "--scenario", "Offline", "--quick",
                               "-o", tmp_path / "a", "--json")
    assert code == 0, stderr
    (row,) = json.loads(stdout)["rows"]
    log = tmp_path / "a" / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
    labels = {int(v) for e in json.loads(log.read_text())
              for v in np.frombuffer(bytes.fromhex(e["data"]), np.float32)[6::7]}
    assert max(labels) > 11  # labels whose COCO id is not the label itself (12 -> 13, ...)
    code, stdout, stderr = run("eval", "-m", model, "--images", images, "--annotations", ann,
                               "--json", "-o", tmp_path / "e")
    assert code == 0, stderr
    assert abs(row["mAP"] - json.loads(stdout)["AP"]) < 1e-4
    assert abs(_independent_map(log, ann) - row["mAP"]) < 1e-9
    if precision == "fp32":
        assert row["mAP"] > 0.8
    code, stdout, stderr = run("mlperf", "-m", model, "--images", images, "--annotations", ann,
                               "--scenario", "SingleStream", "--quick", "-o", tmp_path / "p",
                               "--json")
    assert code == 0, stderr
    code, stdout2, stderr = run("mlperf", "-m", model, "--images", images, "--annotations", ann,
                                "--scenario", "Offline", "--quick", "-o", tmp_path / "o",
                                "--json")
    assert code == 0, stderr
    rows = json.loads(stdout)["rows"] + json.loads(stdout2)["rows"]
    assert all(r["metric"] > 0 for r in rows), rows
    # SingleStream and Offline have no latency bound: VALID whatever else runs on the machine.
    # MultiStream and Server are judged against latency bounds set from a rate measured a
    # moment before; on a shared 2-core box a --quick run can miss them (seen in CI): there
    # LoadGen's verdict is reported, not asserted
    assert all(r["result"] == "VALID" for r in rows
               if r["scenario"] in ("SingleStream", "Offline")), rows
    assert all(r["result"] in ("VALID", "INVALID") for r in rows), rows


def test_zoo_1200_submission_passes_test01(zoo1200, tmp_path):
    models, data = zoo1200
    code, stdout, stderr = run("mlperf", "-m", models["fp32"], "--images", data / "images",
                               "--annotations", data / "instances.json", "--mode", "submission",
                               "--scenario", "SingleStream", "--compliance", "TEST01", "--quick",
                               "-o", tmp_path / "s", "--json")
    assert code == 0, stderr
    (row,) = json.loads(stdout)["rows"]
    assert row["compliance"] == {"TEST01": "PASS"} and row["mAP"] > 0.8


def test_compliance_margins_are_the_references():
    from singleshot.perf.mlperf.harness import verify_margin

    ms = 1_000_000
    # TEST04 looks for caching (a faster repeated sample): slower passes in SingleStream only
    assert verify_margin("TEST04", "SingleStream", 10 * ms, 13 * ms)["passed"]
    assert not verify_margin("TEST04", "SingleStream", 10 * ms, 8.5 * ms)["passed"]
    assert verify_margin("TEST04", "SingleStream", 10 * ms, 9.1 * ms)["passed"]
    assert not verify_margin("TEST04", "MultiStream", 10 * ms, 13 * ms)["passed"]
    assert not verify_margin("TEST04", "Offline", 100.0, 89.0)["passed"]
    # TEST05: 5% either way
    assert verify_margin("TEST05", "Offline", 100.0, 95.5)["passed"]
    assert not verify_margin("TEST05", "SingleStream", 10 * ms, 10.6 * ms)["passed"]
    assert not verify_margin("TEST05", "SingleStream", 10 * ms, 9.4 * ms)["passed"]
    # 20% in SingleStream when the normal latency is at most 200 us
    assert verify_margin("TEST05", "SingleStream", 150_000, 170_000)["margin"] == 0.20
    assert verify_margin("TEST05", "SingleStream", 150_000, 170_000)["passed"]


def test_a_multistream_run_over_its_target_is_said(dataset, tmp_path):
    images, ann = dataset
    code, stdout, stderr = run("mlperf", "--images", images, "--annotations", ann, "--scenario",
                               "MultiStream", "--quick", "--target-latency-ms", "0.5",
                               "-o", tmp_path / "m")
    assert code == 0, stderr
    assert "over target" in stdout and "over the 0.5 ms target latency" in stdout


def test_ctrl_c_inside_a_loadgen_run(dataset, tmp_path):
    """SIGINT while LoadGen runs (a 60 s minimum): exit 130 at once, one line, the partial logs
    kept and marked, summary.json says which run was cut."""
    import os
    import signal
    import subprocess
    import sys
    import time

    images, ann = dataset
    out = tmp_path / "cut"
    cmd = [sys.executable, "-m", "singleshot", "mlperf", "--images", str(images),
           "--annotations", str(ann), "--scenario", "SingleStream", "--min-duration-s", "60",
           "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    detail = out / "SingleStream" / "performance" / "mlperf_log_detail.txt"
    deadline = time.monotonic() + 180  # a loaded machine starts slowly; the run lasts 60 s
    while not detail.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert detail.is_file() and proc.poll() is None, "LoadGen's run did not start"
    time.sleep(1.0)  # well inside the run
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - t0 < 10  # not at the end of the 60 s run
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted") and "Traceback" not in stderr
    run_dir = out / "SingleStream" / "performance"
    assert (run_dir / "INTERRUPTED").is_file() and detail.stat().st_size > 0
    doc = json.loads((out / "summary.json").read_text())
    assert doc["interrupted"] is True and doc["cut_run"] == str(run_dir.resolve())
