"""Output files and folders: atomic writes (results appear whole or not at all: a temp file
renamed into place), output folders checked with one-line errors, and old runs set aside."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..errors import UsageError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """``with atomic_path(p) as tmp: write tmp`` - ``p`` appears whole, renamed from ``tmp`` (same
    folder and suffix, so writers that go by the suffix still work) when the block succeeds; a
    failed block leaves no ``tmp`` behind and ``p`` untouched."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, obj, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent))


def ensure_dir(path: str | os.PathLike, option: str = "out") -> Path:
    """Create the output folder ``path`` (and its parents); UsageError naming ``option`` when
    it is an existing file or cannot be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{{opt:{option}}} {path}: exists and is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{{opt:{option}}} {path}: cannot create the folder "
                         f"({err.strerror or err})") from None
    return path


def ensure_parent(path: str | os.PathLike, option: str = "out") -> Path:
    """Check an output *file* path: not a folder, its folder created. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{{opt:{option}}} {path}: is a folder; give a file name")
    ensure_dir(path.parent if str(path.parent) else Path("."), option)
    return path


def set_aside(out: Path) -> Path | None:
    """Move everything in ``out`` (but earlier ``previous-N`` folders) into ``out/previous-N``
    (N one more than the highest there); returns that folder, or None when ``out`` was empty."""
    out = Path(out)
    items = [p for p in out.iterdir() if not (p.is_dir() and p.name.startswith("previous-")
                                              and p.name[9:].isdigit())] if out.is_dir() else []
    if not items:
        return None
    taken = [int(p.name[9:]) for p in out.glob("previous-*") if p.name[9:].isdigit()]
    dest = out / f"previous-{max(taken, default=0) + 1}"
    dest.mkdir()
    for p in items:
        os.replace(p, dest / p.name)
    return dest


def new_run_folder(kind: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<kind>/<YYYYmmdd-HHMMSS>`` for a command given no ``--out``, created here so that
    it is this run's alone: two runs started in the same second get ``...-2``, ``...-3``
    (sharing one, the second found the first's files and refused, or resumed them)."""
    import datetime

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / kind
    base.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        folder = base / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        _MADE.append(folder)
        return folder
    raise UsageError(f"{base}: no free run folder for {stamp}; give --out")


_MADE: list[Path] = []  # run folders made by new_run_folder in this process


def drop_empty_run_folders() -> None:
    """Remove the run folders :func:`new_run_folder` made that are still empty: a command that
    stops on an error before writing leaves no empty folder behind."""
    while _MADE:
        with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it
            _MADE.pop().rmdir()
