"""results.csv and results.png: one row per epoch with the loss terms and the validation
metrics, a resumed run continues the file without duplicate rows, train_config.json holds the
settings only."""

import csv
import json

import pytest

from singleshot.data.synth import write_dataset
from singleshot.training.loop import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-results")
    write_dataset(root / "train", 8, seed=3, workers=1)
    write_dataset(root / "val", 3, seed=4, workers=1)
    return root


def _cfg(root, out, **kw):
    return TrainConfig(data=str(root / "train"), val=str(root / "val"), out=str(out),
                       width=0.125, epochs=100, batch=4, lr=0.01, warmup=2, workers=0, seed=0,
                       milestones=(1000,), eval_every=2, **kw)


def _rows(out):
    with (out / "results.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_row_per_epoch_and_the_plot(tiny_set, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_set, out, max_steps=6))  # 2 steps an epoch: 3 epochs
    rows = _rows(out)
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "2"), ("1", "4"), ("2", "6")]
    for r in rows:
        assert float(r["loss"]) == pytest.approx(float(r["loss_loc"]) + float(r["loss_cls"]),
                                                 abs=2e-5)
        assert float(r["images_per_s"]) > 0 and float(r["lr"]) > 0
    # evaluated every 2 epochs and at the end: epochs 1 and 2
    assert [bool(r["val_AP"]) for r in rows] == [False, True, True]
    assert (out / "results.png").stat().st_size > 1000
    assert "history" not in json.loads((out / "train_config.json").read_text())


def test_a_resumed_run_continues_the_file(tiny_set, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_set, out, max_steps=3))  # stops mid-epoch 1: rows for epochs 0 and 1
    assert [r["step"] for r in _rows(out)] == ["2", "3"]
    train(_cfg(tiny_set, out, max_steps=6), resume=True)
    rows = _rows(out)
    # the partial epoch's row is replaced by the whole epoch's, none twice
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "2"), ("1", "4"), ("2", "6")]
    # and the resumed epoch's row is the mean over all its steps, as without the cut
    whole = tmp_path / "whole"
    train(_cfg(tiny_set, whole, max_steps=6))
    for cut, uncut in zip(rows, _rows(whole)):
        for key in ("loss", "loss_loc", "loss_cls"):
            assert float(cut[key]) == pytest.approx(float(uncut[key]), abs=1e-4), (key, cut)


def test_bf16_trains_where_the_cpu_has_it_and_is_refused_elsewhere(tiny_set, tmp_path):
    import math

    from singleshot.errors import UsageError
    from singleshot.runtime.cpu import cpu_info

    if not cpu_info()["bf16"]:  # branch on what the CPU reports
        with pytest.raises(UsageError, match="bf16"):
            train(_cfg(tiny_set, tmp_path / "b", max_steps=1, precision="bf16"))
        return
    fp32 = _cfg(tiny_set, tmp_path / "f", max_steps=2)
    bf16 = _cfg(tiny_set, tmp_path / "b", max_steps=2, precision="bf16")
    train(fp32)
    train(bf16)
    a = [h["loss"] for h in fp32.history if "loss" in h]
    b = [h["loss"] for h in bf16.history if "loss" in h]
    assert all(math.isfinite(v) for v in b)
    assert b[0] == pytest.approx(a[0], rel=0.05)  # the same first step to bf16's precision
