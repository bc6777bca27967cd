"""Reading and writing checkpoints.

Reads, through the restricted unpickler (never running code from the file), in both torch
serialization formats (zip and legacy):
- the MLPerf ``.pth``: ``{"model": state_dict}``;
- the MLPerf ``.pytorch``: a whole pickled ``SSD_R34`` module (its classes are not imported);
- a torchvision-layout ImageNet ResNet-34 state_dict (backbone only);
- a bare state_dict in the MLPerf key layout;
- our own format (:func:`save_checkpoint`): weights, config and class names together.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io.files import atomic_path
from . import safe_pickle
from .config import SSDConfig

FORMAT_TAG = "singleshot-checkpoint"


@dataclass
class Checkpoint:
    """Weights in the MLPerf key layout plus what the file said about the model.

    kind: ``mlperf-pth``, ``mlperf-module``, ``torchvision-resnet34``, ``state-dict`` or
    ``singleshot``. config / class_names / category_ids are None when the file does not say.
    """

    state_dict: "OrderedDict[str, torch.Tensor]"
    kind: str
    config: SSDConfig | None = None
    class_names: tuple[str, ...] | None = None
    category_ids: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def backbone_only(self) -> bool:
        return self.kind == "torchvision-resnet34"

    def infer_config(self, input_size: int | str | None = None) -> SSDConfig:
        """The config of these weights: the file's own, else the named config ``input_size``
        (default 1200) with width and class count read off the tensor shapes."""
        if self.config is not None and input_size is None:
            return self.config
        sd = self.state_dict
        trunk = sd.get("model.layer1.0.weight")
        if not hasattr(trunk, "shape") or len(trunk.shape) < 1:
            keys = ", ".join(list(sd)[:3]) or "none"
            raise CheckpointError(f"not an SSD-ResNet34 state_dict: no model.layer1.0.weight "
                                  f"(its keys start {keys}{', ...' if len(sd) > 3 else ''})")
        width = trunk.shape[0] / 64
        kw: dict[str, Any] = {"width": width}
        if "conf.0.weight" in sd:
            kw["num_classes"] = sd["conf.0.weight"].shape[0] // 4 - 1
        if self.config is not None:
            base = self.config.to_dict()
            base.update(kw)
            base["input_size"] = int(input_size)
            return SSDConfig.from_dict(base)
        return SSDConfig.named(str(input_size or "1200"), **kw)


def _module_state_dict(stub: safe_pickle.Stub, prefix: str = "") -> "OrderedDict[str, torch.Tensor]":
    """Walk a pickled nn.Module's recorded ``_parameters``/``_buffers``/``_modules``."""
    state = stub.state
    if not isinstance(state, dict) or "_modules" not in state:
        raise CheckpointError(f"pickled object {stub!r} is not a torch module")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is not None and not (group == "_buffers" and name in non_persistent):
                out[prefix + name] = value.detach() if isinstance(value, torch.Tensor) else value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_module_state_dict(child, f"{prefix}{name}."))
    return out


def _from_torchvision(sd: dict) -> "OrderedDict[str, torch.Tensor]":
    """torchvision ResNet-34 keys -> the MLPerf backbone keys (layer4 and fc dropped)."""
    mapping = (("conv1.", "model.layer1.0."), ("bn1.", "model.layer1.1."),
               ("layer1.", "model.layer1.4."), ("layer2.", "model.layer1.5."),
               ("layer3.", "model.layer2.0."))
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in sd.items():
        for old, new in mapping:
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
    return out


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_module_prefix(sd: dict) -> "OrderedDict[str, torch.Tensor]":
    """Remove a DataParallel ``module.`` prefix, if every key has it."""
    if sd and all(k.startswith("module.") for k in sd):
        return OrderedDict((k[len("module."):], v) for k, v in sd.items())
    return OrderedDict(sd)


def _interpret(obj: Any, name: str) -> Checkpoint:
    if isinstance(obj, safe_pickle.Stub):
        return Checkpoint(_strip_module_prefix(_module_state_dict(obj)), "mlperf-module",
                          extra={"class": type(obj).__qualname__})
    if isinstance(obj, dict) and obj.get("format") == FORMAT_TAG:
        try:
            return Checkpoint(
                OrderedDict(obj["model"]), "singleshot", SSDConfig.from_dict(obj["config"]),
                tuple(obj["class_names"]) if obj.get("class_names") else None,
                tuple(obj["category_ids"]) if obj.get("category_ids") else None,
                extra={k: v for k, v in obj.items() if k not in ("model", "config")},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{name}: damaged singleshot checkpoint ({err})") from None
    if isinstance(obj, dict) and "model" in obj:
        inner = obj["model"]
        if isinstance(inner, safe_pickle.Stub):
            return _interpret(inner, name)
        if _is_tensor_dict(inner):
            return Checkpoint(_strip_module_prefix(inner), "mlperf-pth")
    if isinstance(obj, dict) and "state_dict" in obj and _is_tensor_dict(obj["state_dict"]):
        obj = obj["state_dict"]
    if _is_tensor_dict(obj):
        sd = _strip_module_prefix(obj)
        if "conv1.weight" in sd and "layer3.0.conv1.weight" in sd:
            return Checkpoint(_from_torchvision(sd), "torchvision-resnet34")
        if "model.layer1.0.weight" in sd:
            return Checkpoint(sd, "state-dict")
    raise CheckpointError(
        f"{name}: not an SSD-ResNet34 checkpoint (expected an MLPerf .pth/.pytorch, a torchvision "
        "ResNet-34 state_dict or a singleshot checkpoint)"
    )


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint file, safely. Raises CheckpointError with a one-line reason."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise CheckpointError(f"{name}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=False,
                             pickle_module=safe_pickle)
    except safe_pickle.RefusedPickle as err:
        raise CheckpointError(f"{name}: {err}") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError,
            OSError, AttributeError, TypeError, KeyError, IndexError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint ({msg[:200]})") from None
    return _interpret(obj, name)


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, config: SSDConfig,
                    class_names: tuple[str, ...] | None = None,
                    category_ids: tuple[int, ...] | None = None, **extra: Any) -> None:
    """Write our checkpoint format atomically (a temp file renamed over ``path``)."""
    path = Path(path)
    payload = {"format": FORMAT_TAG, "version": 1, "config": config.to_dict(),
               "model": model.state_dict(),
               "class_names": list(class_names) if class_names else None,
               "category_ids": list(category_ids) if category_ids else None, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_weights(model: torch.nn.Module, ckpt: Checkpoint, *, skip_heads: bool = False) -> list[str]:
    """Copy ``ckpt`` into ``model``. Returns the model keys left at their initial values.

    A backbone-only checkpoint fills the trunk; ``skip_heads`` leaves ``conf.*`` as initialised
    (fine-tuning to other classes). Any other missing key or shape mismatch is a CheckpointError
    listing the first offenders.
    """
    target = model.state_dict()
    bad, loaded = [], {}
    for key, value in ckpt.state_dict.items():
        if key not in target:
            if not ckpt.backbone_only:
                bad.append(f"unexpected key {key}")
            continue
        if skip_heads and key.startswith("conf."):
            continue
        if tuple(value.shape) != tuple(target[key].shape):
            bad.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}")
            continue
        loaded[key] = value
    missing = [k for k in target if k not in loaded]
    allowed_missing = [k for k in missing if ckpt.backbone_only and not k.startswith("model.")
                       or skip_heads and k.startswith("conf.")]
    bad += [f"missing key {k}" for k in missing if k not in allowed_missing]
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(bad[:3]) + more)
    model.load_state_dict(loaded, strict=False)
    return missing


def detector_from_checkpoint(path: str | os.PathLike, input_size: str | None = None):
    """The detector a checkpoint holds, weights loaded, in eval mode, with its Checkpoint:
    ``(model, ckpt)``. ``input_size``: "1200" or "300" when the file does not say.
    CheckpointError for a file with only an ImageNet backbone."""
    from .ssd import build_model

    ckpt = load_checkpoint(path)
    if ckpt.backbone_only:
        raise CheckpointError(f"{path}: holds only an ImageNet backbone, not a detector; train "
                              "a detector first")
    try:
        model = build_model(ckpt.infer_config(input_size))
        load_weights(model, ckpt)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return model.eval(), ckpt
