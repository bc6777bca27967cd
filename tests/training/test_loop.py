"""Training: loss goes down, exact resume, fine-tuning, periodic evaluation, no silent overwrite."""

import numpy as np
import pytest
import torch

from singleshot.data.synth import CLASSES, write_dataset
from singleshot.model import build_model
from singleshot.model.checkpoint import load_checkpoint
from singleshot.training.loop import TrainConfig, lr_at, train


def test_lr_schedule():
    cfg = TrainConfig(data="", out="", lr=0.1, warmup=10, milestones=(2, 3))
    assert lr_at(cfg, 0, 100) == pytest.approx(0.01)
    assert lr_at(cfg, 10, 100) == pytest.approx(0.1)
    assert lr_at(cfg, 200, 100) == pytest.approx(0.01)
    assert lr_at(cfg, 300, 100) == pytest.approx(0.001)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root / "train", 8, seed=3, workers=1)
    return root / "train"


def _cfg(tiny_set, out, **kw):
    base = dict(data=str(tiny_set), out=str(out), width=0.125, epochs=100, batch=4, lr=0.01,
                warmup=2, workers=0, seed=0, milestones=(1000,))
    base.update(kw)
    return TrainConfig(**base)


def test_training_reduces_loss(tiny_set, tmp_path):
    cfg = _cfg(tiny_set, tmp_path / "run", max_steps=30, optimizer="adamw", lr=1e-3)
    train(cfg)
    losses = [h["loss"] for h in cfg.history if "loss" in h]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_resume_continues_from_the_same_step(tiny_set, tmp_path):
    straight = _cfg(tiny_set, tmp_path / "a", max_steps=6)
    train(straight)
    first = _cfg(tiny_set, tmp_path / "b", max_steps=3)  # "interrupted" after 3 steps
    train(first)
    assert load_checkpoint(tmp_path / "b" / "last.pt").extra["step"] == 3
    again = _cfg(tiny_set, tmp_path / "b", max_steps=6)
    train(again, resume=True)
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert b.extra["step"] == 6
    assert [h["step"] for h in again.history if "loss" in h] == list(range(1, 7))
    for k in a.state_dict:
        assert torch.allclose(a.state_dict[k].float(), b.state_dict[k].float(), atol=1e-5), k


def test_fine_tune_from_mlperf_checkpoint(tiny_set, tmp_path):
    mlperf = build_model("300", width=0.125)  # 80 COCO classes
    torch.save({"model": mlperf.state_dict()}, tmp_path / "mlperf.pth")
    cfg = _cfg(tiny_set, tmp_path / "ft", max_steps=1, init=str(tmp_path / "mlperf.pth"), lr=1e-9,
               warmup=0)
    train(cfg)
    ck = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert ck.config.num_classes == 6 and ck.class_names == CLASSES
    assert ck.state_dict["conf.0.weight"].shape[0] == 4 * 7
    # everything but the class heads came from the checkpoint (lr ~ 0: unchanged by the step)
    for k, v in mlperf.state_dict().items():
        if not k.startswith("conf.") and v.dtype.is_floating_point and "running" not in k:
            assert torch.allclose(ck.state_dict[k], v, atol=1e-6), k


def test_periodic_evaluation_keeps_best(tiny_set, tmp_path):
    cfg = _cfg(tiny_set, tmp_path / "ev", epochs=1, val=str(tiny_set), eval_every=1,
               optimizer="adamw", lr=1e-3)
    train(cfg)
    vals = [h["val"] for h in cfg.history if "val" in h]
    assert len(vals) == 1 and set(vals[0]) >= {"AP", "AP50", "AR100"}
    assert (tmp_path / "ev" / "best.pt").is_file()
    assert load_checkpoint(tmp_path / "ev" / "best.pt").extra["best_map"] == vals[0]["AP"]


def test_existing_run_is_never_overwritten_silently(tiny_set, tmp_path):
    """train --out on a finished run: refused (exit 2, last.pt untouched) unless --resume
    continues it or --exist-ok starts over; both at once is a usage error too."""
    from typer.testing import CliRunner

    from singleshot.app.cli import app

    out = tmp_path / "run"
    train(_cfg(tiny_set, out, max_steps=1))
    before = (out / "last.pt").read_bytes()
    args = ["train", "--data", str(tiny_set), "-o", str(out), "--width", "0.125", "--batch", "4",
            "--max-steps", "2", "--workers", "0"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--resume" in res.stderr and "--exist-ok" in res.stderr
    assert (out / "last.pt").read_bytes() == before
    res = CliRunner().invoke(app, [*args, "--resume", "--exist-ok"])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, [*args, "--exist-ok", "--eval-images", "3"])  # old spelling
    assert res.exit_code == 0, res.output
    assert load_checkpoint(out / "last.pt").extra["step"] == 2
