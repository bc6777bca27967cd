"""``singleshot mlperf``: MLPerf Inference's SSD-ResNet34 under LoadGen - four scenarios,
performance and accuracy modes, compliance tests, a submission tree."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ...hub.registry import model_files
from .common import (
    BackendOpt,
    JsonOpt,
    OverwriteOpt,
    PrecisionOpt,
    PreprocessOpt,
    StreamsOpt,
    ThreadsOpt,
    _note,
    _parse_conf,
    _require_extra,
    app,
    claim_out,
    ranged,
    user_errors,
)

MODES = ("performance", "accuracy", "submission")
TESTS = ("TEST01", "TEST04", "TEST05")


def _dataset(images: Path | None, annotations: Path | None) -> tuple[Path, Path]:
    """``--images/--annotations``, or ``--images DIR`` in MLPerf's layout
    (``DIR/annotations/instances_val2017.json`` + ``DIR/val2017/``)."""
    if images is not None and annotations is None:
        layout = images / "annotations" / "instances_val2017.json"
        if layout.is_file() and (images / "val2017").is_dir():
            return images / "val2017", layout
    if images is None or annotations is None:
        raise UsageError("give --images DIR and --annotations FILE (or --images holding MLPerf's "
                         "annotations/instances_val2017.json and val2017/)")
    return images, annotations


@app.command()
@user_errors
def mlperf(
    model: Annotated[str, typer.Option("--model", "-m", help="ONNX file or registry name.")] = "demo",
    images: Annotated[Optional[Path], typer.Option(help="Folder of the set's images (or MLPerf's layout: annotations/instances_val2017.json + val2017/).")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="COCO instances JSON; the QSL is its images, in order.")] = None,
    scenario: Annotated[str, typer.Option(help="SingleStream, MultiStream, Server, Offline or all.")] = "SingleStream",
    mode: Annotated[str, typer.Option(help="performance, accuracy (the responses scored as MLPerf's scorer does) or submission (accuracy, performance and --compliance per scenario, in the submission layout).")] = "performance",
    compliance: Annotated[Optional[str], typer.Option(help="With --mode submission: compliance tests to run, e.g. TEST01,TEST04,TEST05.")] = None,
    user_conf: Annotated[Optional[Path], typer.Option("--user-conf", help="A user.conf on top of mlperf.conf (template: singleshot/assets/user.conf).")] = None,
    mlperf_conf: Annotated[Optional[Path], typer.Option("--mlperf-conf", help="Instead of the shipped mlperf.conf (the v2.0 ssd-resnet34 values).")] = None,
    count: Annotated[Optional[int], ranged("limit", "--count", help="Only the first N images of the annotations.")] = None,
    performance_sample_count: Annotated[Optional[int], ranged("performance_sample_count", "--performance-sample-count", help="Samples held in memory for performance runs (mlperf.conf: 64).")] = None,
    target_qps: Annotated[Optional[float], ranged("target_qps", help="Server: queries/s offered; Offline: the expected rate.")] = None,
    target_latency_ms: Annotated[Optional[float], ranged("target_latency_ms", help="Server: the p99 bound (mlperf.conf: 100); MultiStream: the expected latency (528); SingleStream: the expected latency.")] = None,
    min_duration_s: Annotated[Optional[float], ranged("min_duration_s", help="Minimum run time (mlperf.conf: 600 s); shorter is not submission-grade.")] = None,
    min_query_count: Annotated[Optional[int], ranged("min_query_count", help="Minimum queries (mlperf.conf: 1024 to 270336); fewer is not submission-grade.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Seconds per run (min duration 1 s; the fewest queries early stopping accepts: 64 SingleStream, 662 MultiStream/Server, 1 Offline): not submission-grade, said in the summary.")] = False,
    system_name: Annotated[str, typer.Option("--system-name", help="The system's name in the submission tree.")] = "singleshot",
    conf: Annotated[Optional[str], typer.Option(help="Score threshold of the responses (default: the model's own, 0.05 for the zoo; the retired reference's ONNX profile used 0.5).")] = None,
    backend: BackendOpt = "onnxruntime",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "card",
    threads: ThreadsOpt = None,
    streams: StreamsOpt = None,
    batch: Annotated[int, ranged("batch", help="Samples per backend call in Offline (the graph must take batches).")] = 1,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results folder (default runs/mlperf/<timestamp>).")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the detector under MLPerf LoadGen: SingleStream, MultiStream, Server, Offline; accuracy
    runs scored from mlperf_log_accuracy.json as MLPerf's scorer does; compliance TEST01/04/05.
    Exit 0: every run done (a run LoadGen calls INVALID is said in the summary); 1: a compliance
    test failed; 2: usage error."""
    _require_extra("mlperf_loadgen", "loadgen", "singleshot mlperf")
    from ...eval.annotations import load_annotations
    from ...eval.runner import category_map
    from ...io.files import new_run_folder
    from ...perf.mlperf import conf as mconf
    from ...perf.mlperf.suite import ACCURACY_TARGET, run_suite, summary_table
    from ...runtime.backends import resolve_backend, threads_per_stream
    from ...runtime.detector import Detector

    scenarios = list(mconf.SCENARIOS) if scenario == "all" else [scenario]
    if scenario != "all" and scenario not in mconf.SCENARIOS:
        raise UsageError(f"--scenario must be one of {', '.join(mconf.SCENARIOS)} or all, "
                         f"got {scenario!r}")
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    tests = [t.strip().upper() for t in (compliance or "").split(",") if t.strip()]
    if any(t not in TESTS for t in tests):
        raise UsageError(f"--compliance takes {', '.join(TESTS)}, got {compliance!r}")
    if tests and mode != "submission":
        raise UsageError("--compliance runs with --mode submission")
    images, annotations = _dataset(images, annotations)
    overrides = {"performance_sample_count_override": performance_sample_count,
                 "target_qps": target_qps, "target_latency": target_latency_ms,
                 "min_duration": None if min_duration_s is None else int(min_duration_s * 1000),
                 "min_query_count": min_query_count}
    for s in scenarios:  # every conf file is read and checked before any work
        mconf.effective(s, mlperf_conf=mlperf_conf, user_conf=user_conf, overrides=overrides,
                        quick=quick)
    gt = load_annotations(annotations)
    if count is not None:
        gt.data["images"] = gt.data["images"][:count]
    paths = [images / im["file_name"] for im in gt.images]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"{len(missing)} image(s) of {annotations} are not in {images} "
                         f"(first: {missing[0].name})")
    streams = streams or 1
    det = Detector(model, conf=_parse_conf(conf), exif=False, backend=backend,
                   threads=threads_per_stream(resolve_backend(backend), streams, threads),
                   precision=precision, preprocess=preprocess, streams=streams)
    if mode != "performance":  # accuracy is scored against the annotations' classes
        category_map(det.spec, gt)  # a model of other classes: one line, before any run
    det.check_batch(batch)
    out = out or new_run_folder("mlperf")
    claim_out(out, "mlperf", overwrite=overwrite,
              inputs=[images, annotations, user_conf, mlperf_conf, *model_files([model])])
    reference = ACCURACY_TARGET / 0.99 if Path(det.name).name.startswith("ssd-") else None
    rows = run_suite(det, paths, gt, out, scenarios=scenarios, mode=mode, compliance=tests,
                     values_of=lambda s: mconf.effective(
                         s, mlperf_conf=mlperf_conf, user_conf=user_conf, overrides=overrides,
                         quick=quick),
                     system=system_name, streams=streams, batch=batch, model_path=det.name,
                     reference_map=reference, note=_note)
    table = summary_table(rows)
    (out / "summary.md").write_text(table)
    if as_json:
        print(json.dumps({"out": str(out), "rows": rows}))
    print(table, end="", file=sys.stderr if as_json else sys.stdout)
    if not all(r["submission_grade"] for r in rows):
        _note("shorter than the v2.0 minimums (--quick, --min-duration-s or --min-query-count): "
              "not submission-grade")
    if any(v == "FAIL" for r in rows for v in r["compliance"].values()):
        raise typer.Exit(1)
