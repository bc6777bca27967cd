"""``singleshot train``: training and fine-tuning."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError, interrupt_code, is_terminated
from .common import (
    JsonOpt,
    OverwriteOpt,
    _alias,
    _err,
    _require_extra,
    app,
    claim_out,
    ranged,
    user_errors,
)


@app.command()
@user_errors
def train(
    data: Annotated[Optional[Path], typer.Option(help="Training set: a COCO set (images/ + annotations.json, or an instances .json), a YOLO data.yaml (its train split) or a Pascal VOC folder (ImageSets/Main/train.txt); the layout is detected and said.  [required]")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder: last.pt, best.pt, train_config.json.  [required]")] = None,
    val: Annotated[Optional[Path], typer.Option(help="Validation set for periodic COCO mAP, any layout --data takes (a data.yaml's val split, VOC's val.txt).")] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32, or bf16: torch autocast on the forward pass with fp32 weights (CPUs with AMX or AVX512-BF16; refused elsewhere).")] = "fp32",
    strict: Annotated[bool, typer.Option("--strict", help="Refuse a dataset with malformed entries (default: report each with its file and line, and train on the rest).")] = False,
    config: Annotated[str, typer.Option(help="Model config: 300 (training size) or 1200.")] = "300",
    width: Annotated[float, ranged("width", help="Channel multiplier (1.0 = the MLPerf model).")] = 1.0,
    epochs: Annotated[int, ranged("epochs", help="Passes over the training set.")] = 70,
    batch: Annotated[int, ranged("batch", help="Images per optimizer step.")] = 32,
    lr: Annotated[float, ranged("lr", help="Learning rate for --batch images (MLPerf: 2.5e-3 per 32).")] = 2.5e-3,
    warmup: Annotated[int, ranged("warmup", help="Linear warm-up steps.")] = 300,
    milestones: Annotated[str, typer.Option(help="Epochs after which lr x0.1, comma-separated.")] = "40,50",
    backbone: Annotated[Optional[Path], typer.Option(help="torchvision ImageNet ResNet-34 weights for the trunk.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from a checkpoint (MLPerf or ours); class heads are new when the classes differ.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Start a new run in an --out that holds one (its checkpoints are overwritten).")] = False,
    overwrite: OverwriteOpt = False,
    eval_every: Annotated[int, ranged("eval_every", help="Evaluate on --val every N epochs.")] = 5,
    eval_limit: Annotated[Optional[int], ranged("eval_limit", "--eval-limit", help="Evaluate on the first N validation images.")] = None,
    eval_images: Annotated[Optional[int], ranged("eval_limit", "--eval-images", hidden=True)] = None,
    loader_workers: Annotated[Optional[int], ranged("loader_workers", "--loader-workers", help="Data-loading processes.  [default: 1]")] = None,
    workers: Annotated[Optional[int], ranged("loader_workers", "--workers", hidden=True)] = None,
    seed: Annotated[int, ranged("seed", help="Seed of the initial weights, sample order and augmentations.")] = 0,
    max_steps: Annotated[Optional[int], ranged("max_steps", help="Stop after this many steps.")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd (the MLPerf recipe) or adamw (converges faster from scratch).")] = "sgd",
    weight_decay: Annotated[float, ranged("weight_decay", help="Weight decay (MLPerf: 5e-4).")] = 5e-4,
    nproc: Annotated[Optional[int], ranged("nproc", "--nproc", help="Data-parallel processes on this machine (torch.distributed: gloo on CPUs, nccl on GPUs); --batch is the global batch, split among them. Several machines: the same command under torchrun, without --nproc.  [default: 1]")] = None,
    freeze_bn: Annotated[bool, typer.Option("--freeze-bn", help="BatchNorm in eval mode: running statistics used and never updated (fine-tuning; makes N processes compute exactly what one does).")] = False,
    dist_timeout_s: Annotated[float, ranged("dist_timeout_s", "--dist-timeout-s", help="How long a process waits for a silent peer before it stops (it must cover rank 0's evaluation).")] = 1800.0,
    tensorboard: Annotated[bool, typer.Option("--tensorboard/--no-tensorboard", help="TensorBoard event files in OUT/tb/ (scalars, validation images) when the tensorboard package is installed.")] = True,
    mlflow: Annotated[Optional[str], typer.Option("--mlflow", help="Log the run to MLflow at this tracking URI (a server, or file:DIR); needs the mlflow extra.")] = None,
    val_images: Annotated[int, ranged("val_images", "--val-images", help="Validation images drawn with their predictions for TensorBoard/MLflow at each evaluation.")] = 4,
    log_every: Annotated[Optional[int], ranged("log_every", "--log-every", help="In logs (no terminal), a progress line every N steps (default: every 10% of an epoch).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train or fine-tune an SSD-ResNet34 with the MLPerf recipe."""
    _require_extra("torch", "torch", "train")
    from ...training.distributed import in_torchrun_env, launch
    from ...training.loop import TrainConfig

    eval_images = _alias(eval_limit, "--eval-limit", eval_images, "--eval-images")
    workers = _alias(loader_workers, "--loader-workers", workers, "--workers")
    if data is None or out is None:
        raise UsageError("--data and --out/-o are required")
    if sum((resume, exist_ok, overwrite)) > 1:
        raise UsageError("--resume continues the run in --out, --exist-ok starts a new one over "
                         "it, --overwrite moves it into previous-N/ first: give one")
    try:
        stones = tuple(int(m) for m in milestones.split(",") if m.strip())
    except ValueError:
        raise UsageError(f"--milestones must be comma-separated epochs, got {milestones!r}") from None
    cfg = TrainConfig(data=str(data), out=str(out), val=str(val) if val else None, config=config,
                      width=width, epochs=epochs, batch=batch, lr=lr, warmup=warmup,
                      milestones=stones, seed=seed, workers=1 if workers is None else workers,
                      backbone=str(backbone) if backbone else None,
                      init=str(init) if init else None, eval_every=eval_every,
                      eval_images=eval_images, max_steps=max_steps, optimizer=optimizer,
                      weight_decay=weight_decay, strict=strict, precision=precision,
                      freeze_bn=freeze_bn, nproc=nproc or 1, dist_timeout_s=dist_timeout_s,
                      tensorboard=tensorboard, mlflow=mlflow, val_images=val_images)
    cfg.check()  # every range before any folder is made
    if mlflow:
        _require_extra("mlflow", "mlflow", "--mlflow")
    under_torchrun = in_torchrun_env()
    if under_torchrun and nproc not in (None, 1):
        raise UsageError("under torchrun, its --nproc-per-node starts the processes: leave out "
                         "--nproc")
    from ...data.formats import detect_layout

    for name, path in (("--data", data), ("--val", val)):
        if path is not None:
            if not path.exists():
                raise UsageError(f"{name} {path}: no such folder or file")
            detect_layout(path)  # COCO, YOLO or VOC, else one line saying what it looks for
    for name, path in (("--init", init), ("--backbone", backbone)):
        if path is not None and not path.is_file():
            raise UsageError(f"{name} {path}: no such checkpoint file")
    rank = int(os.environ.get("RANK", 0)) if under_torchrun else 0
    if rank == 0:
        claim_out(out, "train", overwrite=overwrite, again="resume",
                  inputs=[data, val, init, backbone])
    t0 = time.monotonic()
    if cfg.nproc > 1:
        code, message = launch(cfg.nproc, _rank_main, (asdict(cfg), resume, exist_ok, log_every))
        if message:
            _err(message)
    else:
        code = _rank_main(asdict(cfg), resume, exist_ok, log_every, in_process=True)
    if code:
        raise typer.Exit(code)
    if rank != 0:
        return
    last, best = out / "last.pt", out / "best.pt"
    if as_json:
        print(json.dumps({"out": str(out), "last": str(last),
                          "best": str(best) if best.exists() else None,
                          "minutes": round((time.monotonic() - t0) / 60, 3)}))
        return
    print(f"done in {(time.monotonic() - t0) / 60:.1f} min: {last}"
          + (f" (best validation mAP in {best})" if best.exists() else ""))


def _rank_main(settings: dict, resume: bool, exist_ok: bool, log_every: int | None,
               in_process: bool = False) -> int:
    """One training process (the only one, one that ``--nproc`` launched, or one of torchrun's):
    joins the group its environment describes, trains, and returns its exit code after printing
    its own one-line error (every rank that stops says why, prefixed with its rank)."""
    from ...errors import SingleshotError
    from ...progress import set_default
    from ...training.distributed import world_from_env
    from ...training.loop import TrainConfig
    from ...training.loop import train as run_training
    from ..progress import ConsoleProgress
    from .common import flag

    cfg = TrainConfig(**{**settings, "milestones": tuple(settings["milestones"])})
    world = None
    if not in_process or log_every:
        set_default(ConsoleProgress(log_every=log_every))
    try:
        world = world_from_env(cfg.dist_timeout_s)
        run_training(cfg, resume=resume, exist_ok=exist_ok, world=world)
        return 0
    except SingleshotError as err:
        who = f"rank {world.rank}: " if world is not None and world.size > 1 \
            and not str(err).startswith("rank ") else ""
        _err(who + err.render(flag))
        return err.exit_code
    except KeyboardInterrupt as err:
        if world is None or world.is_main:
            word = "terminated" if is_terminated(err) else "interrupted"
            _err(f"{word}; continue with: singleshot train ... -o {cfg.out} --resume")
        return interrupt_code(err)
    finally:
        if world is not None:
            world.close()
        sys.stdout.flush()  # a launched process ends with os._exit (training.distributed)
        sys.stderr.flush()
