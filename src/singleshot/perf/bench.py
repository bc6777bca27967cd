"""`singleshot bench`: end-to-end speed of models x backends, side by side in one run.

Single stream (batch 1, one image at a time): per-stage times (decode, preprocess, inference,
postprocess) and end-to-end latency percentiles, from encoded image bytes to detections; the
percentiles of inference + postprocess alone (``compute_ms``: what an MLPerf SingleStream query
times, its sample preprocessed beforehand). Throughput: the same images through the overlapped pipeline (:mod:`singleshot.runtime.pipeline`) with the
backend in throughput mode. Optionally an MLPerf LoadGen run (singlestream, multistream, offline or
server)
with LoadGen's own summary.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageError, ModelError, UsageError
from ..io.fetch import read_source
from ..io.files import atomic_path
from ..io.images import IMAGE_EXTENSIONS, load_image
from ..io.tables import markdown_table
from ..progress import Progress, resolve

STAGES = ("decode", "preprocess", "inference", "postprocess")


@dataclass
class BenchOptions:
    iterations: int = 20
    warmup: int = 3
    threads: int | None = None
    streams: int | None = None  # throughput runs; None: one per core
    precision: str = "auto"
    preprocess: str | None = None  # None: fast for --backend auto, card otherwise
    throughput: bool = True


def sample_image(width: int = 640, height: int = 480, seed: int = 7) -> bytes:
    """A generated photo-like JPEG (a synthetic scene: textured background, shapes)."""
    from PIL import Image

    from ..data.synth import make_scene

    img, _ = make_scene(seed, 0, size=(width, height))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def load_inputs(folder: str | os.PathLike | None, limit: int | None = None,
                skipped: list[str] | None = None) -> list[tuple[str, bytes]]:
    """(name, encoded bytes) of the images in ``folder`` (sorted), or one generated JPEG. A file
    that cannot be read or decoded is left out, its one-line error appended to ``skipped``;
    UsageError when none is left."""
    if folder is None:
        return [("generated-640x480.jpg", sample_image())]
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{{opt:images}} {folder}: " + (
            "is a file, not a folder of images" if folder.exists() else "no such folder"))
    # dangling links and unreadable files are reported, not silently dropped
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.is_dir())[:limit]
    if not files:
        raise UsageError(f"{folder}: no image files")
    out = []
    for p in files:
        try:  # refuse a broken file now, not in the middle of timing
            data = read_source(p)
            load_image(data, exif=False, name=str(p))
        except ImageError as err:
            if skipped is not None:
                skipped.append(str(err))
            continue
        out.append((p.name, data))
    if not out:
        raise UsageError(f"{folder}: none of its {len(files)} image file(s) could be decoded")
    return out


def percentiles(values_ms: list[float]) -> dict[str, float]:
    v = np.asarray(values_ms, dtype=np.float64)
    return {f"p{q}": float(np.percentile(v, q)) for q in (50, 90, 99)}


def _one(det, data: bytes, stages: dict[str, list[float]] | None = None) -> float:
    """Encoded bytes -> Detections (the detector decodes them); returns the end-to-end ms."""
    t0 = time.perf_counter()
    d = det(data)
    ms = (time.perf_counter() - t0) * 1e3
    if stages is not None:
        for k in STAGES:
            stages[k].append(d.timings[k])
    return ms


def make_detector(model: str, backend: str, opts: BenchOptions, *, throughput: bool = False):
    from ..runtime.backends import resolve_backend
    from ..runtime.detector import Detector

    pre = opts.preprocess or ("fast" if backend == "auto" else "card")
    precision = opts.precision
    if backend == "auto":  # measured on this model, once per CPU (runtime.autoselect)
        from ..runtime.autoselect import auto_backend
        from ..runtime.backends import normalize_precision
        from ..runtime.detector import resolve_model_path

        source = resolve_model_path(model)
        name, precision = auto_backend(
            source, lambda b, p: Detector(source, backend=b, precision=p, preprocess=pre,
                                          threads=opts.threads, exif=False),
            preprocess=pre, precision=normalize_precision(precision))
    else:
        name = resolve_backend(backend)
    streams, threads = 1, opts.threads
    if throughput:  # one stream per core by default; onnxruntime gets the cores split among them
        from ..runtime.backends import threads_per_stream

        streams = opts.streams or max(2, os.cpu_count() or 2)
        threads = threads_per_stream(name, streams, threads)
    return Detector(model, exif=False, backend=name, precision=precision, threads=threads,
                    streams=streams, preprocess=pre)


def bench_pair(model: str, backend: str, inputs: list[tuple[str, bytes]], opts: BenchOptions,
               progress: Progress | None = None) -> dict:
    """One model on one backend: single-stream latency/stages, then pipelined throughput."""
    progress = resolve(progress)
    det = make_detector(model, backend, opts)
    for i in range(opts.warmup):
        _one(det, inputs[i % len(inputs)][1])
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    lat = [_one(det, inputs[i % len(inputs)][1], stages) for i in range(opts.iterations)]
    row = {"model": model, "backend": det.backend.name, "precision": det.backend.precision,
           "preprocess": det.preprocess_mode, "threads": opts.threads,
           "latency_ms": percentiles(lat), "stages_ms": {k: float(np.median(v)) for k, v in stages.items()},
           # from the preprocessed tensor to detections: what an MLPerf SingleStream query times
           "compute_ms": percentiles([a + b for a, b in zip(stages["inference"],
                                                             stages["postprocess"])]),
           "singlestream_ips": 1e3 / float(np.mean(lat)), "iterations": opts.iterations,
           "images": len(inputs)}
    progress.log(f"{Path(model).name} on {row['backend']} ({row['precision']}): p50 "
        f"{row['latency_ms']['p50']:.1f} ms")
    row["throughput_ips"] = None  # measured only with opts.throughput
    row["streams"] = 1
    if opts.throughput:
        tdet = make_detector(model, backend, opts, throughput=True)
        items = [inputs[i % len(inputs)][1] for i in range(max(opts.iterations, 2 * tdet.backend.streams))]
        for _ in detect_all(tdet, items[: tdet.backend.streams]):  # warm every stream
            pass
        t0 = time.perf_counter()
        n = sum(1 for _ in detect_all(tdet, items))
        row["throughput_ips"] = n / (time.perf_counter() - t0)
        row["streams"] = tdet.backend.streams
        progress.log(f"  throughput {row['throughput_ips']:.2f} img/s with {row['streams']} streams")
    return row


def int8_notes(rows: list[dict], cpu: dict) -> list[str]:
    """A note for each backend where an int8 model's inference is no faster than an fp32 one's
    in the same run, saying why on this CPU (:func:`singleshot.runtime.cpu.why_int8_is_slow`)."""
    from ..runtime.cpu import why_int8_is_slow

    notes = []
    # like with like: the same backend and preprocessing (fast folds normalisation into the
    # graph, which moves the inference stage); int8 against the float rows' best of each
    for backend, pre in dict.fromkeys((r["backend"], r.get("preprocess")) for r in rows):
        same = [r for r in rows if r["backend"] == backend and r.get("preprocess") == pre]
        fp = [r for r in same if r["precision"] != "int8"]
        q = [r for r in same if r["precision"] == "int8"]
        if not fp or not q:
            continue
        best = min(fp, key=lambda r: r["stages_ms"]["inference"])
        slow = [r for r in q if r["stages_ms"]["inference"] >= best["stages_ms"]["inference"]]
        if slow:
            names = ", ".join(dict.fromkeys(Path(r["model"]).name for r in slow))
            notes.append(f"int8 is no faster than {best['precision']} on {backend} "
                         f"(--preprocess {pre}) for {names}: {why_int8_is_slow(cpu)}")
    return notes


def bench_document(rows: list[dict], cpu: dict, notes: list[str],
                   batches: list[dict] | None = None) -> dict:
    """The ``bench --json`` document: ``{"cpu": {"model", "int8", "bf16", "cores",
    "openvino_capabilities"}, "results": [row, ...], "notes": [str, ...]}``, and with
    ``--batch``, ``"batches": [{"model", "backend", "precision", "batch", "batch_ms": {"p50",
    "p90", "p99"}, "images_per_s"}, ...]``."""
    doc = {"cpu": cpu, "results": rows, "notes": notes}
    if batches is not None:
        doc["batches"] = batches
    return doc


def bench_report(rows: list[dict], cpu: dict, notes: list[str], failed: list[dict] = ()) -> str:
    """The Markdown report: the CPU line, the table (a row per failed pair too), a ``note:``
    line per note."""
    from ..runtime.cpu import describe

    return f"{describe(cpu)}\n\n{markdown(rows, failed)}" + \
        "".join(f"\nnote: {n}" for n in notes) + ("\n" if notes else "")


def parse_batches(text: str) -> list[int]:
    """``--batch 1,4,8`` -> [1, 4, 8]."""
    try:
        sizes = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UsageError(f"{{opt:batch}} must be batch sizes like 1,4,8, got {text!r}")
    return sorted(dict.fromkeys(sizes))


def check_models(models: list[str], backends: list[str], sizes: list[int] | None = None) -> None:
    """Before any timing, each model loaded once: a detector file (ModelError, exit 2,
    otherwise), each backend known with its extra installed, and with ``sizes`` (``--batch``)
    a graph that takes the largest of them (UsageError naming its real batch; checkpoints run
    batch 1)."""
    from ..graph.contract import graph_io, load_model
    from ..runtime.backends import is_checkpoint, resolve_backend
    from ..runtime.detector import resolve_model_path

    for b in backends:
        resolve_backend(b)
    largest = max(sizes) if sizes else 1
    for m in models:
        if is_checkpoint(m):
            if not Path(m).is_file():
                raise ModelError(f"{m}: no such checkpoint file")
            if "torch" not in backends:
                raise UsageError(f"{m}: a checkpoint runs on {{opt:backend}} torch only")
            if largest > 1:
                raise UsageError(f"{Path(m).name}: a checkpoint runs batch 1, not {largest}")
            continue
        io_ = graph_io(load_model(resolve_model_path(m)), str(m))
        if sizes:
            io_.check_batch(largest, Path(m).name)


def bench_batches(model: str, backend: str, inputs: list[tuple[str, bytes]], opts: BenchOptions,
                  sizes: list[int], progress: Progress | None = None) -> list[dict]:
    """Images/s of ``model`` on ``backend`` per batch size, end to end (decode, preprocess, one
    backend call per batch, post-processing), ``opts.iterations`` batches after
    ``opts.warmup``. A batch-1 graph asked for more is a UsageError naming its real batch: no
    sequential calls dressed as a batch."""
    progress = resolve(progress)
    det = make_detector(model, backend, opts)
    det.check_batch(max(sizes))
    rows = []
    for b in sizes:
        def batch(k: int) -> list:
            return [load_image(inputs[(k * b + j) % len(inputs)][1], exif=False) for j in range(b)]

        for k in range(opts.warmup):
            det.detect_batch(batch(k))
        ms = []
        for k in range(opts.iterations):
            t0 = time.perf_counter()
            det.detect_batch(batch(k))
            ms.append((time.perf_counter() - t0) * 1e3)
        row = {"model": model, "backend": det.backend.name, "precision": det.backend.precision,
               "batch": b, "batch_ms": percentiles(ms),
               "images_per_s": b * len(ms) / (sum(ms) / 1e3)}
        progress.log(f"{Path(model).name} on {row['backend']} batch {b}: "
                     f"{row['images_per_s']:.2f} img/s")
        rows.append(row)
    return rows


def batch_markdown(rows: list[dict]) -> str:
    """Images/s per batch size, side by side, with the speed-up over batch 1 of the same pair."""
    base = {(r["model"], r["backend"]): r["images_per_s"] for r in rows if r["batch"] == 1}
    cells = [[Path(r["model"]).name, r["backend"], r["precision"], r["batch"],
              f"{r['batch_ms']['p50']:.1f}", f"{r['images_per_s']:.2f}",
              f"{r['images_per_s'] / base[(r['model'], r['backend'])]:.2f}x"
              if (r["model"], r["backend"]) in base else "-"] for r in rows]
    return markdown_table(["model", "backend", "precision", "batch", "p50 ms per batch",
                           "images/s", "vs batch 1"], cells)


def detect_all(det, items: list[bytes]):
    """Every item through the overlapped pipeline; raises the first error."""
    from ..runtime.pipeline import detect_pipelined

    for _, d, _ in detect_pipelined(det, items, lambda b: load_image(b, exif=False),
                                    streams=det.backend.streams):
        if isinstance(d, Exception):
            raise d
        yield d


def markdown(rows: list[dict], failed: list[dict] = ()) -> str:
    """The side-by-side table; ``failed`` (``{"model", "backend", "error"}``: a pair that broke
    while running) get a row of their own saying so."""
    cells = [[Path(r["model"]).name, r["backend"], r["precision"], r["preprocess"],
              *(f"{r['latency_ms'][p]:.1f}" for p in ("p50", "p90", "p99")),
              f"{r['compute_ms']['p90']:.1f}",
              *(f"{r['stages_ms'][k]:.1f}" for k in STAGES), f"{r['singlestream_ips']:.2f}",
              "-" if r["throughput_ips"] is None else
              f"{r['throughput_ips']:.2f} ({r['streams']})"] for r in rows]
    cells += [[Path(f["model"]).name, f["backend"], "-", "-",
               "failed: " + f["error"][:80].replace("|", "/"), *["-"] * (5 + len(STAGES))]
              for f in failed]
    return markdown_table(["model", "backend", "precision", "preprocess", "p50 ms", "p90 ms",
                           "p99 ms", "p90 infer+post ms", *STAGES, "single-stream img/s",
                           "throughput img/s (streams)"],
                          cells)



def plot(rows: list[dict], path: Path, title: str = "") -> None:
    """Stacked per-stage bars (single-stream median ms) per model x backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{Path(r['model']).stem}\n{r['backend']} {r['precision']}\n{r['preprocess']}"
              for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4.5), dpi=100)
    bottom = np.zeros(len(rows))
    for k in STAGES:
        vals = np.array([r["stages_ms"][k] for r in rows])
        ax.bar(labels, vals, bottom=bottom, label=k)
        bottom += vals
    for x, (r, b) in enumerate(zip(rows, bottom)):
        ax.text(x, b, f"{r['latency_ms']['p50']:.0f} ms", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="ms per image (median, batch 1)", title=title or "singleshot bench")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


# ---- MLPerf LoadGen ---------------------------------------------------------------------------

SCENARIOS = {"singlestream": "SingleStream", "multistream": "MultiStream", "server": "Server",
             "offline": "Offline"}  # bench --scenario -> the harness's names


def loadgen_run(det, inputs: list[tuple[str, bytes]], scenario: str, outdir: Path, *,
                duration_ms: int = 10000, min_queries: int = 16,
                target_qps: float | None = None) -> dict:
    """``bench --scenario``: the MLPerf harness (:mod:`singleshot.perf.mlperf`) in performance
    mode over ``inputs`` (decoded and preprocessed into memory before the timed run), with a
    short duration and query count instead of the benchmark's minimums. Returns the parsed
    ``mlperf_log_summary.txt`` (and its text under ``"text"``)."""
    from .mlperf import conf, harness

    if scenario not in SCENARIOS:
        raise UsageError(f"{{opt:scenario}} must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    name = SCENARIOS[scenario]
    values = conf.effective(name, overrides={"min_duration": int(duration_ms),
                                             "min_query_count": int(min_queries),
                                             "target_qps": target_qps})
    sources = [data for _, data in inputs]
    streams = max(1, det.backend.streams)
    harness.fill_expectations(values, name, harness.calibrate(det, sources), streams)
    harness.run(det, sources, name, "performance", outdir, values, streams=streams)
    summary = harness.parse_summary(outdir / "mlperf_log_summary.txt")
    return {**summary, "text": (outdir / "mlperf_log_summary.txt").read_text()}


