"""``singleshot video``: video files, folders of them, streams and webcams through the detector,
every frame accounted for."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import SingleshotError
from ...hub.registry import model_files
from ...io.files import new_run_folder
from .common import (
    CONF_FOR_PEOPLE,
    BackendOpt,
    ClassesOpt,
    IouOpt,
    MaxDetOpt,
    OverwriteOpt,
    PrecisionOpt,
    PreprocessOpt,
    ThreadsOpt,
    _alias,
    _err,
    _parse_conf,
    _require_extra,
    app,
    claim_out,
    flag,
    parse_classes,
    plural,
    ranged,
    user_errors,
)


def _stem(source: str, taken: set[str]) -> str:
    """A folder name for a source: the file's stem, or the URL/webcam made safe; unique."""
    from ...video.source import is_stream

    base = re.sub(r"[^A-Za-z0-9._-]+", "_", source.split("://")[-1]).strip("_") \
        if is_stream(source) else Path(source).stem
    name, k = base or "stream", 1
    while name in taken:
        k += 1
        name = f"{base}-{k}"
    taken.add(name)
    return name


@app.command()
@user_errors
def video(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="Video files, folders of them, stream URLs (http(s)://, rtsp://...) or webcam indices.")],
    model: Annotated[str, typer.Option("--model", "-m", help="ONNX file or registry name.")] = "demo",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/video/<timestamp>); several sources write OUT/<stem>/ each. An earlier video run there is refused without --overwrite.")] = None,
    overwrite: OverwriteOpt = False,
    stride: Annotated[int, ranged("stride", help="Detect every K-th frame (the others are counted as skipped and drawn with the last detections).")] = 1,
    start: Annotated[Optional[float], ranged("start", help="Start at this many seconds into the source.")] = None,
    end: Annotated[Optional[float], ranged("end", help="Stop at this many seconds into the source.")] = None,
    live: Annotated[bool, typer.Option("--live", help="Latest-frame policy for streams: always detect the newest frame, drop (and count) older ones.")] = False,
    batch: Annotated[int, ranged("batch", help="Frames per backend call (the graph must take batches: export --batch dynamic).")] = 1,
    save_frames: Annotated[bool, typer.Option("--save-frames", help="Also write the decoded frames as PNG (lossless) into OUT/frames/.")] = False,
    no_video: Annotated[bool, typer.Option("--no-video", help="Do not write the annotated video.")] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="No tracking: no track ids, no tracks.txt.")] = False,
    reconnect: Annotated[int, ranged("reconnect", help="Streams: reopen a dropped stream this many times, with backoff.")] = 3,
    conf: Annotated[str, typer.Option(help="Score threshold for what is written and drawn; 'model' for the model's own.")] = str(CONF_FOR_PEOPLE),
    iou: IouOpt = None,
    max_det: MaxDetOpt = None,
    classes: ClassesOpt = None,
    only_classes: Annotated[Optional[str], typer.Option("--only-classes", hidden=True)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document (each source's summary) on stdout.")] = False,
    threads: ThreadsOpt = None,
    backend: BackendOpt = "onnxruntime",
    precision: PrecisionOpt = "auto",
    preprocess: PreprocessOpt = "card",
) -> None:
    """Detect and track objects in videos and streams: detections.jsonl (a line per processed
    frame, with track ids), tracks.txt (MOTChallenge), an annotated H.264 video and a summary
    per source. Exit 0: all done; 1: a source failed or was
    damaged (its finished frames are kept); 2: usage error."""
    _require_extra("av", "video", "singleshot video")
    from ...core.nms import NmsParams
    from ...runtime.detector import Detector, merge_options
    from ...video.run import VideoOptions, process_video
    from ...video.source import expand_videos
    from ..progress import ConsoleProgress

    conf_value = _parse_conf(conf)
    merge_options(NmsParams(), conf_value, iou, max_det)
    classes = parse_classes(_alias(classes, "--classes", only_classes, "--only-classes"))
    opts = VideoOptions(stride=stride, start=start, end=end, live=live, batch=batch,
                        save_frames=save_frames, annotate=not no_video, reconnect=reconnect,
                        detect={"classes": classes} if classes else {})
    opts.check()
    # tracking sees everything down to the model's own threshold; --conf filters what is written
    det = Detector(model, conf=conf_value if no_track else None, iou=iou, max_det=max_det,
                   threads=threads, backend=backend, precision=precision, preprocess=preprocess)
    tracking = None
    if not no_track:
        from ...video.track import tracking as make_tracking

        tracking = make_tracking(det, conf_value)
    if classes:
        det.options(classes=classes)
    opts.check(det)
    shown = conf_value if conf_value is not None else det.params.score_threshold
    paths = expand_videos(sources)
    out = Path(out or new_run_folder("video"))
    claim_out(out, "video", overwrite=overwrite, again="refuse",
              inputs=[*paths, *model_files([model])])
    taken: set[str] = set()
    summaries, failed = [], 0
    for src in paths:
        folder = out if len(paths) == 1 else out / _stem(src, taken)
        try:
            s = process_video(src, det, folder, opts, progress=ConsoleProgress(),
                              tracking=tracking)
        except SingleshotError as err:
            _err(err.render(flag))
            summaries.append({"source": src, "out": None, "error": err.render(flag)})
            failed += 1
            continue
        summaries.append(s)
        f = s["frames"]
        tracks = f", {s['tracks']} tracks" if "tracks" in s else ""
        print(f"{src}: {f['decoded']} frames decoded, {f['processed']} processed, "
              f"{f['skipped_stride']} skipped by --stride, {f['dropped_live']} dropped by --live; "
              f"{plural(s['detections'], 'detection')} (score >= {shown:g}){tracks}; "
              f"{s['frames_per_s'] or 0:.1f} frames/s -> {folder}", file=sys.stderr)
        if s["error"]:
            _err(f"{src}: {s['error']}")
            failed += 1
    if as_json:
        print(json.dumps({"model": det.name, "videos": summaries}))
    if failed:
        print(f"{failed} of {len(paths)} source(s) failed", file=sys.stderr)
        raise typer.Exit(1)
