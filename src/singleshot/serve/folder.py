"""A model repository folder, as Triton lays it out: ``DIR/NAME/1/``, ``DIR/NAME/2/``... each
holding one model file (``.onnx``; ``model.onnx`` when there are several), or ``DIR/NAME.onnx``
as version 1 of NAME. A version policy picks the versions served; :meth:`FolderRepository.sync`
brings the served set in line with the folder as a transaction: new versions are loaded and
warmed before they take traffic (the newest READY version answers requests without a version);
versions gone from the folder or from the policy are unloaded after the requests already queued
on them, and only once what replaces them is ready. A version that fails to load is UNAVAILABLE
with its reason in the index, is left out of the policy's choice (so the versions serving keep
serving), and is tried again only when its file changes; one model's failure never stops
another's sync.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .models import Batching, ModelVersion, Repository, one_line

MODEL_SUFFIXES = (".onnx",)


@dataclass(frozen=True)
class VersionPolicy:
    """``latest:N`` (the N highest versions), ``all``, or ``specific:1,3``."""

    kind: str = "latest"
    count: int = 1
    versions: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        kind, _, arg = text.strip().lower().partition(":")
        try:
            if kind == "latest":
                n = int(arg or 1)
                if n >= 1:
                    return cls("latest", n)
            elif kind == "all" and not arg:
                return cls("all")
            elif kind == "specific":
                versions = tuple(str(int(v)) for v in arg.split(",") if v.strip())
                if versions and all(int(v) >= 1 for v in versions):
                    return cls("specific", versions=versions)
        except ValueError:
            pass
        raise UsageError(f"{{opt:version_policy}} must be latest:N, all or specific:1,3, "
                         f"got {text!r}")

    def select(self, versions: list[str]) -> list[str]:
        ordered = sorted(versions, key=int)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.count:]


def scan(folder: Path) -> dict[str, dict[str, Path]]:
    """``{name: {version: model file}}`` of ``folder``; entries that hold no model file, or
    version folders that are not numbers, are not models and are left out."""
    found: dict[str, dict[str, Path]] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        if entry.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
            found.setdefault(path.stem, {})["1"] = path
        elif entry.is_dir():
            for sub in sorted(p for p in path.iterdir() if p.is_dir() and p.name.isdigit()
                              and int(p.name) >= 1):
                model = _model_file(sub)
                if model is not None:
                    found.setdefault(entry.name, {})[str(int(sub.name))] = model
    return found


def _model_file(folder: Path) -> Path | None:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in
                   MODEL_SUFFIXES)
    if len(files) > 1:
        named = [p for p in files if p.stem == "model"]
        return named[0] if named else None
    return files[0] if files else None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class FolderRepository(Repository):
    """The models of ``folder`` under ``policy``; ``make(path)`` -> the detectors of one
    version. ``follow_symlinks``: serve model files whose link leaves the folder (refused by
    default: a repository is what its folder holds)."""

    def __init__(self, folder: str | os.PathLike, make: Callable[[Path], list], *,
                 policy: VersionPolicy = VersionPolicy(), batching: Batching | None = None,
                 follow_symlinks: bool = False) -> None:
        super().__init__()
        self.folder, self.make, self.policy = Path(folder), make, policy
        self.batching = batching or Batching()
        self.follow_symlinks = follow_symlinks
        if not self.folder.is_dir():
            raise UsageError(f"{{opt:model_repository}} {self.folder}: no such folder")
        self.root = str(self.folder.resolve())
        self.files: dict[tuple[str, str], tuple[Path, tuple | None]] = {}
        self.failed: dict[tuple[str, str], tuple[Path, tuple | None]] = {}  # not retried as is
        self.sync(load=False)
        if not self.models:
            raise UsageError(f"{self.folder}: no models (expected NAME/1/model.onnx or "
                             f"NAME.onnx)")

    def wanted(self) -> dict[str, dict[str, Path]]:
        return {name: {v: versions[v] for v in self.policy.select(list(versions))}
                for name, versions in scan(self.folder).items()}

    def sync(self, load: bool = True, names: list[str] | None = None,
             retry: bool = False) -> list[str]:
        """Bring the served versions in line with the folder (only ``names``, when given);
        returns what changed, one line each. ``load``: load and warm what is new (False: add
        it, to be loaded at startup); ``retry``: an explicit load - versions that failed or
        were unloaded are tried again even if their files did not change."""
        found = scan(self.folder)
        changes = []
        for name in names if names is not None else sorted(set(found) | set(self.models)):
            try:
                changes += self._sync_model(name, found.get(name, {}), load, retry)
            except Exception as err:  # noqa: BLE001 - a bug or a vanished file: the others go on
                changes.append(f"{name}: {one_line(err, self.root)}")
        return changes

    def _sync_model(self, name: str, on_disk: dict[str, Path], load: bool,
                    retry: bool) -> list[str]:
        changes: list[str] = []
        served = self.models.setdefault(name, {})
        candidates = {}
        for version, path in on_disk.items():
            key, stamp = (name, version), _stamp(path)
            if retry:
                self.failed.pop(key, None)
            elif self.failed.get(key) == (path, stamp):
                continue  # broken and unchanged: listed as failed, not loaded again
            if not self.follow_symlinks and not self._inside(path):
                self._fail(name, version, path, stamp, "its file is a link that leaves the "
                           "repository (serve it with --follow-symlinks)", changes)
                continue
            candidates[version] = (path, stamp)
        while True:  # the policy's choice among what can load; a failure makes it choose again
            chosen = self.policy.select(list(candidates))
            failed = None
            for version in chosen:
                path, stamp = candidates[version]
                old = served.get(version)
                same = old is not None and self.files.get((name, version)) == (path, stamp)
                if same and (old.state == "READY" or not load or
                             (old.reason == "unloaded" and not retry)):
                    continue
                fresh = ModelVersion(name, version, make=lambda p=path: self.make(p),
                                     batching=self.batching, observe=self.observe)
                if load:
                    try:
                        fresh.load()  # warmed before it takes traffic
                    except Exception as err:  # noqa: BLE001 - a bad file: said, the rest served
                        self._fail(name, version, path, stamp,
                                   f"failed to load: {one_line(err, self.root)}", changes)
                        failed = version
                        break
                self.files[(name, version)] = (path, stamp)
                self.add(fresh)
                if old is not None:
                    old.unload("replaced by a changed file")
                if load or old is None:
                    changes.append(f"{name} version {version}: "
                                   f"{'reloaded' if old is not None else 'added'}")
            if failed is None:
                break
            del candidates[failed]
        # what is not chosen goes, now that what replaces it is ready; failures stay listed
        for version, mv in list(served.items()):
            if version in chosen:
                continue
            if (name, version) in self.failed and version in on_disk:
                continue
            mv.unload("not in the repository" if version not in on_disk else
                      "not selected by the version policy")
            del served[version]
            self.files.pop((name, version), None)
            self.failed.pop((name, version), None)
            changes.append(f"{name} version {version}: removed")
        if not served:
            del self.models[name]
        return changes

    def _fail(self, name: str, version: str, path: Path, stamp, reason: str,
              changes: list[str]) -> None:
        """``name``/``version`` listed as UNAVAILABLE with ``reason``; a version serving under
        the same number (its file since replaced) keeps serving."""
        self.failed[(name, version)] = (path, stamp)
        old = self.models.get(name, {}).get(version)
        if old is None or old.state != "READY":
            entry = ModelVersion(name, version, make=list, batching=self.batching,
                                 observe=self.observe, reason=reason)
            self.add(entry)
        changes.append(f"{name} version {version}: {reason}")

    def _inside(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.root)
        except OSError:
            return False
