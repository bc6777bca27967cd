"""``singleshot detect``: images in, the DetectionReport printed, drawn and written."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ...hub.registry import model_files
from .common import (
    CONF_FOR_PEOPLE,
    AddressOpt,
    BackendOpt,
    CpusPerWorkerOpt,
    EngineOpt,
    PrecisionOpt,
    PreprocessOpt,
    BatchOpt,
    ClassesOpt,
    IouOpt,
    JsonOpt,
    MaxDetOpt,
    MaxPixelsOpt,
    OverwriteOpt,
    StreamsOpt,
    ThreadsOpt,
    WorkersOpt,
    _alias,
    _err,
    _note,
    claim_out,
    parse_classes,
    plural,
    ranged,
    _parse_conf,
    app,
    cluster_summary,
    ray_options,
    user_errors,
)


@app.command()
@user_errors
def detect(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="Image files, folders or glob patterns.")],
    model: Annotated[str, typer.Option("--model", "-m", help="ONNX file or registry name.")] = "demo",
    conf: Annotated[str, typer.Option(help="Score threshold for what is returned and drawn; 'model' for the model's own (zoo: 0.05).")] = str(CONF_FOR_PEOPLE),
    iou: IouOpt = None,
    max_det: MaxDetOpt = None,
    batch: BatchOpt = 1,
    classes: ClassesOpt = None,
    agnostic_nms: Annotated[bool, typer.Option("--agnostic-nms", help="Suppress across classes too (same IoU), after the model's per-class NMS: one object is not reported as two classes.")] = False,
    only_classes: Annotated[Optional[str], typer.Option("--only-classes", hidden=True)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write annotated images and detections.json here (a rerun with the same --out resumes).")] = None,
    overwrite: OverwriteOpt = False,
    save_txt: Annotated[bool, typer.Option("--save-txt", help="YOLO label files in OUT/labels/<image>.txt: 'class cx cy w h' normalised, class the 0-based index in the model's class order (needs --out).")] = False,
    save_conf: Annotated[bool, typer.Option("--save-conf", help="--save-txt: the score as a sixth column.")] = False,
    save_coco: Annotated[Optional[Path], typer.Option("--save-coco", help="COCO results JSON (image_id, category_id of the model, bbox xywh, score). Image ids from --annotations by file name (found by itself when the inputs are a set's images/ beside its annotations.json, as data synth/convert write); else the file names' numbers when all are numbers, else input positions from 1.")] = None,
    annotations: Annotated[Optional[Path], typer.Option("--annotations", help="With --save-coco: the COCO annotation file (or the set's folder) the results belong to; image ids are taken from it by file name, as eval joins them.")] = None,
    save_csv: Annotated[Optional[Path], typer.Option("--save-csv", help="CSV, one row per detection: path, width, height, x1, y1, x2, y2, score, category_id, category.")] = None,
    save_crops: Annotated[Optional[Path], typer.Option("--save-crops", help="Each detection cut out as DIR/<category>/<image>_<n>.jpg.")] = None,
    line_width: Annotated[Optional[int], ranged("line_width", "--line-width", help="Box line width in pixels of annotated images (default: scaled with the image).")] = None,
    font_size: Annotated[Optional[int], ranged("font_size", "--font-size", help="Label text size in pixels (default: scaled with the image, at least 11).")] = None,
    hide_labels: Annotated[bool, typer.Option("--hide-labels", help="Annotated images: boxes only, no labels.")] = False,
    hide_conf: Annotated[bool, typer.Option("--hide-conf", help="Annotated images: labels without the score.")] = False,
    as_json: JsonOpt = False,
    no_exif: Annotated[bool, typer.Option("--no-exif", help="Do not apply EXIF orientation.")] = False,
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders (never into singleshot output folders).")] = False,
    threads: ThreadsOpt = None,
    max_pixels: MaxPixelsOpt = None,
    backend: BackendOpt = "onnxruntime",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "card",
    streams: StreamsOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = None,
) -> None:
    """Detect objects in images. Exit 0: all inputs done; 1: some failed; 2: usage error.
    Decoding overlaps inference; --streams N runs N images at once. With --out, results are
    journaled as they come and a rerun with the same --out resumes; --engine ray runs on a
    Ray cluster with the same results."""
    import contextlib

    from tqdm import tqdm

    from ...core.nms import NmsParams
    from ...io.draw import DrawStyle
    from ...io.images import MAX_PIXELS, load_image
    from ...io.fetch import check_url_schemes
    from ...io.sources import expand_sources
    from ...runtime.detector import Detector, merge_options
    from ...runtime.report import DetectionReport, ResultStore, detect_paths

    cluster = ray_options(engine, address, workers, cpus_per_worker, batch)
    conf_value = _parse_conf(conf)
    merge_options(NmsParams(), conf_value, iou, max_det)  # bad values fail before the model loads
    classes = parse_classes(_alias(classes, "--classes", only_classes, "--only-classes"))
    if overwrite and out is None:
        raise UsageError("--overwrite applies to --out")
    # the guard sees every input before any work: never read our own output, never write on it
    if (save_txt or save_conf) and out is None:
        raise UsageError("--save-txt writes into --out (OUT/labels/): give --out")
    if save_conf and not save_txt:
        raise UsageError("--save-conf adds the score to --save-txt's lines: give --save-txt")
    if save_crops is not None and engine == "ray":
        raise UsageError("--save-crops needs the images' pixels: run it with --engine local")
    check_url_schemes(sources)
    paths, notes = expand_sources(sources, recursive,
                                  exclude=[p for p in (out, save_crops) if p is not None])
    for note in notes:
        _note(note)
    from ...io.guard import check_output_file, check_output_folder

    for option, file in (("save_coco", save_coco), ("save_csv", save_csv)):
        if file is not None:
            check_output_file(file, paths, option)
            if file.is_dir():
                raise UsageError(f"--{option.replace('_', '-')} {file} is a folder: give a file")
    if save_crops is not None:
        check_output_folder(save_crops, paths, "save_crops")
    image_ids = None
    if annotations is not None and save_coco is None:
        raise UsageError("--annotations gives --save-coco its image ids: give --save-coco")
    if save_coco is not None:
        from ...runtime.exports import image_ids_from, set_annotations

        found = annotations or set_annotations(paths)
        if found is not None:
            image_ids = image_ids_from(found)
            if annotations is None:
                _note(f"--save-coco: image ids from {found} (by file name)")
    if out is not None:
        claim_out(out, "detect", overwrite=overwrite, again="resume",
                  inputs=[*paths, *model_files([model])])
    det = Detector(model, conf=conf_value, iou=iou, max_det=max_det, exif=not no_exif,
                   threads=threads, backend=backend, precision=precision,
                   preprocess=preprocess, streams=streams or 1, agnostic=agnostic_nms)
    if classes is not None:
        det.options(classes=classes)  # unknown names fail here, before any work
    det.check_batch(batch)
    limit = max_pixels or MAX_PIXELS
    store = None
    todo = paths
    if out is not None:
        store = ResultStore(out, det, classes=classes, exif=not no_exif, max_pixels=limit)
        todo = store.open(paths)
        if len(todo) < len(set(paths)):
            print(f"resuming: {len(set(paths)) - len(todo)} of {len(set(paths))} input(s) "
                  f"already done in {out}", file=sys.stderr)
        if cluster is not None:
            print("note: --engine ray writes detections, not annotated images", file=sys.stderr)
    report = DetectionReport(det.name)
    bar = tqdm(total=len(todo), unit="img", file=sys.stderr, leave=False, dynamic_ncols=True,
               disable=len(todo) < 2 or not sys.stderr.isatty())
    if cluster is not None and not todo:
        results = iter(())  # all done already: no cluster to start
    elif cluster is not None:
        from ...cluster.jobs import detect_on_ray

        todo = list(dict.fromkeys(todo))
        results = detect_on_ray(det, todo, cluster, classes=classes,
                                image_kwargs={"exif": not no_exif, "max_pixels": limit})
    else:
        load = lambda p: load_image(p, exif=not no_exif, max_pixels=limit)  # noqa: E731
        results = detect_paths(det, todo, load, annotate_into=out, streams=streams,
                               annotated=store.annotated_names() if store else (),
                               batch=batch, classes=classes, crops_into=save_crops,
                               style=DrawStyle(line_width, font_size, not hide_labels,
                                               not hide_conf))
    t0 = time.perf_counter()
    with store.recorder() if store else contextlib.nullcontext() as record:
        for r in results:
            bar.update(1)
            entry = r.to_dict()
            if record is not None:
                record(entry)
            else:
                report.images.append(r)
            if r.error is not None:
                _err(r.error)
            elif not as_json:
                d = entry["detections"]
                top = ", ".join(f"{x['category']} {x['score']:.2f}" for x in d[:5])
                bar.write(f"{r.path}: {plural(len(d), 'detection')}" + (
                    f" ({top}{', ...' if len(d) > 5 else ''})" if d else ""), file=sys.stdout)
    bar.close()
    seconds = time.perf_counter() - t0
    if store is not None:
        totals = store.assemble(paths)
        n_failed, n_dets = totals.failed, totals.detections
        print(f"wrote {totals.annotated} annotated image(s) and detections.json to {out}",
              file=sys.stderr)
        if as_json:
            with open(out / "detections.json") as f:
                shutil.copyfileobj(f, sys.stdout)
    else:
        if cluster is not None:
            report.ordered(paths)
        doc = report.to_dict()
        n_failed, n_dets = report.failed, report.detections
        if as_json:
            print(json.dumps(doc))
    if save_txt or save_coco or save_csv:
        _write_exports(det, out / "detections.json" if store is not None else doc, out,
                       save_txt, save_conf, save_coco, save_csv, image_ids)
    if save_crops is not None:
        print(f"wrote the crops of this run's detections into {save_crops}/<category>/",
              file=sys.stderr)
    if len(paths) > 1:
        rate = f", {len(todo) / max(seconds, 1e-9):.2f} images/s" if todo else ""
        print(f"{len(paths)} images, {plural(n_dets, 'detection')} (score >= "
              f"{det.params.score_threshold:g}), {n_failed} failed{rate}", file=sys.stderr)
    if cluster is not None and todo:
        print(cluster_summary(cluster), file=sys.stderr)
    if n_failed:
        print(f"{n_failed} of {len(paths)} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)


def _write_exports(det, document, out, save_txt, save_conf, save_coco, save_csv,
                   image_ids=None) -> None:
    """The detect document (a dict, or the assembled detections.json of a journaled run: every
    input's one result, resumed ones included) in the formats other tools read."""
    from ...runtime import exports

    if not isinstance(document, dict):
        with open(document) as f:
            document = json.load(f)
    entries = document["images"]
    if save_txt:
        n = exports.write_yolo_labels(entries, out / "labels", det.spec.category_ids, save_conf)
        print(f"wrote {plural(n, 'label file')} to {out / 'labels'}", file=sys.stderr)
    if save_coco is not None:
        n = exports.write_coco(entries, save_coco, image_ids)
        print(f"wrote {plural(n, 'COCO result')} to {save_coco}", file=sys.stderr)
        if image_ids is not None:
            unknown = sum(1 for e in entries if e.get("error") is None and e.get("width")
                          and image_ids(e["path"]) is None)
            if unknown:
                _note(f"{plural(unknown, 'input')} not in the annotations: left out of "
                      f"{save_coco}")
    if save_csv is not None:
        n = exports.write_csv(entries, save_csv)
        print(f"wrote {plural(n, 'row')} to {save_csv}", file=sys.stderr)
