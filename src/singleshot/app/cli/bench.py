"""``singleshot bench``: models x backends, side by side, with the CPU named."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import SingleshotError, UsageError
from ...io.files import write_json_atomic, write_text_atomic
from ...hub.registry import model_files
from .common import (
    JsonOpt,
    OverwriteOpt,
    PrecisionOpt,
    StreamsOpt,
    ThreadsOpt,
    _backends,
    _err,
    _require_extra,
    app,
    claim_out,
    flag,
    ranged,
    user_errors,
)


@app.command()
@user_errors
def bench(
    models: Annotated[Optional[list[str]], typer.Argument(metavar="MODEL...", help="ONNX files or registry names (checkpoints with --backend torch), or -m/--model (repeatable); none with --server.", show_default=False)] = None,
    model_opts: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A model to time (repeatable; the same as MODEL...).")] = None,
    backend: Annotated[str, typer.Option("--backend", callback=_backends, help="Comma-separated: auto, onnxruntime, openvino, torch.")] = "auto",
    images: Annotated[Optional[Path], typer.Option(help="Folder of images (default: one generated photo-like 640x480 JPEG); files that do not decode are skipped and reported.")] = None,
    iterations: Annotated[int, ranged("iterations", help="Timed single-stream images per model and backend.")] = 20,
    warmup: Annotated[int, ranged("warmup", help="Untimed runs first.")] = 3,
    threads: ThreadsOpt = None,
    streams: StreamsOpt = None,
    precision: PrecisionOpt = "auto",
    preprocess: Annotated[Optional[str], typer.Option(help="card or fast (default: fast with --backend auto, card otherwise).")] = None,
    throughput: Annotated[bool, typer.Option("--throughput/--no-throughput", help="Also measure pipelined throughput.")] = True,
    scenario: Annotated[Optional[str], typer.Option(help="Also run MLPerf LoadGen (the singleshot mlperf harness, performance mode, short): singlestream, multistream, offline or server.")] = None,
    duration: Annotated[float, ranged("duration", help="LoadGen minimum duration, seconds.")] = 10.0,
    target_qps: Annotated[Optional[float], ranged("target_qps", help="LoadGen server scenario: queries per second.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write results.json, results.md, plot.png (and LoadGen logs) here.")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    batch: Annotated[Optional[str], typer.Option(help="Also time these batch sizes, e.g. 1,4,8 (images/s side by side; needs a graph that takes batches).")] = None,
    server: Annotated[Optional[str], typer.Option(help="Load-test a running server instead: http://host:port (closed loop, POST /detect with the images).")] = None,
    clients: Annotated[int, ranged("clients", help="--server: concurrent clients.")] = 16,
    requests: Annotated[Optional[int], ranged("requests", help="--server: requests in all (default 1000 unless --seconds).")] = None,
    seconds: Annotated[Optional[float], ranged("seconds", help="--server: run for this long instead of a request count.")] = None,
    api_key: Annotated[Optional[str], typer.Option(help="--server: bearer token to send.")] = None,
) -> None:
    """End-to-end speed (encoded image -> detections) of every model x backend, side by side:
    per-stage times, latency p50/p90/p99, throughput; optionally an MLPerf LoadGen scenario.
    Every model, backend and extra is checked before anything is timed; a backend that fails
    while running is reported in the output and the rest is written (exit 1)."""
    from ...perf.bench import (
        SCENARIOS,
        BenchOptions,
        batch_markdown,
        bench_batches,
        bench_document,
        bench_pair,
        bench_report,
        check_models,
        int8_notes,
        load_inputs,
        loadgen_run,
        make_detector,
        parse_batches,
        plot,
    )
    from ...runtime.cpu import cpu_info

    if server is not None:
        from ...perf.bench import sample_image
        from ...perf.loadtest import load_test

        bodies = [b for _, b in load_inputs(images)] if images else \
            [sample_image(seed=k) for k in range(16)]
        res = load_test(server, bodies, clients=clients, api_key=api_key, duration=seconds,
                        requests=requests if requests or seconds else 1000)
        if as_json:
            print(json.dumps(res))
        lat = res["latency_ms"]
        stream = sys.stderr if as_json else sys.stdout
        print(f"{res['url']}: {res['requests']} requests from {res['clients']} clients in "
              f"{res['seconds']:.1f} s: {res['throughput_rps']:.1f} req/s, latency p50 "
              f"{lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, "
              f"{res['errors']} errors {res['status']}"
              + (f"; ready {res['ready']['ok']}/{res['ready']['checks']}"
                 if res["ready"]["checks"] else ""), file=stream)
        if res["errors"]:
            raise typer.Exit(1)
        return
    models = [*(models or []), *(model_opts or [])]
    if not models:
        raise UsageError("give MODEL... (or -m/--model) to bench, or --server URL to load-test "
                         "a server")
    if scenario is not None:
        if scenario not in SCENARIOS:
            raise UsageError(f"--scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
        _require_extra("mlperf_loadgen", "loadgen", "--scenario")
    backends = list(dict.fromkeys(b.strip().lower() for b in backend.split(",") if b.strip()))
    if not backends:
        raise UsageError("--backend needs at least one backend")
    sizes = parse_batches(batch) if batch is not None else None
    check_models(models, backends, sizes)  # every model loads, before anything is timed
    skipped: list[str] = []
    inputs = load_inputs(images, skipped=skipped)
    for err in skipped:
        _err(f"skipped {err}")
    if out is not None:
        claim_out(out, "bench", overwrite=overwrite, inputs=[images, *model_files(models)])
    opts = BenchOptions(iterations=iterations, warmup=warmup, threads=threads, streams=streams,
                        precision=precision, preprocess=preprocess, throughput=throughput)
    rows, failed, batch_rows = [], [], []
    for m in models:
        for b in backends:
            try:
                if sizes:  # first: a graph that takes no batch stops here, before any timing
                    batch_rows += bench_batches(m, b, inputs, opts, sizes)
                row = bench_pair(m, b, inputs, opts)
                if scenario:
                    det = make_detector(m, b, opts, throughput=scenario != "singlestream")
                    where = (out or Path(tempfile.mkdtemp(prefix="singleshot-loadgen-"))) / \
                        f"loadgen-{Path(m).stem}-{row['backend']}-{scenario}"
                    summary = loadgen_run(det, inputs, scenario, where, duration_ms=int(duration * 1e3),
                                          target_qps=target_qps)
                    row["loadgen"] = {"scenario": scenario, "log_dir": str(where),
                                      **{k: v for k, v in summary.items() if k != "text"}}
                    print(summary["text"], file=sys.stderr if as_json else sys.stdout)
            except SingleshotError as err:  # e.g. QOperator ops on OpenVINO: report, go on
                failed.append({"model": m, "backend": b, "error": err.render(flag)})
                _err(f"{m} on {b}: {failed[-1]['error']}")
                continue
            rows.append(row)
    cpu = cpu_info()
    notes = int8_notes(rows, cpu) + [f"skipped {e}" for e in skipped]
    table = bench_report(rows, cpu, notes, failed)
    if sizes:
        table += "\nbatches (end to end, one backend call per batch):\n\n" + batch_markdown(batch_rows)
    doc = bench_document(rows, cpu, notes, batch_rows if sizes else None)
    doc["failed"], doc["skipped_images"] = failed, skipped
    if out is not None:
        write_json_atomic(out / "results.json", doc)
        write_text_atomic(out / "results.md", table)
        if rows:
            plot(rows, out / "plot.png", title=f"singleshot bench - {cpu['model']}")
    if as_json:
        print(json.dumps(doc))
    print(table, end="", file=sys.stderr if as_json else sys.stdout)
    if failed or skipped:
        raise typer.Exit(1)
