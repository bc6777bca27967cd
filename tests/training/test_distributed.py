"""Data-parallel training (`train --nproc N`, torchrun): N processes compute what one does, resume
across N, and a dead rank stops the rest with one line and an intact checkpoint. Real processes,
gloo on loopback, a tiny model."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from singleshot.data.synth import write_dataset
from singleshot.model.checkpoint import load_checkpoint
from singleshot.training.distributed import split_batch
from singleshot.training.loop import StepBatches, TrainConfig, train

# 9 images, global batch 8: each epoch ends with a batch of one image, so rank 1 runs a step on
# a weight-0 stand-in (the split's padding) and must still give the global batch's gradient
ARGS = ["--width", "0.125", "--batch", "8", "--warmup", "0", "--lr", "0.01", "--freeze-bn",
        "--loader-workers", "0", "--milestones", "1000", "--no-tensorboard"]


@pytest.fixture(scope="module")
def nine(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp") / "set"
    write_dataset(root, 9, seed=4, workers=1)
    return root


def _cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "singleshot", "train", *args],
                          capture_output=True, text=True, timeout=timeout)


def _one_process(data, out, steps, **kw):
    cfg = TrainConfig(data=str(data), out=str(out), width=0.125, batch=8, warmup=0, lr=0.01,
                      freeze_bn=True, workers=0, milestones=(1000,), max_steps=steps,
                      tensorboard=False, **kw)
    train(cfg)
    return load_checkpoint(Path(out) / "last.pt")


def _losses(ck):
    return [h["loss"] for h in ck.extra["history"] if "loss" in h]


def _assert_same_weights(a, b, atol=1e-5):
    for k, v in a.state_dict.items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, b.state_dict[k], atol=atol, rtol=1e-4), k


def test_split_batch_strides_and_pads_an_empty_share():
    assert split_batch([5, 6, 7, 8, 9], 0, 2) == ([5, 7, 9], 3)
    assert split_batch([5, 6, 7, 8, 9], 1, 2) == ([6, 8], 2)
    assert split_batch([5], 1, 2) == ([5], 0)  # a stand-in that counts for nothing
    from singleshot.training.distributed import World

    plans = [StepBatches(9, 4, 0, 3, 1, World(rank=r, size=2)).plan for r in (0, 1)]
    whole = StepBatches(9, 4, 0, 3, 1).plan  # one process, from step 1 of epoch 3
    assert [w[2] for w in whole] == [4, 1]
    for k, (mine, real, size) in enumerate(whole):
        got = plans[0][k][0][:plans[0][k][1]] + plans[1][k][0][:plans[1][k][1]]
        assert sorted(got) == sorted(mine) and plans[0][k][2] == size


def test_two_processes_compute_what_one_does(nine, tmp_path):
    one = _one_process(nine, tmp_path / "one", 4)
    run = _cli("--data", str(nine), "-o", str(tmp_path / "two"), "--max-steps", "4",
               "--nproc", "2", *ARGS)
    assert run.returncode == 0, run.stderr
    two = load_checkpoint(tmp_path / "two" / "last.pt")
    assert two.extra["step"] == 4 and len(_losses(two)) == 4
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-5)
    _assert_same_weights(one, two)
    rows = (tmp_path / "two" / "results.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 epochs, written once (rank 0 only)
    import json

    assert json.loads((tmp_path / "two" / "train_config.json").read_text())["nproc"] == 2


def test_resumed_two_process_run_equals_an_uninterrupted_one(nine, tmp_path):
    straight = _cli("--data", str(nine), "-o", str(tmp_path / "a"), "--max-steps", "4",
                    "--nproc", "2", *ARGS)
    assert straight.returncode == 0, straight.stderr
    first = _cli("--data", str(nine), "-o", str(tmp_path / "b"), "--max-steps", "1",
                 "--nproc", "2", *ARGS)
    assert first.returncode == 0, first.stderr
    again = _cli("--data", str(nine), "-o", str(tmp_path / "b"), "--max-steps", "4",
                 "--nproc", "2", "--resume", *ARGS)
    assert again.returncode == 0, again.stderr
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in "ab")
    assert b.extra["step"] == 4
    assert _losses(b) == pytest.approx(_losses(a), rel=1e-5)
    _assert_same_weights(a, b)
    # the same run continued by one process from the 2-process checkpoint at step 1
    first = _cli("--data", str(nine), "-o", str(tmp_path / "c"), "--max-steps", "1",
                 "--nproc", "2", *ARGS)
    assert first.returncode == 0, first.stderr
    cfg = TrainConfig(data=str(nine), out=str(tmp_path / "c"), width=0.125, batch=8, warmup=0,
                      lr=0.01, freeze_bn=True, workers=0, milestones=(1000,), max_steps=4,
                      tensorboard=False)
    train(cfg, resume=True)
    c = load_checkpoint(tmp_path / "c" / "last.pt")
    assert _losses(c) == pytest.approx(_losses(a), rel=1e-5)
    _assert_same_weights(a, c)


def test_torchrun_workers_are_the_same_as_nproc(nine, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "singleshot", "train", "--data",
                          str(nine), "-o", str(tmp_path / "tr"), "--max-steps", "2", *ARGS],
                         capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    one = _one_process(nine, tmp_path / "one", 2)
    tr = load_checkpoint(tmp_path / "tr" / "last.pt")
    assert _losses(tr) == pytest.approx(_losses(one), rel=1e-5)
    # --nproc inside a torchrun worker (torchrun's own parser takes --nproc as its option, so
    # the worker's environment is set here) is a usage error before the group is joined
    worker_env = {**env, "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                  "MASTER_PORT": "1"}
    bad = subprocess.run([sys.executable, "-m", "singleshot", "train", "--data", str(nine),
                          "-o", str(tmp_path / "bad"), "--nproc", "2", *ARGS],
                         capture_output=True, text=True, timeout=60, env=worker_env)
    assert bad.returncode == 2 and "leave out --nproc" in bad.stderr
    assert not (tmp_path / "bad").exists()


def _rank_pids(parent: int) -> list[int]:
    """The spawned training processes of a launcher, in start order (rank 0 first)."""
    kids = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        kids += [int(p) for p in (task / "children").read_text().split()]
    ranks = [p for p in kids
             if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return sorted(ranks)


def test_a_killed_rank_stops_the_others_with_one_line_and_an_intact_checkpoint(nine, tmp_path):
    out = tmp_path / "k"
    proc = subprocess.Popen([sys.executable, "-m", "singleshot", "train", "--data", str(nine),
                             "-o", str(out), "--max-steps", "100000", "--nproc", "2",
                             "--dist-timeout-s", "600", *ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "results.csv").is_file():  # an epoch done: a checkpoint written
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        ranks = _rank_pids(proc.pid)
        assert len(ranks) == 2
        killed_at = time.monotonic()
        os.kill(ranks[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=90)  # far below --dist-timeout-s: noticed, not waited
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - killed_at < 60
    assert proc.returncode == 1
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert any(ln.startswith("error: rank 1 was killed (SIGKILL)") for ln in lines), err
    lost = [ln for ln in lines if ln.startswith("error: rank 0: lost contact")]
    assert len(lost) == 1 and "holds step" in lost[0], err
    ck = load_checkpoint(out / "last.pt")  # whole, and at the step rank 0 said
    assert f"holds step {ck.extra['step']})" in lost[0]
    assert not list(out.glob("*.tmp*"))
