"""``singleshot data``: synthetic scenes (COCO) and videos (MOTChallenge), and conversion between
the COCO, YOLO and Pascal VOC layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from .common import (
    JsonOpt,
    OverwriteOpt,
    _alias,
    _require_extra,
    app,
    claim_out,
    ranged,
    user_errors,
)

data_app = typer.Typer(help="Datasets: synthetic scenes and videos; COCO, YOLO and VOC conversion.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
@user_errors
def data_synth(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write images/ and annotations.json into.  [required]")] = None,
    num_images: Annotated[Optional[int], ranged("num_images", "--num-images", help="Number of scenes.  [default: 1000]")] = None,
    seed: Annotated[int, ranged("seed", help="Seed; the same seed gives the same dataset.")] = 0,
    images: Annotated[Optional[int], ranged("num_images", "--images", hidden=True)] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a COCO-format dataset of synthetic scenes (6 shape classes on textured backgrounds).
    Over an earlier data synth folder, the old set moves into OUT/previous-N/ first (said)."""
    from ...data.synth import write_dataset

    images = _alias(num_images, "--num-images", images, "--images")
    images = 1000 if images is None else images
    if out is None:
        raise UsageError("--out/-o is required: the folder to write the dataset into")
    claim_out(out, "data synth", overwrite=overwrite)
    path = write_dataset(out, images, seed)
    if as_json:
        print(json.dumps({"out": str(out), "images": images, "annotations": str(path)}))
        return
    print(f"wrote {images} scenes to {out / 'images'} and {path}")


@data_app.command("synth-video")
@user_errors
def data_synth_video(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write the sequences into (MOTChallenge layout).  [required]")] = None,
    num_videos: Annotated[int, ranged("num_videos", "--num-videos", help="Number of videos; video k uses seed SEED + k.")] = 5,
    num_frames: Annotated[int, ranged("num_frames", "--num-frames", help="Frames per video (25 fps).")] = 300,
    seed: Annotated[int, ranged("seed", help="Seed of the first video.")] = 1,
    width: Annotated[int, ranged("frame_width", "--width", help="Frame width.")] = 640,
    height: Annotated[int, ranged("frame_height", "--height", help="Frame height.")] = 480,
    fps: Annotated[int, ranged("fps", help="Frame rate.")] = 25,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write synthetic videos of moving shapes with ground-truth tracks: OUT/<seq>/<seq>.mp4,
    gt/gt.txt and seqinfo.ini (at least 6 objects a frame, occlusions behind pillars of 8+
    frames for 30%+ of the tracks, same-class crossings, objects entering and leaving, speeds
    up to 8 px per frame; each video's line says what it got - a short one may fall short)."""
    _require_extra("av", "video", "data synth-video")
    from ...core.limits import check

    check("seed", seed + num_videos - 1)  # the last video's seed too
    from ...data.synth_video import write_sequence

    if out is None:
        raise UsageError("--out/-o is required: the folder to write the sequences into")
    claim_out(out, "data synth-video", overwrite=overwrite)
    videos = []
    for k in range(num_videos):
        s = seed + k
        stats = write_sequence(out, f"synth-s{s}", s, num_frames, (width, height), fps)
        videos.append({"path": str(out / stats["name"]), "frames": num_frames, **stats})
        if as_json:
            continue
        print(f"{out / stats['name']}: {num_frames} frames, {stats['tracks']} tracks, "
              f"{stats['occluded_fraction']:.0%} of them hidden 8+ frames, at least "
              f"{stats['min_objects']} objects a frame")
    if as_json:
        print(json.dumps({"out": str(out), "videos": videos}))


@data_app.command("convert")
@user_errors
def data_convert(
    src: Annotated[Path, typer.Argument(help="A COCO set (annotations.json + images/, or an instances .json), a YOLO data.yaml (or its folder) or a Pascal VOC folder.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write the converted set into.  [required]")] = None,
    to: Annotated[str, typer.Option("--to", help="coco, yolo or voc.")] = "coco",
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a dataset between the COCO, YOLO and Pascal VOC layouts, every split it has
    (images hard-linked where the file system allows, else copied). Malformed entries are
    reported with their file and line and left out."""
    from ...data.formats import detect_layout, read_dataset, splits_of, write_dataset
    from .common import _note

    if out is None:
        raise UsageError("--out/-o is required: the folder to write the converted set into")
    if to == "yolo":
        _require_extra("yaml", "yolo", "data convert --to yolo")
    if not src.exists():
        raise UsageError(f"{src}: no such folder or file")
    layout = detect_layout(src)
    if to not in ("coco", "yolo", "voc"):
        raise UsageError(f"--to must be coco, yolo or voc, got {to!r}")
    from ...eval.annotations import check_annotations

    splits = {split: read_dataset(src, split) for split in splits_of(src)}
    for split, ds in splits.items():  # a malformed annotation file: its one line, nothing written
        check_annotations(ds.coco, f"{src} ({split})")
    claim_out(out, "data convert", overwrite=overwrite, inputs=[src])
    left_out: dict = {}
    written = write_dataset(splits, out, to, left_out)
    problems = [p for ds in splits.values() for p in ds.problems]
    for p in problems:
        _note(f"left out {p}")
    if left_out.get("crowd"):
        _note(f"left out {left_out['crowd']} crowd region(s): {to.upper()} has none")
    counts = {s: {"images": len(ds.coco["images"]), "boxes": len(ds.coco["annotations"])}
              for s, ds in splits.items()}
    if as_json:
        print(json.dumps({"from": layout, "to": to, "out": str(written), "splits": counts,
                          "problems": problems, "left_out": left_out}))
        return
    parts = ", ".join(f"{s}: {c['images']} images, {c['boxes']} boxes" for s, c in counts.items())
    print(f"{src} ({layout.upper()}) -> {written} ({to.upper()}): {parts}"
          + (f"; {len(problems)} malformed entr{'y' if len(problems) == 1 else 'ies'} left out"
             if problems else ""))
