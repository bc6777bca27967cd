"""``singleshot train``: training and fine-tuning."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
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
    as_json: JsonOpt = False,
) -> None:
    """Train or fine-tune an SSD-ResNet34 with the MLPerf recipe."""
    _require_extra("torch", "torch", "train")
    from ...training.loop import TrainConfig
    from ...training.loop import train as run_training

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
                      weight_decay=weight_decay, strict=strict, precision=precision)
    cfg.check()  # every range before any folder is made
    from ...data.formats import detect_layout

    for name, path in (("--data", data), ("--val", val)):
        if path is not None:
            if not path.exists():
                raise UsageError(f"{name} {path}: no such folder or file")
            detect_layout(path)  # COCO, YOLO or VOC, else one line saying what it looks for
    for name, path in (("--init", init), ("--backbone", backbone)):
        if path is not None and not path.is_file():
            raise UsageError(f"{name} {path}: no such checkpoint file")
    claim_out(out, "train", overwrite=overwrite, again="resume",
              inputs=[data, val, init, backbone])
    t0 = time.monotonic()
    try:
        last = run_training(cfg, resume=resume, exist_ok=exist_ok)
    except KeyboardInterrupt:
        _err(f"interrupted; continue with: singleshot train ... -o {out} --resume")
        raise typer.Exit(130) from None
    best = out / "best.pt"
    if as_json:
        print(json.dumps({"out": str(out), "last": str(last),
                          "best": str(best) if best.exists() else None,
                          "minutes": round((time.monotonic() - t0) / 60, 3)}))
        return
    print(f"done in {(time.monotonic() - t0) / 60:.1f} min: {last}"
          + (f" (best validation mAP in {best})" if best.exists() else ""))
