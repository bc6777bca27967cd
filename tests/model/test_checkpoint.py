"""Every checkpoint format, both torch serialization formats, and a poisoned pickle."""

import sys
import types
from collections import OrderedDict

import pytest
import torch
from torch import nn

from singleshot.errors import CheckpointError
from singleshot.model import SSDConfig, build_model
from singleshot.model.checkpoint import load_checkpoint, load_weights, save_checkpoint

FORMATS = {"zip": True, "legacy": False}


def _save(obj, path, fmt):
    torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt])


def _same(sd_a, sd_b):
    assert list(sd_a) == list(sd_b)
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k


@pytest.fixture(scope="module")
def narrow():
    torch.manual_seed(0)
    return build_model("300", width=0.125)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mlperf_pth_dict(narrow, tmp_path, fmt):
    path = tmp_path / "resnet34-ssd.pth"
    _save({"model": narrow.state_dict()}, path, fmt)
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "mlperf-pth"
    _same(ckpt.state_dict, narrow.state_dict())
    cfg = ckpt.infer_config("300")
    assert cfg.width == 0.125 and cfg.num_classes == 80
    model = build_model(cfg)
    load_weights(model, ckpt)
    _same(model.state_dict(), narrow.state_dict())


def _fake_reference_modules():
    """Classes named like the MLPerf reference's, in modules that exist only while saving."""
    ssd_mod = types.ModuleType("models.ssd_r34")
    base_mod = types.ModuleType("models.base_model_r34")
    pkg = types.ModuleType("models")

    class ResNet34(nn.Module):
        def __init__(self, trunk):
            super().__init__()
            self.layer1, self.layer2 = trunk.layer1, trunk.layer2

    class Encoder:  # the reference pickles an encoder holding the anchors
        def __init__(self):
            self.dboxes = torch.rand(10, 4)
            self.scale_xy = 0.1

    class SSD_R34(nn.Module):
        def __init__(self, src):
            super().__init__()
            self.model = ResNet34(src.model)
            self.additional_blocks, self.loc, self.conf = src.additional_blocks, src.loc, src.conf
            self.encoder = Encoder()

    for cls, mod in ((ResNet34, base_mod), (SSD_R34, ssd_mod), (Encoder, ssd_mod)):
        cls.__module__ = mod.__name__
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    return {"models": pkg, "models.ssd_r34": ssd_mod, "models.base_model_r34": base_mod}, SSD_R34


@pytest.mark.parametrize("fmt", FORMATS)
def test_mlperf_whole_module_pickle(narrow, tmp_path, fmt):
    mods, SSD_R34 = _fake_reference_modules()
    path = tmp_path / "resnet34-ssd.pytorch"
    sys.modules.update(mods)
    try:
        _save(SSD_R34(narrow), path, fmt)
    finally:
        for name in mods:
            sys.modules.pop(name, None)
    assert "models.ssd_r34" not in sys.modules
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "mlperf-module"
    assert "models.ssd_r34" not in sys.modules  # the reference classes were never imported
    _same(ckpt.state_dict, narrow.state_dict())


@pytest.mark.parametrize("fmt", FORMATS)
def test_torchvision_backbone(tmp_path, fmt):
    narrow = build_model("300", width=0.125)
    trunk = narrow.model
    tv = OrderedDict()
    for key, value in trunk.state_dict().items():
        for ours, theirs in (("layer1.0.", "conv1."), ("layer1.1.", "bn1."), ("layer1.4.", "layer1."),
                             ("layer1.5.", "layer2."), ("layer2.0.", "layer3.")):
            if key.startswith(ours):
                tv[theirs + key[len(ours):]] = value.clone()
                break
    tv["layer4.0.conv1.weight"] = torch.zeros(64, 32, 3, 3)
    tv["fc.weight"] = torch.zeros(1000, 64)
    path = tmp_path / "resnet34.pth"
    _save(tv, path, fmt)
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "torchvision-resnet34" and ckpt.backbone_only
    fresh = build_model("300", width=0.125)
    missing = load_weights(fresh, ckpt)
    assert missing and all(not k.startswith("model.") for k in missing)
    _same(OrderedDict((k, v) for k, v in fresh.state_dict().items() if k.startswith("model.")),
          OrderedDict((k, v) for k, v in narrow.state_dict().items() if k.startswith("model.")))


def test_own_format_roundtrip(tmp_path):
    cfg = SSDConfig.ssd300(width=0.125, num_classes=3)
    model = build_model(cfg)
    path = tmp_path / "ours.pt"
    save_checkpoint(path, model, cfg, ("a", "b", "c"), (1, 2, 3), epoch=4)
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "singleshot" and ckpt.config == cfg
    assert ckpt.class_names == ("a", "b", "c") and ckpt.extra["epoch"] == 4
    _same(ckpt.state_dict, model.state_dict())


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


class _EvilBuiltin:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", ["os.system", "eval"])
def test_poisoned_pickle_is_refused_and_never_runs(tmp_path, fmt, payload):
    marker = tmp_path / "pwned"
    evil = _Evil(marker) if payload == "os.system" else _EvilBuiltin()
    path = tmp_path / "evil.pth"
    _save({"model": {"x": torch.zeros(1)}, "hook": evil}, path, fmt)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_poisoned_unknown_callable_is_refused(tmp_path):
    """A global from a harmless-looking module, called through REDUCE, is refused too."""
    marker = tmp_path / "pwned2"
    data = (b"\x80\x02cshutil_like.module\nrun\nq\x00X" + len(str(marker)).to_bytes(4, "little")
            + str(marker).encode() + b"q\x01\x85q\x02Rq\x03.")
    path = tmp_path / "evil2.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_corrupt_and_wrong_checkpoints(tmp_path, narrow):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    good = tmp_path / "good.pth"
    torch.save({"model": narrow.state_dict()}, good)
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[: 5000])
    with pytest.raises(CheckpointError, match="trunc.pth"):
        load_checkpoint(trunc)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(junk)
    other = tmp_path / "other.pth"
    torch.save({"weights": [1, 2, 3]}, other)
    with pytest.raises(CheckpointError, match="not an SSD-ResNet34"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pth")
    # shapes that do not fit the model
    ckpt = load_checkpoint(good)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(build_model("300", width=0.25), ckpt)


@pytest.mark.parametrize("protocol", [1, 2])  # torch itself cannot write protocol 0
def test_old_pickle_protocols(tmp_path, narrow, protocol):
    """Old protocols name Python 2 modules and rebuild objects through copyreg: still no code runs."""
    mods, SSD_R34 = _fake_reference_modules()
    sys.modules.update(mods)
    try:
        path = tmp_path / "p0.pytorch"
        torch.save(SSD_R34(narrow), path, pickle_protocol=protocol,
                   _use_new_zipfile_serialization=False)
    finally:
        for name in mods:
            sys.modules.pop(name, None)
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "mlperf-module"
    _same(ckpt.state_dict, narrow.state_dict())
