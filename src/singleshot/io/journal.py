"""A run folder that survives being stopped: ``run.json`` (the manifest: everything that decides
the run's results) and a JSONL journal with one line per finished input, appended and flushed as
each finishes. A run stopped anywhere (Ctrl-C, a killed driver, a lost machine) is run again with
the same folder and redoes only what has no line yet - never with another manifest, so finished
work is never mixed with another model's or settings'.

The journal is the only copy of the results while a run goes: at the end :meth:`Journal.assemble`
streams the final document in input order from it (so a million results never sit in memory)
and checks that every input is there exactly once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path

from ..errors import SingleshotError, UsageError
from .files import atomic_path, write_json_atomic


class AssemblyError(SingleshotError):
    """The journal does not hold every input exactly once (names the missing or duplicated)."""


def _show(v):
    return (v[:12] + "...") if isinstance(v, str) and len(v) == 64 else json.dumps(v)


class Journal:
    """``folder``/run.json and ``folder``/``name``; ``key(entry)`` -> what identifies an input
    (a line without a valid key is skipped as cut short, and its input is redone)."""

    def __init__(self, folder: str | Path, key: Callable[[dict], Hashable],
                 name: str = "detections.jsonl") -> None:
        self.dir = Path(folder)
        self.path = self.dir / name
        self.key = key

    def check(self, manifest: dict, ignore: Iterable[str] = ("model_path",)) -> None:
        """UsageError naming what differs when the journal was written under another manifest
        (keys in ``ignore`` may differ: a model file moved is the same model)."""
        if not self.path.exists():
            return
        try:
            old = json.loads((self.dir / "run.json").read_text())
        except (OSError, ValueError):
            old = {}
        if not isinstance(old, dict):
            old = {}
        keys = [k for k in manifest if k not in ignore and old.get(k) != manifest[k]]
        if keys:
            diff = "; ".join(f"{k} {_show(old.get(k))} -> {_show(manifest[k])}" for k in keys)
            raise UsageError(f"{self.dir} holds results of another model or settings ({diff}); "
                             "give another {opt:out}, or {opt:overwrite} to start over (the old "
                             "run moves to previous-N/)")

    def open(self, manifest: dict) -> None:
        """Create the folder, check the manifest against what is there, and write it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.check(manifest)
        write_json_atomic(self.dir / "run.json", manifest)

    def lines(self):
        """(key, entry, offset, length) of every valid line, streamed."""
        if not self.path.exists():
            return
        offset = 0
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    entry = json.loads(raw)
                    key = self.key(entry)
                except (ValueError, KeyError, TypeError):
                    key = None
                if key is not None and raw.endswith(b"\n"):
                    yield key, entry, offset, len(raw)
                offset += len(raw)

    def entries(self) -> dict:
        """Entries by key (the last line of a key wins)."""
        return {key: entry for key, entry, _, _ in self.lines()}

    def keys(self) -> set:
        return {key for key, _, _, _ in self.lines()}

    @contextlib.contextmanager
    def appender(self, written: Iterable | None = None):
        """``with journal.appender() as add: add(entry)`` -> True, or False for an input that
        already has a line (a batch redone after a worker died: never written twice). Each
        line is flushed as it is written. ``written``: the keys already in the journal, when
        the caller has just read them (else they are read here)."""
        written = set(written) if written is not None else self.keys()
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as sink:
            if sink.tell() and not self._ends_with_newline():
                sink.write(b"\n")  # a line cut short by a kill: start on a fresh one

            def add(entry: dict) -> bool:
                key = self.key(entry)
                if key in written:
                    return False
                sink.write((json.dumps(entry) + "\n").encode())
                sink.flush()
                written.add(key)
                return True

            try:
                yield add
            except KeyboardInterrupt:  # finished lines are kept; run.json says the run was cut
                self.mark(interrupted=True, results=len(written))
                raise

    def mark(self, **state) -> None:
        """Add ``state`` to run.json (e.g. ``interrupted``); the next :meth:`open` writes the
        manifest afresh, so a resumed run that finishes carries no mark."""
        run = self.dir / "run.json"
        try:
            doc = json.loads(run.read_text())
        except (OSError, ValueError):
            doc = {}
        write_json_atomic(run, {**(doc if isinstance(doc, dict) else {}), **state})

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"

    def assemble(self, order: list, dest: str | Path, head: dict, *, field: str = "images",
                 transform: Callable[[dict], dict] = lambda entry: entry) -> int:
        """Write ``dest`` atomically: ``{**head, field: [entry of each key of order]}``, entries
        streamed from the journal in ``order`` (a key given twice is written twice: the same
        input given twice). AssemblyError naming inputs with no line, or with more than one.
        Returns the number of entries written."""
        where: dict = {}
        dupes = []
        for key, _, offset, length in self.lines():
            if key in where:
                dupes.append(key)
            where[key] = (offset, length)
        missing = [k for k in dict.fromkeys(order) if k not in where]
        wanted = set(order)
        dupes = [k for k in dict.fromkeys(dupes) if k in wanted]
        if missing or dupes:
            def names(keys):
                shown = ", ".join(str(k[0] if isinstance(k, tuple) else k) for k in keys[:5])
                return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

            problems = ([f"{len(missing)} input(s) have no result ({names(missing)})"] if missing
                        else []) + ([f"{len(dupes)} input(s) have more than one ({names(dupes)})"]
                                    if dupes else [])
            raise AssemblyError(f"{self.path}: " + "; ".join(problems))
        opening = json.dumps({**head, field: []})[:-3]  # everything before the list
        with atomic_path(dest) as tmp, open(tmp, "w") as out, open(self.path, "rb") as src:
            out.write(opening + "[")
            for n, key in enumerate(order):
                offset, length = where[key]
                src.seek(offset)
                entry = transform(json.loads(src.read(length)))
                out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(entry))
            out.write("\n]}\n" if order else "]}\n")
        return len(order)
