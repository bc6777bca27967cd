"""The ``singleshot`` command line: thin wrappers over the library (no logic of its own)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ModelError, SingleshotError, UsageError
from ..io.files import ensure_dir, ensure_parent, write_json_atomic, write_text_atomic

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="SSD-ResNet34 (ONNX Model Zoo) detection, export, evaluation and more. "
                       "Exit codes: 0 done; 1 some inputs failed; 2 usage or model error.")


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        print(f"singleshot {__version__}")
        raise typer.Exit()


@app.callback()
def _main(ctx: typer.Context,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """SSD-ResNet34 (ONNX Model Zoo) detection, export, evaluation and more. Exit codes: 0 done;
    1 some inputs failed; 2 usage or model error."""
    from ..progress import set_default
    from .progress import ConsoleProgress

    previous = set_default(ConsoleProgress())  # library progress: a bar here, lines in logs
    ctx.call_on_close(lambda: set_default(previous))


def _alias(new, new_name: str, old, old_name: str):
    """A renamed option's value: the new spelling, or the old one (kept as a hidden alias so no
    script breaks); both given differently is a usage error."""
    if old is None:
        return new
    if new is not None and new != old:
        raise UsageError(f"{old_name} is the old name of {new_name}; give one of them")
    return old


def _require_extra(module: str, extra: str, what: str) -> None:
    """Fail at option parsing, not after the work, when an optional package is missing."""
    import importlib

    try:
        importlib.import_module(module)  # the work imports it anyway; a broken install shows too
    except ImportError:
        raise UsageError(f"{what} needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'singleshot[{extra}]'") from None


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def user_errors(fn):
    """Turn SingleshotError into a one-line message and its exit code (no traceback)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SingleshotError as err:
            _err(str(err))
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None

    return wrapper


BackendOpt = Annotated[str, typer.Option("--backend", help="onnxruntime, openvino, torch (checkpoints) or auto (OpenVINO where installed).")]
PrecisionOpt = Annotated[str, typer.Option(help="auto (the runtime's default; OpenVINO: bf16 where the CPU has it), fp32 (or f32), or bf16 (OpenVINO only).")]
PreprocessOpt = Annotated[str, typer.Option(help="card (PIL + numpy, the reference) or fast (OpenCV resize, normalisation inside the graph).")]
StreamsOpt = Annotated[Optional[int], typer.Option(help="Inferences in flight at once (default: 1; the runtime's choice for throughput runs).")]
CONF_FOR_PEOPLE = 0.25  # what detect draws and returns by default; `--conf model`: the model's own


def _parse_conf(conf: str | None) -> float | None:
    """``--conf``: a number in [0, 1], or ``model`` for the model's own threshold (None)."""
    if conf is None or str(conf).lower() == "model":
        return None
    try:
        value = float(conf)
    except ValueError:
        raise UsageError(f"--conf must be a number from 0 to 1 or 'model', got {conf!r}") from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--conf must be between 0.0 and 1.0, got {value}")
    return value


@app.command()
@user_errors
def detect(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="Image files, folders or glob patterns.")],
    model: Annotated[str, typer.Option("--model", "-m", help="ONNX file or registry name.")] = "demo",
    conf: Annotated[str, typer.Option(help="Score threshold for what is returned and drawn; 'model' for the model's own (zoo: 0.05).")] = str(CONF_FOR_PEOPLE),
    iou: Annotated[Optional[float], typer.Option(help="NMS IoU threshold (model's own: 0.5).")] = None,
    max_det: Annotated[Optional[int], typer.Option(help="Detections per image (model's: 200).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write annotated images and detections.json here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    no_exif: Annotated[bool, typer.Option("--no-exif", help="Do not apply EXIF orientation.")] = False,
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders.")] = False,
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime intra-op threads.")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(help="Refuse images with more pixels.")] = None,
    backend: BackendOpt = "onnxruntime",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "card",
    streams: StreamsOpt = None,
) -> None:
    """Detect objects in images. Exit 0: all inputs done; 1: some failed; 2: usage error.
    Decoding overlaps inference; --streams N runs N images at once."""
    from tqdm import tqdm

    from ..io.images import MAX_PIXELS, load_image
    from ..io.sources import expand_sources
    from ..runtime.detector import Detector
    from ..runtime.report import DetectionReport, detect_paths

    conf_value = _parse_conf(conf)
    if iou is not None and not 0.0 <= iou <= 1.0:
        raise UsageError(f"--iou must be between 0.0 and 1.0, got {iou}")
    if max_det is not None and max_det < 1:
        raise UsageError(f"--max-det must be at least 1, got {max_det}")
    if out is not None:
        ensure_dir(out)
    det = Detector(model, conf=conf_value, iou=iou, max_det=max_det, exif=not no_exif,
                   threads=threads, backend=backend, precision=precision,
                   preprocess=preprocess, streams=streams or 1)
    paths, notes = expand_sources(sources, recursive)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    load = lambda p: load_image(p, exif=not no_exif, max_pixels=max_pixels or MAX_PIXELS)  # noqa: E731
    report = DetectionReport(det.name)
    bar = tqdm(total=len(paths), unit="img", file=sys.stderr, leave=False, dynamic_ncols=True,
               disable=len(paths) < 2 or not sys.stderr.isatty())
    for r in detect_paths(det, paths, load, report=report, annotate_into=out, streams=streams):
        bar.update(1)
        if r.error is not None:
            _err(r.error)
        elif not as_json:
            d = r.detections
            top = ", ".join(f"{n} {s:.2f}" for n, s in zip(d.names[:5], d.scores[:5]))
            bar.write(f"{r.path}: {len(d)} detections" + (
                f" ({top}{', ...' if len(d) > 5 else ''})" if len(d) else ""), file=sys.stdout)
    bar.close()
    doc = report.to_dict()
    if out is not None:
        write_json_atomic(out / "detections.json", doc)
        print(f"wrote {len(report.images) - report.failed} annotated image(s) and "
              f"detections.json to {out}", file=sys.stderr)
    if as_json:
        print(json.dumps(doc))
    if len(paths) > 1:
        print(f"{len(paths)} images, {report.detections} detections (score >= "
              f"{det.params.score_threshold:g}), {report.failed} failed, "
              f"{report.images_per_s:.2f} images/s", file=sys.stderr)
    if report.failed:
        print(f"{report.failed} of {len(paths)} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)

@app.command()
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="MLPerf .pth/.pytorch, torchvision or singleshot checkpoint.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the .onnx file.  [required]")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", hidden=True)] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (10, 12, 13, 17...).")] = 13,
    raw: Annotated[bool, typer.Option("--raw", help="Output head logits loc/conf with a dynamic batch (no NMS).")] = False,
    input_size: Annotated[Optional[str], typer.Option(help="Model config when the checkpoint does not say: 1200 or 300.")] = None,
    classes: Annotated[Optional[Path], typer.Option(help="Text file with one class name per line.")] = None,
    check: Annotated[bool, typer.Option(help="Run the parity check against torch.")] = True,
) -> None:
    """Export a checkpoint to ONNX in the zoo contract (or raw heads with --raw)."""
    _require_extra("torch", "torch", "export")
    output = _alias(out, "--out", output, "--output")
    if output is None:
        raise UsageError("--out/-o is required: where to write the .onnx file")
    ensure_parent(output)
    from ..export.exporter import export_onnx
    from ..model.checkpoint import detector_from_checkpoint
    if input_size is not None and input_size not in ("1200", "300"):
        raise UsageError(f"--input-size must be 1200 or 300, got {input_size}")
    model, ckpt = detector_from_checkpoint(checkpoint, input_size)
    cfg = model.cfg
    names = ckpt.class_names
    if classes is not None:
        if not classes.is_file():
            raise UsageError(f"{classes}: no such file")
        names = tuple(n.strip() for n in classes.read_text().splitlines() if n.strip())
    report = export_onnx(model, output, opset=opset, raw=raw, check=check, class_names=names,
                         category_ids=ckpt.category_ids)
    print(f"{checkpoint} ({ckpt.kind}) -> {output}: {'raw heads' if raw else 'zoo contract'}, "
          f"opset {opset}, input {cfg.input_size}x{cfg.input_size}, {cfg.num_classes} classes, "
          f"{cfg.default_boxes().num_anchors} default boxes")
    if report is not None:
        print(report)


@app.command("eval")
@user_errors
def eval_(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="ONNX file or registry name; repeat to compare side by side (the first is the baseline).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Folder with the dataset's images.")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="COCO instances JSON.")] = None,
    results: Annotated[Optional[list[Path]], typer.Option("--results", help="Score an existing COCO results file instead (repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default runs/eval/<timestamp>); give the same one again to resume an interrupted run of the same model and settings.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over in --out: what is there moves to OUT/previous-N/.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
    mlperf: Annotated[bool, typer.Option("--mlperf", help="MLPerf convention: drop images without annotations.")] = False,
    clip: Annotated[bool, typer.Option("--clip", help="Clip boxes to the image (the reference does not).")] = False,
    fast: Annotated[bool, typer.Option("--fast", help="faster-coco-eval instead of pycocotools (unofficial).")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N images (by id).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime intra-op threads.")] = None,
    backend: BackendOpt = "onnxruntime",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "card",
) -> None:
    """COCO box mAP (the 12 standard metrics and per-class AP) of models or results files."""
    from ..eval.coco import METRIC_KEYS
    from ..eval.report import per_class_table
    from ..eval.suite import evaluate_many

    if not model and not results:
        raise UsageError("give --model (with --images) or --results, and --annotations")
    if annotations is None:
        raise UsageError("--annotations is required")
    if fast:
        _require_extra("faster_coco_eval", "fast", "--fast")
    from .progress import ConsoleProgress

    res = evaluate_many(
        list(model or []), list(results or []), annotations, images, out, clip=clip, mlperf=mlperf,
        fast=fast, limit=limit, threads=threads,
        detector_options={"backend": backend, "precision": precision, "preprocess": preprocess},
        overwrite=overwrite, progress=ConsoleProgress(enabled=not as_json or sys.stderr.isatty()))
    rows, table, out = res.rows, res.table, res.out
    for failures in res.failures.values():
        for _, error in failures:
            _err(error)
    if as_json:
        flat = [{k: r[k] for k in (*METRIC_KEYS, "per_class")} for r in rows]
        doc = flat[0] if len(rows) == 1 else {"models": [{"model": r["model"], **f}
                                                         for r, f in zip(rows, flat)]}
        print(json.dumps(doc))
    stream = sys.stderr if as_json else sys.stdout
    print(per_class_table(rows), file=stream)
    print(table, file=stream, end="")
    print(f"evaluator: {rows[0]['evaluator']}; report in {out}", file=stream)
    if any(r["failed"] for r in rows):
        raise typer.Exit(1)

@app.command()
@user_errors
def demo(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default runs/demo/<timestamp>).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to show (default: the bundled one).")] = "demo",
    num_images: Annotated[Optional[int], typer.Option("--num-images", help="Number of held-out scenes.  [default: 12]")] = None,
    images: Annotated[Optional[int], typer.Option("--images", hidden=True)] = None,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Also run the bundled int8 variants and print the fp32/int8 table.")] = True,
) -> None:
    """Run the bundled model on held-out synthetic scenes: annotated images, detections.json and
    a report with mAP and per-stage timings. Offline."""
    import datetime

    from .demo import run_demo

    images = _alias(num_images, "--num-images", images, "--images")
    images = 12 if images is None else images
    if images < 1:
        raise UsageError("--num-images must be at least 1")
    out = ensure_dir(out or Path("runs") / "demo" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    res = run_demo(out, model=model, n_images=images, compare=compare)
    t = res.timings_ms
    print(f"mAP (COCO AP@[.5:.95]) on {res.n_images} held-out scenes: {res.metrics['AP']:.3f} "
          f"(AP50 {res.metrics['AP50']:.3f})")
    print("per image: " + ", ".join(f"{k} {t[k]:.1f} ms" for k in
                                    ("decode", "preprocess", "inference", "postprocess")))
    if res.card:
        from .demo import card_markdown

        print("fp32 vs int8 on the same scenes (speed-up of the inference stage):")
        print(card_markdown(res.card), end="")
        from ..perf.cpu import cpu_info, describe, why_int8_is_slow

        print(describe())
        if any(r["speedup"] < 1 for r in res.card):
            print(f"note: int8 is slower here: {why_int8_is_slow(cpu_info())} "
                  "(bench/RESULTS.md times the full-width 1200x1200 model)")
    print(f"report: {out / 'report.html'} (and report.md); annotated images: {out / 'annotated'}; "
          f"detections: {out / 'detections.json'}")


@app.command()
@user_errors
def quantize(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Float32 ONNX model (zoo contract or raw heads) or registry name.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the int8 model.  [required]")] = None,
    calib: Annotated[Optional[Path], typer.Option(help="Folder of calibration images.  [required]")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", hidden=True)] = None,
    format: Annotated[str, typer.Option("--format", help="qdq (portable: onnxruntime, OpenVINO) or qoperator (onnxruntime only).")] = "qdq",
    num_images: Annotated[int, typer.Option(help="Calibration images to use.")] = 100,
    method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel.")] = True,
    activations: Annotated[str, typer.Option(help="uint8 (asymmetric, fast here) or int8.")] = "uint8",
    eval_images: Annotated[Optional[Path], typer.Option(help="Accuracy-aware mode: folder of evaluation images.")] = None,
    eval_annotations: Annotated[Optional[Path], typer.Option(help="Accuracy-aware mode: COCO annotations of --eval-images.")] = None,
    max_drop: Annotated[str, typer.Option(help="Allowed mAP drop: 1% (relative to fp32) or 0.01 (absolute).")] = "1%",
    max_trials: Annotated[int, typer.Option(help="Accuracy-aware mode: trials after the first (1, 2, 4, ... convs back in float).")] = 6,
    eval_limit: Annotated[Optional[int], typer.Option(help="Accuracy-aware mode: evaluate on the first N images only.")] = None,
) -> None:
    """Static int8 quantization with a float post-processing tail (QDQ by default).

    With --eval-images and --eval-annotations, fp32 and int8 are evaluated (COCO mAP) and the
    most sensitive convolutions go back to float, trial by trial, until the drop is within
    --max-drop; every trial is printed and OUT.report.json is written."""
    from ..quant.static import Recipe, quantize_model, recipe_of
    from ..runtime.detector import resolve_model_path

    model = resolve_model_path(str(model))  # a registry name (demo, ssd-12) works too
    output = _alias(out, "--out", output, "--output")
    if output is None:
        raise UsageError("--out/-o is required: where to write the int8 model")
    if calib is None:
        raise UsageError("--calib is required: a folder of calibration images")
    if num_images < 1:
        raise UsageError("--num-images must be at least 1")
    if (eval_images is None) != (eval_annotations is None):
        raise UsageError("accuracy-aware mode needs both --eval-images and --eval-annotations")
    recipe = Recipe(format=format.lower(), activations=activations.lower(), per_channel=per_channel,
                    method=method.lower(), num_images=num_images)
    recipe.validate()  # a bad --format or --method is refused before any work
    ensure_parent(output)
    t0 = time.monotonic()
    if eval_images is None:
        written = quantize_model(model, output, calib, recipe)
        print(f"recipe: {recipe_of(written).describe()}")  # as done: images actually used
        print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB) in "
              f"{time.monotonic() - t0:.0f} s")
        return
    from ..quant.accuracy import DropTarget, format_trials, quantize_accuracy_aware, report_path

    target = DropTarget.parse(max_drop)
    report = quantize_accuracy_aware(model, output, calib, recipe, eval_images=eval_images,
                                     eval_annotations=eval_annotations, target=target,
                                     max_trials=max_trials, limit=eval_limit)
    print(f"recipe: {recipe_of(output).describe()}")
    print(format_trials(report), end="")
    chosen = report["trials"][report["chosen_trial"]]
    print(f"wrote {output} (trial {chosen['trial']}, {len(chosen['float_nodes'])} conv(s) in float) "
          f"and {report_path(output)} in {time.monotonic() - t0:.0f} s")
    if not report["met_target"]:
        print(f"error: no trial kept the drop within {target.describe()}; wrote the most "
              "accurate one (raise --max-trials or --max-drop)", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
@user_errors
def bench(
    models: Annotated[list[str], typer.Argument(metavar="MODEL...", help="ONNX files or registry names (checkpoints with --backend torch).")],
    backend: Annotated[str, typer.Option("--backend", help="Comma-separated: auto, onnxruntime, openvino, torch.")] = "auto",
    images: Annotated[Optional[Path], typer.Option(help="Folder of images (default: one generated photo-like 640x480 JPEG).")] = None,
    iterations: Annotated[int, typer.Option(help="Timed single-stream images per model and backend.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 3,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads (default: the runtime's).")] = None,
    streams: StreamsOpt = None,
    precision: PrecisionOpt = "auto",
    preprocess: Annotated[Optional[str], typer.Option(help="card or fast (default: fast with --backend auto, card otherwise).")] = None,
    throughput: Annotated[bool, typer.Option("--throughput/--no-throughput", help="Also measure pipelined throughput.")] = True,
    scenario: Annotated[Optional[str], typer.Option(help="Also run MLPerf LoadGen: singlestream, offline or server.")] = None,
    duration: Annotated[float, typer.Option(help="LoadGen minimum duration, seconds.")] = 10.0,
    target_qps: Annotated[Optional[float], typer.Option(help="LoadGen server scenario: queries per second.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write results.json, results.md, plot.png (and LoadGen logs) here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
) -> None:
    """End-to-end speed (encoded image -> detections) of every model x backend, side by side:
    per-stage times, latency p50/p90/p99, throughput; optionally an MLPerf LoadGen scenario."""
    from ..perf.bench import (
        SCENARIOS,
        BenchOptions,
        bench_pair,
        int8_notes,
        load_inputs,
        loadgen_run,
        make_detector,
        markdown,
        plot,
    )
    from ..perf.cpu import cpu_info, describe

    if iterations < 1 or warmup < 0:
        raise UsageError("--iterations must be at least 1 and --warmup at least 0")
    if scenario is not None:
        if scenario not in SCENARIOS:
            raise UsageError(f"--scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
        _require_extra("mlperf_loadgen", "loadgen", "--scenario")
    if out is not None:
        ensure_dir(out)
    opts = BenchOptions(iterations=iterations, warmup=warmup, threads=threads, streams=streams,
                        precision=precision, preprocess=preprocess, throughput=throughput)
    inputs = load_inputs(images)
    backends = [b.strip() for b in backend.split(",") if b.strip()]
    rows, failed = [], []
    for m in models:
        for b in backends:
            try:
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
            except ModelError as err:  # e.g. QOperator ops on OpenVINO: report, go on
                failed.append(f"{m} on {b}: {err}")
                _err(failed[-1])
                continue
            rows.append(row)
    if not rows:
        raise typer.Exit(1)
    cpu = cpu_info()
    notes = int8_notes(rows, cpu)
    table = f"{describe(cpu)}\n\n{markdown(rows)}" + "".join(f"\nnote: {n}" for n in notes) \
        + ("\n" if notes else "")
    doc = {"cpu": cpu, "results": rows, "notes": notes}
    if out is not None:
        write_json_atomic(out / "results.json", doc)
        write_text_atomic(out / "results.md", table)
        plot(rows, out / "plot.png", title=f"singleshot bench - {cpu['model']}")
    if as_json:
        print(json.dumps(doc))
    print(table, end="", file=sys.stderr if as_json else sys.stdout)
    if failed:
        raise typer.Exit(1)


data_app = typer.Typer(help="Datasets: the synthetic scene generator.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
@user_errors
def data_synth(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write images/ and annotations.json into.  [required]")] = None,
    num_images: Annotated[Optional[int], typer.Option("--num-images", help="Number of scenes.  [default: 1000]")] = None,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same dataset.")] = 0,
    images: Annotated[Optional[int], typer.Option("--images", hidden=True)] = None,
) -> None:
    """Write a COCO-format dataset of synthetic scenes (6 shape classes on textured backgrounds)."""
    from ..data.synth import write_dataset

    images = _alias(num_images, "--num-images", images, "--images")
    images = 1000 if images is None else images
    if out is None:
        raise UsageError("--out/-o is required: the folder to write the dataset into")
    if images < 1:
        raise UsageError("--num-images must be at least 1")
    ensure_dir(out)
    path = write_dataset(out, images, seed)
    print(f"wrote {images} scenes to {out / 'images'} and {path}")


@app.command()
@user_errors
def train(
    data: Annotated[Optional[Path], typer.Option(help="Training set folder (images/ + annotations.json).  [required]")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder: last.pt, best.pt, train_config.json.  [required]")] = None,
    val: Annotated[Optional[Path], typer.Option(help="Validation set folder for periodic COCO mAP.")] = None,
    config: Annotated[str, typer.Option(help="Model config: 300 (training size) or 1200.")] = "300",
    width: Annotated[float, typer.Option(help="Channel multiplier (1.0 = the MLPerf model).")] = 1.0,
    epochs: Annotated[int, typer.Option()] = 70,
    batch: Annotated[int, typer.Option()] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate for --batch images (MLPerf: 2.5e-3 per 32).")] = 2.5e-3,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 300,
    milestones: Annotated[str, typer.Option(help="Epochs after which lr x0.1, comma-separated.")] = "40,50",
    backbone: Annotated[Optional[Path], typer.Option(help="torchvision ImageNet ResNet-34 weights for the trunk.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from a checkpoint (MLPerf or ours); class heads are new when the classes differ.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Start a new run in an --out that holds one (its checkpoints are overwritten).")] = False,
    eval_every: Annotated[int, typer.Option(help="Evaluate on --val every N epochs.")] = 5,
    eval_limit: Annotated[Optional[int], typer.Option("--eval-limit", help="Evaluate on the first N validation images.")] = None,
    eval_images: Annotated[Optional[int], typer.Option("--eval-images", hidden=True)] = None,
    workers: Annotated[int, typer.Option(help="Data-loading processes.")] = 1,
    seed: Annotated[int, typer.Option()] = 0,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd (the MLPerf recipe) or adamw (converges faster from scratch).")] = "sgd",
    weight_decay: Annotated[float, typer.Option(help="Weight decay (MLPerf: 5e-4).")] = 5e-4,
) -> None:
    """Train or fine-tune an SSD-ResNet34 with the MLPerf recipe."""
    _require_extra("torch", "torch", "train")
    from ..training.loop import TrainConfig
    from ..training.loop import train as run_training

    eval_images = _alias(eval_limit, "--eval-limit", eval_images, "--eval-images")
    if data is None or out is None:
        raise UsageError("--data and --out/-o are required")
    if resume and exist_ok:
        raise UsageError("--resume continues the run in --out, --exist-ok starts a new one: give one")
    ensure_dir(out)
    try:
        stones = tuple(int(m) for m in milestones.split(",") if m.strip())
    except ValueError:
        raise UsageError(f"--milestones must be comma-separated epochs, got {milestones!r}") from None
    cfg = TrainConfig(data=str(data), out=str(out), val=str(val) if val else None, config=config,
                      width=width, epochs=epochs, batch=batch, lr=lr, warmup=warmup,
                      milestones=stones, seed=seed, workers=workers,
                      backbone=str(backbone) if backbone else None,
                      init=str(init) if init else None, eval_every=eval_every,
                      eval_images=eval_images, max_steps=max_steps, optimizer=optimizer,
                      weight_decay=weight_decay)
    t0 = time.monotonic()
    try:
        last = run_training(cfg, resume=resume, exist_ok=exist_ok)
    except KeyboardInterrupt:
        _err(f"interrupted; continue with: singleshot train ... -o {out} --resume")
        raise typer.Exit(130) from None
    print(f"done in {(time.monotonic() - t0) / 60:.1f} min: {last}"
          + (f" (best validation mAP in {out / 'best.pt'})" if (out / 'best.pt').exists() else ""))


@app.command()
@user_errors
def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the known models (zoo files and the bundled one) and whether they are cached."""
    from rich.console import Console
    from rich.table import Table

    from ..hub.download import model_path
    from ..hub.registry import list_entries

    rows = []
    for e in list_entries():
        rows.append({"name": e.name, "file": e.filename, "url": e.url, "sha256": e.sha256,
                     "size": e.size, "opset": e.opset, "card_map": e.card_map,
                     "card_metric": e.card_metric, "description": e.description,
                     "local": str(model_path(e)) if model_path(e).is_file() else None})
    if as_json:
        print(json.dumps({"models": rows}, indent=2))
        return
    table = Table()
    for col in ("name", "opset", "size", "card mAP", "measured with", "cached", "about"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(r["opset"]), f"{r['size'] / 1e6:.1f} MB" if r["size"] else "-",
                      f"{r['card_map']}" if r["card_map"] is not None else "-", r["card_metric"],
                      "yes" if r["local"] else "no", r["description"])
    console = Console(width=140)
    console.print(table)
    for r in rows:
        if r["url"]:
            console.print(f"{r['name']:12} sha256 {r['sha256']}\n{'':12} {r['url']}",
                          soft_wrap=True, highlight=False)


@app.command()
@user_errors
def download(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registry name, e.g. ssd-12.")],
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
) -> None:
    """Download a zoo model into the cache ($SINGLESHOT_HOME, default ~/.cache/singleshot)."""
    from ..hub.download import ensure_model
    from ..hub.registry import get_entry

    path = ensure_model(get_entry(name), force=force)
    print(path)


@app.command()
@user_errors
def info(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="ONNX file or registry name.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Describe an ONNX model: I/O, opset, ops, metadata, contract, quantization. Exit 2 when
    the file is not a detector (after describing it)."""
    from ..graph.inspect import describe
    from ..runtime.detector import resolve_model_path

    d = describe(resolve_model_path(model))
    not_detector = ModelError(f"{d['path']}: not a detector ({d.get('contract_error')})") \
        if not d.get("contract") else None
    if as_json:
        print(json.dumps(d, indent=2))
        if not_detector:
            raise not_detector
        return
    print(f"{d['path']}  ({d['size_bytes'] / 1e6:.1f} MB, {d['parameters']:,} parameters, "
          f"producer: {d['producer'] or '-'})")
    print("opset:   " + ", ".join(f"{k} {v}" for k, v in d["opset"].items()))
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            print(f"{kind[:-1]:7}: {t['name']} {t['dtype']} {t['shape']}")
    if d.get("contract"):
        s = d["spec"]
        src = "metadata" if s["from_metadata"] else "zoo defaults (no metadata)"
        print(f"contract: {d['contract']} - input {s['input_size'][0]}x{s['input_size'][1]}, "
              f"{s['classes']} classes, {s['anchors']} default boxes, spec from {src}")
        if d.get("nms"):
            n = d["nms"]
            print(f"nms:     score > {n['score_threshold']}, IoU > {n['iou_threshold']} "
                  f"suppressed, {n['max_per_class']} per class, {n['max_det']} per image")
    else:
        print(f"contract: none ({d.get('contract_error')})")
    q = d["quantization"]
    print("quantized: " + (f"{q['format']}, activations {'/'.join(q['activations']) or '?'}, "
                           f"weights {'/'.join(q['weights']) or '?'}, "
                           f"{'per-channel' if q['per_channel'] else 'per-tensor'}"
                           if q else "no (float)"))
    print("ops:     " + ", ".join(f"{k} {v}" for k, v in d["ops"].items()))
    if d["metadata"]:
        print("metadata:")
        for k, v in d["metadata"].items():
            print(f"  {k}: {v if len(v) <= 100 else v[:97] + '...'}")
    if not_detector:
        raise not_detector


def main() -> None:
    app()


if __name__ == "__main__":
    main()
