"""``singleshot eval`` as a library call: models run over a folder and results files, scored
against one annotation file, side by side, with every report file written into one folder.

Reference conventions (how the card's 0.195 was measured): boxes go from the model's normalised
output to each image's original size without clipping, as ``[x1*W, y1*H, (x2-x1)*W, (y2-y1)*H]``;
EXIF orientation is not applied (annotations are in the stored pixel frame); contiguous labels
map to the dataset's category ids. ``clip`` and ``mlperf`` (drop images without annotations)
are options.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..core.limits import check
from ..errors import UsageError
from ..hub.registry import model_files
from ..io.files import new_run_folder, write_json_atomic, write_text_atomic
from ..io.guard import MARKER, claim_output_folder
from ..progress import SILENT, Progress
from .annotations import CocoAnnotations, load_annotations
from .coco import METRIC_KEYS, check_results, coco_score
from .report import markdown_table, plot_pr
from .runner import detect_images, run_detection
from .store import RunStore, run_manifest


@dataclass
class EvalResult:
    """What an evaluation gives: one row per model or results file (the metrics, ``per_class``,
    images, failed, backend, precision, images/s, inference ms, evaluator), the side-by-side
    table, the report folder, and per row the images that could not be read."""

    rows: list[dict]
    table: str
    out: Path
    failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # a run whose numbers mislead, said
    nothing_evaluated: bool = False  # no image, or no object: every metric is -1
    report: Path | None = None  # report.html, when asked for

    def to_dict(self) -> dict:
        """The ``eval --json`` document: one model's ``{"AP", ..., "ARl", "per_class": {name:
        AP}}``, or ``{"models": [{"model": name, ...}, ...]}`` for several; values as
        pycocotools gives them (-1 where it gives -1)."""
        flat = [{k: r[k] for k in (*METRIC_KEYS, "per_class")} for r in self.rows]
        if len(flat) == 1:
            return flat[0]
        return {"models": [{"model": r["model"], **f} for r, f in zip(self.rows, flat)]}


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
                  threads: int | None = None, detector_options: dict | None = None,
                  overwrite: bool = False, progress: Progress = SILENT,
                  batch: int = 1, runner=None, report: bool = False, report_conf: float = 0.25,
                  report_worst: int = 8) -> EvalResult:
    """Evaluate models (run over ``images``) and results files against ``annotations``, side by
    side. Writes per-model folders and summary.md / summary.json into ``out`` (default
    runs/eval/<timestamp>). ``detector_options``: backend, precision, preprocess, thresholds
    (see :class:`~singleshot.runtime.detector.Detector`). A run resumes only what the same model
    file and settings left in ``out``; ``overwrite`` first moves what is there to
    ``out/previous-N/``. ``batch``: images per backend call (graphs that take batches).
    ``runner``: the engine that detects (default: this process, see
    :func:`~singleshot.eval.runner.detect_images`; a cluster's runner gives identical results).
    ``report``: also ``report.html``, ``report.json`` and ``report/`` - why each AP is what it
    is (:mod:`~singleshot.eval.explain`; ``report_conf``: the score threshold of its confusion
    matrix and drawings, ``report_worst``: how many of the costliest images to draw)."""
    if batch < 1:
        raise UsageError("{opt:batch} must be at least 1")
    if models and images is None:
        raise UsageError("{opt:images} is required to run a model")
    if images is not None and not Path(images).is_dir():
        raise UsageError(f"{{opt:images}} {images}: " + (
            "is a file; give the folder of the dataset's images" if Path(images).exists()
            else "no such folder"))
    check(name="limit", value=limit)
    check(name="conf", value=report_conf)
    check(name="report_worst", value=report_worst)
    gt = load_annotations(annotations)
    for fix in gt.fixes:
        progress.note(f"{annotations}: {fix}")
    existed = out is not None and Path(out).exists()  # a folder made here is this run's
    out = Path(out or new_run_folder("eval"))
    claim_output_folder(out, "eval", overwrite=overwrite, again="resume", note=progress.note,
                        inputs=[annotations, images, *model_files(models), *result_files])
    try:
        return _evaluate_into(out, gt, models, result_files, annotations, images, clip=clip,
                              mlperf=mlperf, fast=fast, limit=limit, threads=threads,
                              progress=progress, detector_options=detector_options, batch=batch,
                              runner=runner, report=report, report_conf=report_conf,
                              report_worst=report_worst)
    except BaseException:
        if not existed and out.is_dir() and all(p.name == MARKER for p in out.iterdir()):
            shutil.rmtree(out)  # a run that failed before any work leaves no empty folder
        raise


def _evaluate_into(out: Path, gt: CocoAnnotations, models, result_files, annotations, images, *,
                   clip, mlperf, fast, limit, threads, progress, detector_options,
                   batch=1, runner=None, report=False, report_conf=0.25,
                   report_worst=8) -> EvalResult:
    from ..runtime.detector import Detector

    result = EvalResult([], "", out)
    explained = []  # (name, results, img_ids) of each row, for the report
    if not gt.data["annotations"]:
        result.nothing_evaluated = True
        result.warnings.append(f"{annotations}: holds no objects (0 annotations): there is "
                               "nothing to score, every metric is -1")
    taken: set[str] = set()
    detectors = {}
    for m in models:  # every model loads and every earlier run matches before any work
        name = _unique(Path(m).stem if m.endswith(".onnx") else m, taken)
        detectors[name] = det = Detector(m, threads=threads, exif=False, **(detector_options or {}))
        det.check_batch(batch)
        RunStore(out / name).check(run_manifest(
            detectors[name], name=name, annotations=str(Path(gt.path).resolve()),
            images=str(Path(images).resolve()), clip=clip, mlperf=mlperf))
    for name, detector in detectors.items():
        run = run_detection(detector, gt, images, out / name, name=name, clip=clip, mlperf=mlperf,
                            limit=limit, progress=progress, batch=batch,
                            runner=runner or detect_images)
        result.failures[name] = run.failures
        asked = len(run.done_ids) + len(run.failures)
        if asked and not run.done_ids:
            result.nothing_evaluated = True
            result.warnings.append(f"{name}: none of the {asked} image(s) could be read: "
                                   "nothing was evaluated, every metric is -1")
        if run.resumed:
            progress.note(f"{name}: resumed, {run.resumed} image(s) already done in {out / name}")
        write_json_atomic(out / name / "results.json", run.results)
        score = run.evaluator(gt, fast=fast).evaluate()
        plot_pr(score, name, out / name / "pr.png")
        result.rows.append({"model": name, "backend": detector.backend.name,
                            "precision": detector.backend.precision, **score.flat(),
                            "images": len(run.done_ids), "failed": len(run.failures),
                            "images_per_s": run.images_per_s if run.done_ids else None,
                            "inference_ms": run.inference_ms if run.done_ids else None,
                            "evaluator": score.backend})
        explained.append((name, run.results, sorted(run.done_ids)))
    for rf in result_files:
        rf = Path(rf)
        name = _unique(rf.stem, taken)
        if not rf.is_file():
            raise UsageError(f"{rf}: no such results file")
        try:
            res = json.loads(rf.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UsageError(f"{rf}: not valid JSON ({err})") from None
        checked = check_results(res, gt, str(rf))
        covered = {r["image_id"] for r in checked}
        if len(covered) < len(gt.images):
            result.warnings.append(
                f"{rf}: detections for {len(covered)} of {len(gt.images)} image(s); the other "
                f"{len(gt.images) - len(covered)} count as images where nothing was found "
                "(score a results file against annotations of the images it covers)")
        score = coco_score(gt, checked, fast=fast)
        (out / name).mkdir(parents=True, exist_ok=True)
        plot_pr(score, name, out / name / "pr.png")
        result.rows.append({"model": name, **score.flat(), "images": len(gt.images), "failed": 0,
                            "images_per_s": None, "inference_ms": None,
                            "evaluator": score.backend})
        explained.append((name, checked, None))
    rows = result.rows
    if report and rows and not result.nothing_evaluated:
        from .explain import analyse_model, write_report

        progress.note("writing the report (errors, confusion matrix, curves, costliest images)")
        reports = [analyse_model(name, gt, res, row, conf=report_conf, images_dir=images,
                                 worst=report_worst, img_ids=ids)
                   for (name, res, ids), row in zip(explained, rows)]
        result.report = write_report(out, reports, rows, str(annotations))
    result.table = markdown_table(rows)
    write_text_atomic(out / "summary.md", (
        f"# COCO evaluation\n\nannotations: {annotations}\nevaluator: {rows[0]['evaluator']}\n"
        f"conventions: {'clipped' if clip else 'unclipped'} boxes, "
        f"{'MLPerf (images without annotations dropped)' if mlperf else 'all images'}, "
        "no EXIF rotation\n\n" + result.table))
    write_json_atomic(out / "summary.json", {"models": rows})
    return result
