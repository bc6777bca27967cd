"""The known models: the four ONNX Model Zoo files and the project's own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import UsageError

ZOO_BASE_URL = ("https://github.com/onnx/models/raw/main/validated/vision/"
                "object_detection_segmentation/ssd/model/")


@dataclass(frozen=True)
class RegistryEntry:
    """A downloadable (or bundled) model file and what its card says about it.

    card_map: the published mAP and how it was measured (see the README: the two kinds are not
    comparable).
    """

    name: str
    filename: str
    sha256: str | None
    size: int | None
    opset: int
    card_map: float | None
    card_metric: str
    description: str
    bundled: bool = False

    @property
    def url(self) -> str | None:
        if self.bundled:
            return None
        base = os.environ.get("SINGLESHOT_MODELS_URL", ZOO_BASE_URL)
        return base.rstrip("/") + "/" + self.filename


_ZOO = (
    RegistryEntry("ssd-10", "ssd-10.onnx",
                  "80013dd940efc1462c616143b461ef35885bcc1706e0670b66623293b4b52c59", 80363696, 10,
                  0.195, "pycocotools, val2017", "fp32, zoo contract"),
    RegistryEntry("ssd-12", "ssd-12.onnx",
                  "5ec1e058e666ef980a6213ac40088877865aafb2b6676b9af204b3828e4bb9d5", 80366315, 12,
                  0.1898, "INC metric (not pycocotools)", "fp32, zoo contract"),
    RegistryEntry("ssd-12-int8", "ssd-12-int8.onnx",
                  "56d2c03a8c74c03f704509ccfcd91763991c6e1b92f63da730fb2b3d07565453", 20485276, 12,
                  0.1892, "INC metric (not pycocotools)",
                  "int8 QOperator (onnxruntime only)"),
    RegistryEntry("ssd-12-qdq", "ssd-12-qdq.onnx",
                  "fba599b77e556525844e4e1022a9f60969b0e9130baa03640539cb0b58f474a2", 20479614, 12,
                  0.1863, "INC metric (not pycocotools)",
                  "int8 QDQ, per-tensor weights"),
)
_EXTRA: dict[str, RegistryEntry] = {}


def bundled_path(filename: str) -> Path:
    return Path(str(resources.files("singleshot") / "assets" / filename))


_BUNDLED = (
    RegistryEntry("demo", "demo.onnx", None, None, 13, None, "see the model card",
                  "narrow SSD-ResNet34 trained on synthetic shapes (bundled)", bundled=True),
    RegistryEntry("demo-int8-qdq", "demo-int8-qdq.onnx", None, None, 13, None, "see the model card",
                  "the demo model, int8 QDQ (accuracy-aware singleshot quantize)", bundled=True),
    RegistryEntry("demo-int8-qoperator", "demo-int8-qoperator.onnx", None, None, 13, None,
                  "see the model card",
                  "the demo model, int8 QOperator (accuracy-aware singleshot quantize)",
                  bundled=True),
)


def _bundled() -> list[RegistryEntry]:
    return [e for e in _BUNDLED if bundled_path(e.filename).is_file()]


def list_entries() -> list[RegistryEntry]:
    return [*_ZOO, *_bundled(), *_EXTRA.values()]


def register(entry: RegistryEntry) -> None:
    """Add a model to the registry of this process (mirrors of private models, tests)."""
    _EXTRA[entry.name] = entry


def is_registry_name(name: str) -> bool:
    """Whether ``name`` is a registry entry's name (``demo``, ``ssd-12``...)."""
    return any(e.name == str(name) for e in list_entries())


def model_files(models) -> list[Path]:
    """The local files among ``models`` (paths and registry names) that a command reads: a
    registry name lives in the cache or the package, never among the user's files, so it is
    left out (unless it names an existing ``.onnx`` file, which is what it then means)."""
    out = []
    for m in models:
        p = Path(str(m))
        if not is_registry_name(str(m)) or (p.is_file() and p.suffix == ".onnx"):
            out.append(p)
    return out


def get_entry(name: str) -> RegistryEntry:
    for entry in list_entries():
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in list_entries())
    raise UsageError(f"unknown model {name!r}: give a path to an .onnx file or one of: {known}")
