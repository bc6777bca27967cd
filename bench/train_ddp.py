"""Data-parallel training on this machine: steps/s of `train --nproc 1` and `--nproc 2` at the same
global batch, the cost of one all-reduce of the model's gradient bytes (gloo, 2 processes on
loopback), and what per-process BatchNorm statistics change against one process.

    python bench/train_ddp.py [--width 0.5] [--batch 8] [--steps 12] [--data runs/ddp-bench]

Steps/s are net of start-up: (S - 2) / (time of S steps - time of 2 steps), each run twice.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_train(data: Path, out: Path, nproc: int, steps: int, args: list[str]) -> float:
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "singleshot", "train", "--data", str(data), "-o",
                    str(out), "--max-steps", str(steps), "--nproc", str(nproc),
                    "--no-tensorboard", "--exist-ok", *args],
                   check=True, capture_output=True, text=True)
    return time.monotonic() - t


def _allreduce_worker(rank: int, numel: int, reps: int, port: int, q) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    t = torch.ones(numel)
    times = []
    for _ in range(reps + 2):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        q.put(statistics.median(times[2:]))
    dist.destroy_process_group()


def allreduce_ms(numel: int, reps: int = 20) -> float:
    import torch.multiprocessing as mp

    from singleshot.training.distributed import free_port

    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.start_processes(_allreduce_worker, args=(numel, reps, free_port(), q), nprocs=2,
                       start_method="spawn")
    return q.get() * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", default="0.5")
    ap.add_argument("--batch", default="8")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--data", default="runs/ddp-bench")
    a = ap.parse_args()
    from singleshot.data.synth import write_dataset
    from singleshot.model import build_model
    from singleshot.runtime.cpu import cpu_info

    data = Path(a.data)
    if not (data / "annotations.json").exists():
        write_dataset(data, 64, seed=21)
    print(f"CPU: {cpu_info().get('model', '?')}, {os.cpu_count()} cores")
    common = ["--width", a.width, "--batch", a.batch, "--loader-workers", "1", "--freeze-bn",
              "--warmup", "0"]
    with tempfile.TemporaryDirectory() as tmp:
        rates = {}
        for nproc in (1, 2):
            runs = []
            for rep in range(2):
                short = timed_train(data, Path(tmp) / f"s{nproc}{rep}", nproc, 2, common)
                long = timed_train(data, Path(tmp) / f"l{nproc}{rep}", nproc, a.steps, common)
                runs.append((a.steps - 2) / (long - short))
            rates[nproc] = runs
            print(f"--nproc {nproc}: {' / '.join(f'{r:.3f}' for r in runs)} steps/s "
                  f"(global batch {a.batch}, width {a.width})")
        ratio = max(rates[2]) / max(rates[1])
        print(f"2 processes vs 1: {ratio:.2f}x steps/s")
        # per-process BatchNorm statistics (no --freeze-bn): the losses against one process
        from singleshot.model.checkpoint import load_checkpoint

        plain = ["--width", a.width, "--batch", a.batch, "--loader-workers", "0", "--warmup", "0"]
        for nproc in (1, 2):
            timed_train(data, Path(tmp) / f"bn{nproc}", nproc, 8, plain)
        one, two = ([h["loss"] for h in load_checkpoint(Path(tmp) / f"bn{n}" / "last.pt")
                     .extra["history"] if "loss" in h] for n in (1, 2))
        print("BatchNorm per process, losses of steps 1-8:")
        print("  1 process : " + " ".join(f"{v:.4f}" for v in one))
        print("  2 process : " + " ".join(f"{v:.4f}" for v in two))
        print("  max relative difference: "
              f"{max(abs(x - y) / abs(x) for x, y in zip(one, two)):.4f}")
    for width in (float(a.width), 1.0):
        numel = sum(p.numel() for p in build_model("300", width=width).parameters())
        ms = allreduce_ms(numel)
        print(f"all-reduce of the gradients, width {width}: {numel:,} floats "
              f"({numel * 4 / 2**20:.1f} MiB), {ms:.1f} ms (gloo, 2 processes, loopback)")


if __name__ == "__main__":
    main()
