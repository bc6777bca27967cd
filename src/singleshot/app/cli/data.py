"""``singleshot data``: the synthetic scene generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ...io.files import ensure_dir
from .common import _alias, app, user_errors

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
    from ...data.synth import write_dataset

    images = _alias(num_images, "--num-images", images, "--images")
    images = 1000 if images is None else images
    if out is None:
        raise UsageError("--out/-o is required: the folder to write the dataset into")
    if images < 1:
        raise UsageError("--num-images must be at least 1")
    ensure_dir(out)
    path = write_dataset(out, images, seed)
    print(f"wrote {images} scenes to {out / 'images'} and {path}")
