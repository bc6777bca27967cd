"""The self-describing metadata of a torch SSD-ResNet34: its :class:`ModelSpec` (input size, default
boxes, class names and category ids, the model config), as exported graphs and the torch backend
carry it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.spec import ModelSpec
from ..errors import ModelError

if TYPE_CHECKING:
    import torch


def spec_for(model: torch.nn.Module, contract: str, class_names=None, category_ids=None,
             extra: dict | None = None) -> ModelSpec:
    """The metadata spec of an SSDResNet34 (class names default to COCO's for 80 classes)."""
    cfg = model.cfg
    spec = ModelSpec(contract=contract, input_size=(cfg.input_size, cfg.input_size),
                     default_boxes=cfg.default_boxes())
    if class_names is None and cfg.num_classes != 80:
        class_names = tuple(f"class{i}" for i in range(1, cfg.num_classes + 1))
    if class_names is not None:
        class_names = tuple(class_names)
        if len(class_names) != cfg.num_classes:
            raise ModelError(f"{len(class_names)} class names for a model with "
                             f"{cfg.num_classes} classes")
        ids = tuple(category_ids) if category_ids else tuple(range(1, len(class_names) + 1))
        spec = spec.with_(class_names=class_names, category_ids=ids)
    meta = {"model_config": cfg.to_json(), **(extra or {})}
    return spec.with_(extra=tuple(sorted(meta.items())))
