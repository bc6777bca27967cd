"""A model repository folder, as Triton lays it out: ``DIR/NAME/1/``, ``DIR/NAME/2/``... each
holding one model file (``.onnx``; ``model.onnx`` when there are several), or ``DIR/NAME.onnx``
as version 1 of NAME. A version policy picks the versions served; :meth:`FolderRepository.sync`
brings the served set in line with the folder (new versions are loaded and warmed before they
take traffic - the newest READY version answers requests without a version -; versions gone
from the folder or from the policy are unloaded after the requests already queued on them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .models import Batching, ModelVersion, Repository

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
    version."""

    def __init__(self, folder: str | os.PathLike, make: Callable[[Path], list], *,
                 policy: VersionPolicy = VersionPolicy(), batching: Batching | None = None) -> None:
        super().__init__()
        self.folder, self.make, self.policy = Path(folder), make, policy
        self.batching = batching or Batching()
        if not self.folder.is_dir():
            raise UsageError(f"{{opt:model_repository}} {self.folder}: no such folder")
        self.files: dict[tuple[str, str], tuple[Path, tuple | None]] = {}
        self.sync(load=False)
        if not self.models:
            raise UsageError(f"{self.folder}: no models (expected NAME/1/model.onnx or "
                             f"NAME.onnx)")

    def wanted(self) -> dict[str, dict[str, Path]]:
        return {name: {v: versions[v] for v in self.policy.select(list(versions))}
                for name, versions in scan(self.folder).items()}

    def sync(self, load: bool = True, names: list[str] | None = None) -> list[str]:
        """Bring the served versions in line with the folder (only ``names``, when given);
        returns what changed, one line each. ``load``: load and warm what is new (False: add
        it, to be loaded at startup)."""
        changes = []
        wanted = self.wanted()
        for name in names if names is not None else sorted(set(wanted) | set(self.models)):
            now = wanted.get(name, {})
            for version, path in sorted(now.items()):
                key = (name, version)
                stamp = _stamp(path)
                old = self.models.get(name, {}).get(version)
                if old is not None and self.files.get(key) == (path, stamp):
                    if load and old.state != "READY" and old.reason != "unloaded":
                        old.load()  # failed earlier: try again
                    continue
                fresh = ModelVersion(name, version, make=lambda p=path: self.make(p),
                                     batching=self.batching, observe=self.observe)
                if load:
                    try:
                        fresh.load()  # warmed before it takes traffic
                    except Exception as err:  # noqa: BLE001 - a bad file: said, the rest served
                        fresh.state, fresh.reason = "UNAVAILABLE", f"failed to load: {err}"
                        changes.append(f"{name} version {version}: {fresh.reason}")
                        self.files[key] = (path, stamp)
                        self.add(fresh)
                        continue
                self.files[key] = (path, stamp)
                self.add(fresh)
                if old is not None:
                    old.unload("replaced by a changed file")
                changes.append(f"{name} version {version}: {'reloaded' if old else 'added'}")
            for version, mv in list(self.models.get(name, {}).items()):
                if version not in now:
                    mv.unload("not in the repository" if name not in wanted else
                              "not selected by the version policy")
                    del self.models[name][version]
                    self.files.pop((name, version), None)
                    changes.append(f"{name} version {version}: removed")
            if name in self.models and not self.models[name]:
                del self.models[name]
        return changes
