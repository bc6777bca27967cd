"""A model's evaluation folder: a :class:`~singleshot.io.journal.Journal` keyed by image id
(``run.json`` + ``detections.jsonl``, one line per image, appended as it goes), so that an
interrupted run resumes - only with the same model file and settings."""

from __future__ import annotations

from pathlib import Path

from ..io.journal import Journal
from ..runtime.report import detector_manifest


def run_manifest(detector, *, name: str, annotations: str, images: str, clip: bool,
                 mlperf: bool) -> dict:
    """Everything that decides an evaluation's detections: the detector's manifest (model file
    hash, backend, precision, preprocessing, thresholds) and the conventions."""
    m = detector_manifest(detector)
    return {"model": name, "model_path": m.pop("model_path"), "model_sha256": m.pop("model_sha256"),
            "annotations": annotations, "images": images, "clip": clip, "mlperf": mlperf, **m}


class RunStore(Journal):
    """``out_dir`` of one model's evaluation; entries ``{"image_id", "file_name", "error",
    "results"[, "note"]}`` keyed by image id."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__(out_dir, key=lambda entry: int(entry["image_id"]))

    def done(self) -> dict[int, dict]:
        """Entries by image id; a line cut short by an interruption is skipped (run again)."""
        return self.entries()
