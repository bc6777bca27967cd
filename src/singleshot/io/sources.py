"""Expanding command-line sources (files, folders, globs, URLs) into a list of inputs."""

from __future__ import annotations

import glob
from pathlib import Path

from .fetch import is_url
from .images import IMAGE_EXTENSIONS


def expand_sources(sources: list[str], recursive: bool = False) -> tuple[list[str], list[str]]:
    """-> (paths to try, notes). A URL is taken as it is; a folder yields its files with image
    extensions (sorted); a glob its matches; anything else is taken as a file path as is (a
    missing one then fails per file). A glob or folder that yields nothing is returned as
    itself so that it is reported."""
    paths: list[str] = []
    notes: list[str] = []
    for src in sources:
        if is_url(src):
            paths.append(src)
            continue
        p = Path(src)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern) if f.is_file())
            images = [str(f) for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
            skipped = len(files) - len(images)
            if skipped:
                notes.append(f"{src}: skipped {skipped} file(s) without an image extension")
            paths.extend(images if images else [src])
        elif any(ch in src for ch in "*?[") and not p.exists():
            matches = sorted(m for m in glob.glob(src, recursive=True) if Path(m).is_file())
            paths.extend(matches if matches else [src])
            if not matches:
                notes.append(f"{src}: pattern matched no files")
        else:
            paths.append(src)
    return paths, notes
