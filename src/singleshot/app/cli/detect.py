"""``singleshot detect``: images in, the DetectionReport printed, drawn and written."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ...io.files import ensure_dir, write_json_atomic
from .common import (
    CONF_FOR_PEOPLE,
    BackendOpt,
    PrecisionOpt,
    PreprocessOpt,
    StreamsOpt,
    _err,
    _parse_conf,
    app,
    user_errors,
)


@app.command()
@user_errors
def detect(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="Image files, folders or glob patterns.")],
    model: Annotated[str, typer.Option("--model", "-m", help="ONNX file or registry name.")] = "demo",
    conf: Annotated[str, typer.Option(help="Score threshold for what is returned and drawn; 'model' for the model's own (zoo: 0.05).")] = str(CONF_FOR_PEOPLE),
    iou: Annotated[Optional[float], typer.Option(help="NMS IoU threshold (model's own: 0.5).")] = None,
    max_det: Annotated[Optional[int], typer.Option(help="Detections per image (model's: 200).")] = None,
    batch: Annotated[int, typer.Option(help="Images per backend call (the graph must take batches: export --batch dynamic).")] = 1,
    only_classes: Annotated[Optional[str], typer.Option("--only-classes", help="Keep only these classes: comma-separated category ids or names (as if the others scored zero before the per-image cap).")] = None,
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

    from ...core.nms import NmsParams
    from ...io.images import MAX_PIXELS, load_image
    from ...io.sources import expand_sources
    from ...runtime.detector import Detector, merge_options
    from ...runtime.report import DetectionReport, detect_paths

    conf_value = _parse_conf(conf)
    merge_options(NmsParams(), conf_value, iou, max_det)  # bad values fail before the model loads
    if batch < 1:
        raise UsageError("--batch must be at least 1")
    if out is not None:
        ensure_dir(out)
    det = Detector(model, conf=conf_value, iou=iou, max_det=max_det, exif=not no_exif,
                   threads=threads, backend=backend, precision=precision,
                   preprocess=preprocess, streams=streams or 1)
    classes = None
    if only_classes is not None:
        classes = [c.strip() for c in only_classes.split(",") if c.strip()]
        if not classes:
            raise UsageError("--only-classes needs at least one category id or name")
        det.options(classes=classes)  # unknown names fail here, before any work
    det.check_batch(batch)
    paths, notes = expand_sources(sources, recursive)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    load = lambda p: load_image(p, exif=not no_exif, max_pixels=max_pixels or MAX_PIXELS)  # noqa: E731
    report = DetectionReport(det.name)
    bar = tqdm(total=len(paths), unit="img", file=sys.stderr, leave=False, dynamic_ncols=True,
               disable=len(paths) < 2 or not sys.stderr.isatty())
    for r in detect_paths(det, paths, load, report=report, annotate_into=out, streams=streams,
                          batch=batch, classes=classes):
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
