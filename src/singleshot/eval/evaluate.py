"""COCO box evaluation on the official implementation (pycocotools), reproducing the reference
conventions by default, with incremental, resumable detection runs and side-by-side reports.

Reference conventions (how the card's 0.195 was measured): boxes go from the model's normalised
output to each image's original size without clipping, as ``[x1*W, y1*H, (x2-x1)*W, (y2-y1)*H]``;
EXIF orientation is not applied (annotations are in the stored pixel frame); contiguous labels
map to the dataset's category ids. ``clip`` and ``mlperf`` (drop images without annotations)
are options.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.spec import ModelSpec
from ..errors import ImageError, UsageError
from ..io.files import ensure_dir, set_aside, write_json_atomic, write_text_atomic
from .annotations import AnnotationError, CocoAnnotations

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl",
               "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class CocoScore:
    """The 12 COCO box metrics (0..1, -1 where pycocotools gives -1), per-class AP by name, and
    the accumulated precision array [T, R, K, A, M] for plots."""

    metrics: dict[str, float]
    per_class: dict[str, float]
    precision: np.ndarray | None
    summary_text: str
    backend: str

    def flat(self) -> dict:
        return {**self.metrics, "per_class": self.per_class}


def _empty_results_coco(gt_coco, cls):
    """pycocotools' loadRes crashes on an empty list; an empty detection set scores as such."""
    dt = cls()
    dt.dataset = {"images": list(gt_coco.dataset["images"]),
                  "categories": copy.deepcopy(gt_coco.dataset["categories"]), "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def check_results(results: object, gt: CocoAnnotations, name: str = "results") -> list[dict]:
    """Validate a COCO results list (bbox task) against the annotations; clear errors."""
    if not isinstance(results, list):
        raise AnnotationError(f"{name}: expected a JSON list of results")
    ids = {img["id"] for img in gt.images}
    cats = {c["id"] for c in gt.categories}
    for i, r in enumerate(results):
        if not (isinstance(r, dict) and isinstance(r.get("bbox"), list) and len(r["bbox"]) == 4
                and "score" in r and "image_id" in r and "category_id" in r):
            raise AnnotationError(f"{name}: entry {i} needs image_id, category_id, bbox [x,y,w,h] "
                                  "and score")
        if r["image_id"] not in ids:
            raise AnnotationError(f"{name}: entry {i} has image id {r['image_id']!r}, which the "
                                  "annotations do not have")
        if r["category_id"] not in cats:
            raise AnnotationError(f"{name}: entry {i} has category id {r['category_id']!r}, which "
                                  "the annotations do not have")
    return results


def coco_score(gt: CocoAnnotations, results: list[dict], *, img_ids: list[int] | None = None,
               fast: bool = False) -> CocoScore:
    """Score ``results`` (COCO bbox results) against ``gt`` exactly as pycocotools does.

    img_ids restricts the evaluation (images missing on disk, the MLPerf convention).
    fast: faster-coco-eval instead (unofficial; same numbers to about 1e-4 on COCO).
    """
    results = copy.deepcopy(results)  # loadRes adds fields in place
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if fast:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval

            gt_coco = COCO(copy.deepcopy(gt.data))
        else:
            from pycocotools.cocoeval import COCOeval

            gt_coco = gt.to_pycocotools()
            COCO = type(gt_coco)
        dt_coco = gt_coco.loadRes(results) if results else _empty_results_coco(gt_coco, COCO)
        ev = COCOeval(gt_coco, dt_coco, "bbox")
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats[:12]]
    precision = np.asarray(ev.eval["precision"]) if ev.eval else None
    names = gt.category_names()
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1] if precision is not None else np.empty(0)
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean()) if p.size else -1.0
    return CocoScore(dict(zip(METRIC_KEYS, stats)), per_class, precision, out.getvalue(),
                     "faster-coco-eval (unofficial)" if fast else "pycocotools")


# ---- running a model over a dataset ---------------------------------------------------------

def category_map(spec: ModelSpec, gt: CocoAnnotations) -> np.ndarray:
    """label (1..C) -> dataset category id, as array index ``label - 1``.

    The model's own category ids when the annotations have them all; else by class name."""
    gt_ids = {c["id"] for c in gt.categories}
    if set(spec.category_ids) <= gt_ids:
        return np.asarray(spec.category_ids, dtype=np.int64)
    by_name = {c["name"]: c["id"] for c in gt.categories}
    if all(n in by_name for n in spec.class_names):
        return np.asarray([by_name[n] for n in spec.class_names], dtype=np.int64)
    raise UsageError(f"{gt.path}: the model's categories (ids {list(spec.category_ids)[:5]}..., "
                     f"names {list(spec.class_names)[:3]}...) match neither the ids nor the names "
                     "in the annotations")


@dataclass
class DetectionRun:
    """A model's pass over a dataset. results: COCO results of every image done; done_ids: the
    images evaluated; failures: (file name, error) of images that could not be read."""

    name: str
    out_dir: Path
    results: list[dict] = field(default_factory=list)
    done_ids: list[int] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0
    images_per_s: float | None = None
    inference_ms: float | None = None  # mean session time per image of this pass (no decode/pre/post)


def select_images(gt: CocoAnnotations, *, mlperf: bool = False, limit: int | None = None) -> list[dict]:
    """Images to evaluate, by id; ``mlperf`` drops images without annotations (48 in val2017)."""
    images = sorted(gt.images, key=lambda im: im["id"])
    if mlperf:
        annotated = gt.annotated_image_ids()
        images = [im for im in images if im["id"] in annotated]
    return images[:limit] if limit else images


def _read_jsonl(path: Path) -> dict[int, dict]:
    done: dict[int, dict] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            done[int(entry["image_id"])] = entry
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by an interruption: that image is run again
    return done


def run_manifest(detector, gt: CocoAnnotations, images_dir: str | os.PathLike, *, name: str,
                 clip: bool, mlperf: bool) -> dict:
    """Everything that decides a run's detections (``run.json``): the model file's content hash
    (a re-export to the same path is another model), backend, precision, preprocessing,
    thresholds, and the conventions."""
    from ..hub.download import sha256_file

    path = Path(detector.name)
    digest = sha256_file(path) if path.is_file() else None
    p = detector.params
    return {"model": name, "model_path": str(path.resolve()) if digest else detector.name,
            "model_sha256": digest, "annotations": str(Path(gt.path).resolve()),
            "images": str(Path(images_dir).resolve()), "clip": clip, "mlperf": mlperf,
            "backend": detector.backend.name, "precision": detector.backend.precision,
            "preprocess": detector.preprocess_mode,
            "thresholds": {"conf": p.score_threshold, "iou": p.iou_threshold,
                           "max_per_class": p.max_per_class, "max_det": p.max_det}}


def check_resumable(out_dir: Path, manifest: dict) -> None:
    """UsageError naming what differs when ``out_dir`` holds detections of another model or
    settings: finished work is never reused for another model (nor deleted: --overwrite moves
    it aside)."""
    try:
        old = json.loads((out_dir / "run.json").read_text())
    except (OSError, ValueError):
        old = {}
    if not isinstance(old, dict):
        old = {}
    keys = [k for k in manifest if k != "model_path" and old.get(k) != manifest[k]]
    if not keys:
        return
    def show(v):
        return (v[:12] + "...") if isinstance(v, str) and len(v) == 64 else json.dumps(v)
    diff = "; ".join(f"{k} {show(old.get(k))} -> {show(manifest[k])}" for k in keys)
    raise UsageError(f"{out_dir} holds detections of another model or settings ({diff}); give "
                     "another --out, or --overwrite to start over (the old run moves to "
                     "previous-N/)")


def run_detection(detector, gt: CocoAnnotations, images_dir: str | os.PathLike, out_dir: Path, *,
                  name: str, clip: bool = False, mlperf: bool = False, limit: int | None = None,
                  progress: bool = True) -> DetectionRun:
    """Detect on every selected image, appending one JSON line per image to
    ``out_dir/detections.jsonl`` as it goes, so an interrupted run resumes where it stopped."""
    from tqdm import tqdm

    from ..io.images import load_image

    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = run_manifest(detector, gt, images_dir, name=name, clip=clip, mlperf=mlperf)
    man_path = out_dir / "run.json"
    jsonl = out_dir / "detections.jsonl"
    if jsonl.exists():
        check_resumable(out_dir, manifest)
    write_json_atomic(man_path, manifest)
    cats = category_map(detector.spec, gt)
    done = _read_jsonl(jsonl)
    run = DetectionRun(name, out_dir, resumed=len(done))
    selected = select_images(gt, mlperf=mlperf, limit=limit)
    todo = [im for im in selected if im["id"] not in done]
    t0, n_run, infer_ms = time.perf_counter(), 0, []
    with open(jsonl, "a") as sink, tqdm(todo, desc=name, unit="img", file=sys.stderr,
                                        disable=not progress, dynamic_ncols=True) as bar:
        for im in bar:
            entry: dict = {"image_id": im["id"], "file_name": im["file_name"], "error": None,
                           "results": []}
            try:
                rgb = load_image(Path(images_dir) / im["file_name"], exif=False)
                det = detector.detect_array(rgb, clip=clip)
                det.category_ids = cats[det.labels - 1]
                entry["results"] = det.to_coco(im["id"])
                infer_ms.append(det.timings["inference"])
                h, w = rgb.shape[:2]
                if (im.get("width"), im.get("height")) not in ((w, h), (None, None)):
                    entry["note"] = f"image is {w}x{h}, annotations say {im['width']}x{im['height']}"
            except ImageError as err:
                entry["error"] = str(err)
            sink.write(json.dumps(entry) + "\n")
            sink.flush()
            done[im["id"]] = entry
            n_run += 1
    if n_run:
        run.images_per_s = n_run / (time.perf_counter() - t0)
    if infer_ms:
        run.inference_ms = float(np.mean(infer_ms))
    for im in selected:
        entry = done[im["id"]]
        if entry.get("error"):
            run.failures.append((im["file_name"], entry["error"]))
        else:
            run.done_ids.append(im["id"])
            run.results.extend(entry["results"])
    return run


# ---- reports --------------------------------------------------------------------------------

def relative_change(value: float, base: float) -> float | None:
    if base is None or base <= 0 or value is None or value < 0:
        return None
    return (value - base) / base


def markdown_table(rows: list[dict]) -> str:
    """Side-by-side table; the AP change and the speed-up of each row are relative to the first
    row (speed-up: the first row's mean inference time over this row's, the card's measure)."""
    cols = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
    head = ("| model | " + " | ".join(cols)
            + " | AP vs first | inference ms | speed-up | images/s |")
    lines = [head, "|" + "---|" * (len(cols) + 5)]
    base = rows[0]["AP"] if rows else None
    base_ms = rows[0].get("inference_ms") if rows else None
    for r in rows:
        rel = relative_change(r["AP"], base)
        rel_s = "-" if rel is None or r is rows[0] else f"{rel * 100:+.2f}%"
        ms = r.get("inference_ms")
        ms_s = f"{ms:.2f}" if ms else "-"
        speed = f"{base_ms / ms:.2f}x" if ms and base_ms and r is not rows[0] else "-"
        ips = f"{r['images_per_s']:.2f}" if r.get("images_per_s") else "-"
        lines.append(f"| {r['model']} | " + " | ".join(f"{r[c]:.4f}" for c in cols)
                     + f" | {rel_s} | {ms_s} | {speed} | {ips} |")
    return "\n".join(lines) + "\n"


def per_class_table(rows: list[dict]) -> str:
    """Per-class AP, one column per model (- where pycocotools gives -1: no ground truth)."""
    names = list(dict.fromkeys(n for r in rows for n in r["per_class"]))
    lines = ["| class | " + " | ".join(r["model"] for r in rows) + " |",
             "|" + "---|" * (len(rows) + 1)]
    for n in names:
        vals = [r["per_class"].get(n, -1.0) for r in rows]
        lines.append(f"| {n} | " + " | ".join(f"{v:.4f}" if v >= 0 else "-" for v in vals) + " |")
    return "per-class AP:\n" + "\n".join(lines) + "\n"


def plot_pr(score: CocoScore, title: str, path: Path) -> bool:
    """Precision-recall curves (all areas, 100 detections; IoU .5, .75 and the mean over
    .5:.95), averaged over classes that have ground truth. False when there is nothing to plot."""
    if score.precision is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = score.precision[:, :, :, 0, -1]  # [T, R, K]
    rec = np.linspace(0, 1, p.shape[1])
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, sel in (("IoU 0.50", p[0]), ("IoU 0.75", p[5]), ("IoU .50:.95", p.mean(0))):
        valid = (sel > -1).all(axis=0) if label != "IoU .50:.95" else (p > -1).all(axis=(0, 1))
        curve = sel[:, valid].mean(axis=1) if valid.any() else np.zeros_like(rec)
        ax.plot(rec, curve, label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{title}  AP {score.metrics['AP']:.3f}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)  # atomic, like every report file
    return True


def _unique(name: str, taken: set[str]) -> str:
    base, k = name, 1
    while name in taken:
        k += 1
        name = f"{base}-{k}"
    taken.add(name)
    return name


def evaluate_many(models: list[str], result_files: list[Path], annotations: Path,
                  images: Path | None, out: Path | None, *, clip: bool = False,
                  mlperf: bool = False, fast: bool = False, limit: int | None = None,
                  threads: int | None = None, progress: bool = True,
                  detector_options: dict | None = None,
                  overwrite: bool = False, log=None) -> tuple[list[dict], str, Path]:
    """Evaluate models (run over ``images``) and results files against ``annotations``, side by
    side. Writes per-model folders and summary.md / summary.json into ``out`` (default
    runs/eval/<timestamp>). Returns (rows, markdown table, out). Failures per image are printed
    to stderr and counted in each row's ``failed``. ``detector_options``: backend, precision,
    preprocess, thresholds (see :class:`~singleshot.runtime.detector.Detector`). A run resumes only
    what the same model file and settings left in ``out``; ``overwrite`` first moves what is
    there to ``out/previous-N/``."""
    import datetime

    from .annotations import load_annotations

    if models and images is None:
        raise UsageError("--images is required to run a model")
    if images is not None and not Path(images).is_dir():
        raise UsageError(f"{images}: no such folder")
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    gt = load_annotations(annotations)
    for fix in gt.fixes:
        print(f"note: {annotations}: {fix}", file=sys.stderr)
    log = log or (lambda m: print(m, file=sys.stderr))
    out = Path(out or Path("runs") / "eval" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    existed = out.exists()
    ensure_dir(out)
    if overwrite and (moved := set_aside(out)):
        log(f"note: the earlier run in {out} moved to {moved}")
    try:
        return _evaluate_into(out, gt, models, result_files, annotations, images, clip=clip,
                              mlperf=mlperf, fast=fast, limit=limit, threads=threads,
                              progress=progress, detector_options=detector_options)
    except BaseException:
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that failed before any work leaves no empty folder behind
        raise


def _evaluate_into(out: Path, gt, models, result_files, annotations, images, *, clip, mlperf,
                   fast, limit, threads, progress, detector_options):
    from ..runtime.detector import Detector

    rows: list[dict] = []
    taken: set[str] = set()
    detectors = {}
    for m in models:  # every model loads and every earlier run matches before any work
        name = _unique(Path(m).stem if m.endswith(".onnx") else m, taken)
        detectors[name] = Detector(m, threads=threads, exif=False, **(detector_options or {}))
        if (out / name / "detections.jsonl").exists():
            check_resumable(out / name, run_manifest(detectors[name], gt, images, name=name,
                                                     clip=clip, mlperf=mlperf))
    for name, detector in detectors.items():
        run = run_detection(detector, gt, images, out / name, name=name, clip=clip, mlperf=mlperf,
                            limit=limit, progress=progress)
        for _, error in run.failures:
            print(f"error: {error}", file=sys.stderr)
        if run.resumed:
            print(f"note: {name}: resumed, {run.resumed} image(s) already done in {out / name}",
                  file=sys.stderr)
        write_json_atomic(out / name / "results.json", run.results)
        score = coco_score(gt, run.results, img_ids=run.done_ids, fast=fast)
        plot_pr(score, name, out / name / "pr.png")
        rows.append({"model": name, "backend": detector.backend.name,
                     "precision": detector.backend.precision, **score.flat(), "images": len(run.done_ids),
                     "failed": len(run.failures), "images_per_s": run.images_per_s,
                     "inference_ms": run.inference_ms,
                     "evaluator": score.backend})
    for rf in result_files:
        rf = Path(rf)
        name = _unique(rf.stem, taken)
        if not rf.is_file():
            raise UsageError(f"{rf}: no such results file")
        try:
            res = json.loads(rf.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UsageError(f"{rf}: not valid JSON ({err})") from None
        score = coco_score(gt, check_results(res, gt, str(rf)), fast=fast)
        (out / name).mkdir(parents=True, exist_ok=True)
        plot_pr(score, name, out / name / "pr.png")
        rows.append({"model": name, **score.flat(), "images": len(gt.images), "failed": 0,
                     "images_per_s": None, "inference_ms": None, "evaluator": score.backend})
    table = markdown_table(rows)
    write_text_atomic(out / "summary.md", (
        f"# COCO evaluation\n\nannotations: {annotations}\nevaluator: {rows[0]['evaluator']}\n"
        f"conventions: {'clipped' if clip else 'unclipped'} boxes, "
        f"{'MLPerf (images without annotations dropped)' if mlperf else 'all images'}, "
        "no EXIF rotation\n\n" + table))
    write_json_atomic(out / "summary.json", {"models": rows})
    return rows, table, out
