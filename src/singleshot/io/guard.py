"""The rules that keep a command from destroying what the user gave it - the one place they live.

- An output never resolves to one of the command's inputs (the same path, a symlink to it, a
  hard link to it), and a folder output never holds an input: refused before any work.
- Output folders are claimed: each command that writes a folder marks it with ``.singleshot``
  (which command wrote it). A non-empty folder that no singleshot command wrote is refused
  unless ``overwrite``, which moves what is there into ``OUT/previous-N/``; a folder the same
  command wrote is resumed by the commands that resume (detect, eval, train), set aside the
  same way, with a note, by those that write a fresh set each time (data synth, demo, bench),
  and refused without ``overwrite`` by video (a tracker's state cannot resume), so a folder
  always holds exactly what its last run says.
- Sources never include a singleshot output folder (``.singleshot``, ``run.json`` or
  ``detections.jsonl`` inside it) found while walking a folder, nor the command's own output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import UsageError
from .files import ensure_dir, set_aside, write_json_atomic

MARKER = ".singleshot"
_LEGACY_RUN_FILES = ("run.json", "detections.jsonl")  # detect/eval/video runs before the marker


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: equal once resolved (symlinks followed), or the same
    inode where both exist (hard links, bind mounts)."""
    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def check_output_file(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                      option: str = "out") -> None:
    """UsageError when the output file ``out`` is one of ``inputs`` (files or folders it would
    land in are fine; the input itself is not)."""
    for inp in inputs:
        if inp is not None and same_file(out, inp):
            raise UsageError(f"{{opt:{option}}} {out} is an input of this command ({inp}); "
                             "writing it would destroy that input: give another path")


def check_output_folder(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                        option: str = "out") -> None:
    """UsageError when the output folder ``out`` is an input or holds one (its files would be
    overwritten or moved aside)."""
    out = Path(out)
    for inp in inputs:
        if inp is None or "://" in str(inp):
            continue
        p = Path(inp)
        if same_file(out, p) or _inside(p, out):
            raise UsageError(f"{{opt:{option}}} {out} holds this command's input {inp}; "
                             "give an output folder outside the inputs")


def written_by(folder: str | os.PathLike) -> str | None:
    """The command that wrote ``folder`` ("detect", "eval"...), "singleshot" for a run folder of
    an earlier version (run.json / detections.jsonl, no marker), None for any other folder."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file():
        try:
            doc = json.loads(marker.read_text())
            return str(doc.get("command") or "singleshot") if isinstance(doc, dict) \
                else "singleshot"
        except (OSError, ValueError):
            return "singleshot"
    # folders of versions before the marker: known by the files each command writes
    if (folder / "train_config.json").is_file():
        return "train"
    if (folder / "summary.md").is_file() and (folder / "summary.json").is_file():
        return "eval"
    return "singleshot" if any((folder / n).is_file() for n in _LEGACY_RUN_FILES) else None


def is_output_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is the output of a singleshot run (never read back as input)."""
    return Path(folder).is_dir() and written_by(folder) is not None


def claim_output_folder(out: str | os.PathLike, command: str, *, overwrite: bool = False,
                        again: str = "set aside", inputs: Iterable = (),
                        note: Callable[[str], None] = lambda s: None,
                        option: str = "out") -> Path:
    """Make ``out`` the output folder of ``command`` and return it (created as needed).

    Refused (UsageError, exit 2) when it holds an input, is a file, or is non-empty and not
    written by ``command`` (unless ``overwrite``). With ``overwrite`` what is there moves into
    ``out/previous-N/`` and ``note`` says so. ``again`` says what a command does with its own
    earlier output: ``resume`` keeps it (its journal decides what is redone), ``set aside``
    moves it into ``previous-N/`` (said), ``refuse`` asks for ``--overwrite``."""
    out = Path(out)
    check_output_folder(out, inputs, option)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{{opt:{option}}} {out}: exists and is a file, not a folder")
    owner = written_by(out) if out.is_dir() else None
    items = [p for p in out.iterdir() if p.name != MARKER] if out.is_dir() else []
    if items and not overwrite:
        if owner is None:
            raise UsageError(f"{{opt:{option}}} {out} is not empty and was not written by "
                             f"singleshot {command}; give an empty or new folder, or "
                             "--overwrite to move what is there into previous-N/")
        if owner not in (command, "singleshot"):
            raise UsageError(f"{{opt:{option}}} {out} holds the output of singleshot {owner}; "
                             f"give another folder, or --overwrite to move it into previous-N/")
        if again == "refuse":
            raise UsageError(f"{{opt:{option}}} {out} holds an earlier singleshot {command} run; "
                             "give another folder, or --overwrite to move it into previous-N/")
    ensure_dir(out, option)
    if items and (overwrite or again == "set aside"):
        moved = set_aside(out)
        if moved is not None:
            note(f"the earlier contents of {out} moved to {moved}")
    write_json_atomic(out / MARKER, {"command": command})
    return out


def walk_images(folder: Path, pattern: str, extensions: tuple[str, ...],
                exclude: Iterable[Path] = ()) -> tuple[list[Path], int, list[Path]]:
    """Files under ``folder`` matching ``pattern`` (``*`` or ``**/*``), sorted -> (files with
    one of ``extensions``, count of other files, output folders skipped). Never descends into a
    singleshot output folder (other than ``folder`` itself) or into ``exclude``."""
    skip = [Path(p).resolve() for p in exclude]
    images, others, skipped = [], 0, []
    outputs: dict[Path, bool] = {}

    def hidden(f: Path) -> bool:
        for parent in f.parents:
            if parent == folder or folder not in parent.parents:
                break
            if parent not in outputs:
                outputs[parent] = is_output_folder(parent) or parent.resolve() in skip
                if outputs[parent]:
                    skipped.append(parent)
            if outputs[parent]:
                return True
        return False

    for f in sorted(folder.glob(pattern)):
        if not f.is_file() or hidden(f) or f.resolve().parent in skip:
            continue
        if f.suffix.lower() in extensions:
            images.append(f)
        else:
            others += 1
    top = [d for d in skipped if not any(o in d.parents for o in skipped)]  # outermost only
    return images, others, sorted(top)
