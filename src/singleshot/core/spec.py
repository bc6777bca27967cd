"""``ModelSpec``: everything needed to use a detector file, and its round trip through ONNX
``metadata_props`` so that every file the project writes describes itself.

A zoo file without metadata gets :func:`zoo_spec`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Literal

from .._version import __version__
from ..errors import ModelError
from .anchors import DefaultBoxConfig
from .labels import COCO_CATEGORY_IDS, COCO_NAMES

Contract = Literal["zoo", "zoo-batch", "raw"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """How to feed a detector and read its output.

    contract: ``zoo`` (image -> bboxes, labels, scores with in-graph NMS), ``zoo-batch`` (the
    same for N images, padded to the cap, with num_detections) or ``raw`` (image -> loc [N,4,A],
    conf [N,C+1,A]). input_size: (height, width). class_names / category_ids: one per
    contiguous label 1..C (label ``k`` is ``class_names[k-1]``).
    """

    contract: Contract = "zoo"
    input_size: tuple[int, int] = (1200, 1200)
    layout: str = "NCHW"
    input_dtype: str = "float32"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    default_boxes: DefaultBoxConfig = field(default_factory=DefaultBoxConfig.ssd1200)
    class_names: tuple[str, ...] = COCO_NAMES
    category_ids: tuple[int, ...] = COCO_CATEGORY_IDS
    extra: tuple[tuple[str, str], ...] = ()  # other metadata carried along (e.g. quantization)

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.category_ids):
            raise ModelError(
                f"model metadata lists {len(self.class_names)} class names but "
                f"{len(self.category_ids)} category ids"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def with_(self, **changes) -> "ModelSpec":
        return replace(self, **changes)

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries (all values strings; lists and configs as JSON)."""
        props = {
            "producer": f"singleshot {__version__}",
            "contract": self.contract,
            "input_size": json.dumps(list(self.input_size)),
            "layout": self.layout,
            "input_dtype": self.input_dtype,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "default_boxes": self.default_boxes.to_json(),
            "class_names": json.dumps(list(self.class_names)),
            "category_ids": json.dumps(list(self.category_ids)),
        }
        props.update(dict(self.extra))
        return props

    @classmethod
    def from_metadata(cls, props: dict[str, str], fallback: "ModelSpec | None" = None) -> "ModelSpec":
        """Read a spec from ``metadata_props``; keys that are absent come from ``fallback``
        (the zoo spec by default). Raises ModelError naming the key that does not parse."""
        base = fallback or zoo_spec()
        known = {"producer", "contract", "input_size", "layout", "input_dtype", "mean", "std",
                 "default_boxes", "class_names", "category_ids"}
        kw: dict = {}
        try:
            if "contract" in props:
                kw["contract"] = props["contract"]
            if "input_size" in props:
                kw["input_size"] = tuple(int(v) for v in json.loads(props["input_size"]))
            for key in ("layout", "input_dtype"):
                if key in props:
                    kw[key] = props[key]
            for key in ("mean", "std"):
                if key in props:
                    kw[key] = tuple(float(v) for v in json.loads(props[key]))
            if "default_boxes" in props:
                kw["default_boxes"] = DefaultBoxConfig.from_json(props["default_boxes"])
            if "class_names" in props:
                kw["class_names"] = tuple(str(v) for v in json.loads(props["class_names"]))
            if "category_ids" in props:
                kw["category_ids"] = tuple(int(v) for v in json.loads(props["category_ids"]))
        except (ValueError, TypeError, KeyError) as err:
            raise ModelError(f"model metadata does not parse ({err})") from None
        if "class_names" in kw and "category_ids" not in kw:
            kw["category_ids"] = tuple(range(1, len(kw["class_names"]) + 1))
        kw["extra"] = tuple(sorted((k, v) for k, v in props.items() if k not in known))
        return replace(base, **kw)


def zoo_spec(input_size: int = 1200) -> ModelSpec:
    """The spec of the published zoo files (and of the 300 training model for ``input_size=300``)."""
    boxes = DefaultBoxConfig.ssd1200() if input_size == 1200 else DefaultBoxConfig.ssd300()
    if input_size not in (300, 1200):
        raise ValueError("zoo_spec knows the 300 and 1200 models only")
    return ModelSpec(input_size=(input_size, input_size), default_boxes=boxes)
