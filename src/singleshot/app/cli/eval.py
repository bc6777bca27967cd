"""``singleshot eval``: COCO mAP of models and results files, side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from .common import (
    AddressOpt,
    BackendOpt,
    BatchOpt,
    CpusPerWorkerOpt,
    EngineOpt,
    JsonOpt,
    OverwriteOpt,
    PrecisionOpt,
    PreprocessOpt,
    ThreadsOpt,
    WorkersOpt,
    _err,
    _require_extra,
    app,
    cluster_summary,
    ranged,
    ray_options,
    user_errors,
)


@app.command("eval")
@user_errors
def eval_(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="ONNX file or registry name; repeat to compare side by side (the first is the baseline).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Folder with the dataset's images.")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="COCO instances JSON.")] = None,
    results: Annotated[Optional[list[Path]], typer.Option("--results", help="Score an existing COCO results file instead (repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default runs/eval/<timestamp>); give the same one again to resume an interrupted run of the same model and settings.")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    mlperf: Annotated[bool, typer.Option("--mlperf", help="MLPerf convention: drop images without annotations.")] = False,
    clip: Annotated[bool, typer.Option("--clip", help="Clip boxes to the image (the reference does not).")] = False,
    fast: Annotated[bool, typer.Option("--fast", help="faster-coco-eval instead of pycocotools (unofficial).")] = False,
    limit: Annotated[Optional[int], ranged("limit", help="Evaluate only the first N images (by id).")] = None,
    report: Annotated[Optional[bool], typer.Option("--report/--no-report", help="Explain the AP in OUT/report.html (+ report.json, report/*.png): TIDE error breakdown, confusion matrix, PR and F1 curves with the best threshold per class, AP by size and objects per image, the costliest images drawn. Default: on with --out.")] = None,
    report_conf: Annotated[float, ranged("conf", "--report-conf", help="The report's score threshold for the confusion matrix and drawings.")] = 0.25,
    report_worst: Annotated[int, ranged("report_worst", "--report-worst", help="How many of the images that lose the most AP the report draws.")] = 8,
    threads: ThreadsOpt = None,
    backend: BackendOpt = "onnxruntime",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "card",
    batch: BatchOpt = 1,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = None,
) -> None:
    """COCO box mAP (the 12 standard metrics and per-class AP) of models or results files."""
    from ...eval.report import per_class_table
    from ...eval.suite import evaluate_many

    if not model and not results:
        raise UsageError("give --model (with --images) or --results, and --annotations")
    if annotations is None:
        raise UsageError("--annotations is required")
    if fast:
        _require_extra("faster_coco_eval", "fast", "--fast")
    cluster = ray_options(engine, address, workers, cpus_per_worker, batch)
    runner = None
    if cluster is not None:
        from ...cluster.jobs import ray_runner

        runner = ray_runner(cluster)
    from ..progress import ConsoleProgress

    res = evaluate_many(
        list(model or []), list(results or []), annotations, images, out, clip=clip, mlperf=mlperf,
        fast=fast, limit=limit, threads=threads,
        detector_options={"backend": backend, "precision": precision, "preprocess": preprocess},
        overwrite=overwrite, progress=ConsoleProgress(enabled=not as_json or sys.stderr.isatty()),
        batch=batch, runner=runner, report=out is not None if report is None else report,
        report_conf=report_conf, report_worst=report_worst)
    rows, table, out = res.rows, res.table, res.out
    for failures in res.failures.values():
        for _, error in failures:
            _err(error)
    if as_json:
        doc = res.to_dict()
        print(json.dumps(doc))
    stream = sys.stderr if as_json else sys.stdout
    print(per_class_table(rows), file=stream)
    print(table, file=stream, end="")
    print(f"evaluator: {rows[0]['evaluator']}; report in {out}"
          + (f" ({res.report.name}: why each AP is what it is)" if res.report else ""), file=stream)
    if res.report:
        _print_best_conf(res.report.with_name("report.json"), stream)
    if cluster is not None and cluster.timings.get("images"):
        print(cluster_summary(cluster), file=sys.stderr)
    for warning in res.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if any(r["failed"] for r in rows) or res.nothing_evaluated:
        raise typer.Exit(1)


def _print_best_conf(report_json: Path, stream) -> None:
    """Per model, the F1-optimal score threshold overall and per class: what --conf should be
    for people (from report.json)."""
    for m in json.loads(report_json.read_text())["models"]:
        best = m["f1_optimal"]
        overall = best.get("all")
        if not overall:
            continue
        per = ", ".join(f"{name} {v['conf']:.2f}" for name, v in best.items()
                        if name != "all" and v)
        print(f"{m['model']}: best --conf by F1 {overall['conf']:.2f} (F1 {overall['f1']:.3f});"
              f" per class: {per}", file=stream)
