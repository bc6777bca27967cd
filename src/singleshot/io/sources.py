"""Expanding command-line sources (files, folders, globs, URLs) into a list of inputs."""

from __future__ import annotations

import glob
from pathlib import Path

from .fetch import is_url
from .guard import walk_images
from .images import IMAGE_EXTENSIONS


def expand_sources(sources: list[str], recursive: bool = False,
                   exclude: list[Path] = ()) -> tuple[list[str], list[str]]:
    """-> (paths to try, notes). A URL is taken as it is; a folder yields its files with image
    extensions (sorted), never those inside a singleshot output folder or ``exclude`` (the
    command's own outputs: see :mod:`singleshot.io.guard`); a glob its matches; anything else
    is taken as a file path as is (a missing one then fails per file). A glob or folder that
    yields nothing is returned as itself so that it is reported."""
    paths: list[str] = []
    notes: list[str] = []
    for src in sources:
        if is_url(src):
            paths.append(src)
            continue
        p = Path(src)
        if p.is_dir():
            found, skipped, outputs = walk_images(p, "**/*" if recursive else "*",
                                                  IMAGE_EXTENSIONS, exclude)
            images = [str(f) for f in found]
            if skipped:
                notes.append(f"{src}: skipped {skipped} file(s) without an image extension")
            if outputs:
                notes.append(f"{src}: skipped {len(outputs)} singleshot output folder(s) "
                             f"({', '.join(str(o) for o in outputs[:3])}"
                             f"{', ...' if len(outputs) > 3 else ''})")
            paths.extend(images if images else [src])
        elif any(ch in src for ch in "*?[") and not p.exists():
            matches = sorted(m for m in glob.glob(src, recursive=True) if Path(m).is_file())
            paths.extend(matches if matches else [src])
            if not matches:
                notes.append(f"{src}: pattern matched no files")
        else:
            paths.append(src)
    return paths, notes
