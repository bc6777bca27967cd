"""A detection run's folder: ``run.json`` (what decides its detections) and ``detections.jsonl``
(one line per image, appended as it goes), so that an interrupted run resumes - only with the same
model file and settings."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..errors import UsageError
from ..io.files import write_json_atomic


def run_manifest(detector, *, name: str, annotations: str, images: str, clip: bool,
                 mlperf: bool) -> dict:
    """Everything that decides a run's detections: the model file's content hash (a re-export to
    the same path is another model), backend, precision, preprocessing, thresholds, and the
    conventions."""
    from ..hub.download import sha256_file

    path = Path(detector.name)
    digest = sha256_file(path) if path.is_file() else None
    p = detector.params
    return {"model": name, "model_path": str(path.resolve()) if digest else detector.name,
            "model_sha256": digest, "annotations": annotations, "images": images,
            "clip": clip, "mlperf": mlperf,
            "backend": detector.backend.name, "precision": detector.backend.precision,
            "preprocess": detector.preprocess_mode,
            "thresholds": {"conf": p.score_threshold, "iou": p.iou_threshold,
                           "max_per_class": p.max_per_class, "max_det": p.max_det}}


class RunStore:
    """``out_dir`` of one model's run. ``open(manifest)`` checks that what is there was made
    with the same manifest (UsageError naming what differs: finished work is never reused for
    another model), writes it, and returns the entries done so far by image id."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir)
        self.jsonl = self.dir / "detections.jsonl"

    def check(self, manifest: dict) -> None:
        if not self.jsonl.exists():
            return
        try:
            old = json.loads((self.dir / "run.json").read_text())
        except (OSError, ValueError):
            old = {}
        if not isinstance(old, dict):
            old = {}
        keys = [k for k in manifest if k != "model_path" and old.get(k) != manifest[k]]
        if not keys:
            return

        def show(v):
            return (v[:12] + "...") if isinstance(v, str) and len(v) == 64 else json.dumps(v)

        diff = "; ".join(f"{k} {show(old.get(k))} -> {show(manifest[k])}" for k in keys)
        raise UsageError(f"{self.dir} holds detections of another model or settings ({diff}); "
                         "give another {opt:out}, or {opt:overwrite} to start over (the old run moves "
                         "to previous-N/)")

    def open(self, manifest: dict) -> dict[int, dict]:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.check(manifest)
        write_json_atomic(self.dir / "run.json", manifest)
        return self.done()

    def done(self) -> dict[int, dict]:
        """Entries by image id; a line cut short by an interruption is skipped (run again)."""
        done: dict[int, dict] = {}
        if not self.jsonl.exists():
            return done
        for line in self.jsonl.read_text().splitlines():
            try:
                entry = json.loads(line)
                done[int(entry["image_id"])] = entry
            except (ValueError, KeyError, TypeError):
                continue
        return done

    @contextlib.contextmanager
    def appender(self):
        """``with store.appender() as add: add(entry)`` - each entry one flushed line."""
        with open(self.jsonl, "a") as sink:
            def add(entry: dict) -> None:
                sink.write(json.dumps(entry) + "\n")
                sink.flush()
            yield add
