"""Training with the MLPerf SSD recipe: SGD (momentum 0.9, weight decay 5e-4), linear warm-up,
x0.1 steps, smooth-L1 + hard-negative cross-entropy, periodic COCO evaluation, checkpoints that
resume from the exact step after an interruption."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.anchors import default_boxes
from ..core.limits import check, check_all
from ..errors import ImageError, UsageError
from ..io.files import write_text_atomic
from ..model import SSDConfig, build_model
from ..model.checkpoint import load_checkpoint, load_weights, save_checkpoint
from ..progress import SILENT, Progress, resolve
from .dataset import CocoDetection, collate, open_dataset
from .distributed import SINGLE, PeerLost, World, peer_errors, split_batch
from .loggers import RunLoggers
from .loss import TargetEncoder, ssd_loss
from .results import ResultsLog


@dataclass
class TrainConfig:
    """Everything a run needs; saved beside its checkpoints.

    lr is for ``batch`` images (MLPerf: 2.5e-3 per 32 with a pretrained backbone; from scratch
    wants more). milestones: epochs after which lr is multiplied by 0.1. warmup: steps of linear
    warm-up from lr/10.
    """

    data: str
    out: str
    val: str | None = None
    config: str = "300"
    width: float = 1.0
    epochs: int = 70
    batch: int = 32
    lr: float = 2.5e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: int = 300
    milestones: tuple[int, ...] = (40, 50)
    seed: int = 0
    workers: int = 1
    backbone: str | None = None
    init: str | None = None
    eval_every: int = 5
    eval_images: int | None = None
    save_every_s: float = 300.0
    max_steps: int | None = None  # stop early (tests, time-boxed runs)
    optimizer: str = "sgd"  # sgd (the recipe) | adamw (faster from scratch on small models)
    strict: bool = False  # a malformed dataset entry stops the run instead of being left out
    precision: str = "fp32"  # fp32 | bf16 (torch autocast on the forward pass; fp32 weights)
    threads: int | None = None
    freeze_bn: bool = False  # BatchNorm in eval mode: running statistics used, never updated
    nproc: int = 1  # processes of the data-parallel group (recorded; the launcher starts them)
    dist_timeout_s: float = 1800.0  # how long a collective waits for a silent peer
    tensorboard: bool = True  # OUT/tb/ event files when the tensorboard package is installed
    mlflow: str | None = None  # an MLflow tracking URI to log the run to
    val_images: int = 4  # validation images drawn with their predictions for TensorBoard/MLflow
    history: list = field(default_factory=list)

    def check(self) -> None:
        """UsageError naming the first parameter out of its range (:mod:`singleshot.core.limits`)
        or not one of its choices."""
        check_all(width=self.width, epochs=self.epochs, batch=self.batch, lr=self.lr,
                  warmup=self.warmup, seed=self.seed, eval_every=self.eval_every,
                  max_steps=self.max_steps, weight_decay=self.weight_decay, threads=self.threads)
        check("loader_workers", self.workers)
        check_all(nproc=self.nproc, dist_timeout_s=self.dist_timeout_s)
        check("eval_limit", self.eval_images)
        if str(self.config) not in ("300", "1200"):
            raise UsageError(f"{{opt:config}} must be 300 or 1200, got {self.config!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise UsageError(f"{{opt:optimizer}} must be sgd or adamw, got {self.optimizer!r}")
        if self.precision not in ("fp32", "bf16"):
            raise UsageError(f"{{opt:precision}} must be fp32 or bf16, got {self.precision!r}")
        if self.precision == "bf16":
            from ..runtime.cpu import cpu_info

            if not cpu_info()["bf16"]:
                raise UsageError("{opt:precision} bf16 needs a CPU with bf16 (AMX or "
                                 "AVX512-BF16); this one has neither: train in fp32")
        if any(m < 1 for m in self.milestones):
            raise UsageError(f"{{opt:milestones}} must be epochs of at least 1, got "
                             f"{list(self.milestones)}")


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up from lr/10 over ``warmup`` steps, then x0.1 at each milestone epoch."""
    lr = cfg.lr * (0.1 ** sum(step >= m * steps_per_epoch for m in cfg.milestones))
    if step < cfg.warmup:
        lr *= 0.1 + 0.9 * step / cfg.warmup
    return lr


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The seeded sample order of one epoch; the same in every process of a group."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    return torch.randperm(n, generator=g).tolist()


class StepBatches(torch.utils.data.Sampler):
    """This process's share of each global batch of one epoch, from step ``start`` on (a batch
    sampler: yields lists of sample indices). ``plan[k]``: (indices, how many count, the global
    batch's size) of the k-th step yielded (:func:`~.distributed.split_batch`)."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int, start: int,
                 world: World = SINGLE) -> None:
        order = epoch_order(n, seed, epoch)
        self.plan = []
        for k in range(start, math.ceil(n / batch)):
            whole = order[k * batch:(k + 1) * batch]
            mine, real = split_batch(whole, world.rank, world.size)
            self.plan.append((mine, real, len(whole)))

    def __iter__(self):
        return iter([mine for mine, _, _ in self.plan])

    def __len__(self) -> int:
        return len(self.plan)


def evaluate_model(model, dataset_dir: str, size: int, class_names, limit: int | None = None,
                   batch: int = 8, draw: int = 0):
    """COCO metrics of a torch model on the ``val`` split of a COCO, YOLO or VOC set (the decode
    + NMS graph of the zoo contract, through onnxruntime, as `singleshot detect` runs it).

    ``draw``: also return the first ``draw`` images [H, W, 3] uint8 with their predictions drawn
    (score >= 0.3): ``(metrics, images)``; otherwise the metrics alone. The model's modules keep
    the training modes they had (a frozen BatchNorm stays frozen)."""
    from ..core.detections import Detections
    from ..core.nms import NmsParams
    from ..eval.coco import coco_score
    from ..eval.runner import select_images
    from ..graph.postprocess import postprocess_model
    from ..io.draw import annotate
    from ..io.images import load_image
    from ..runtime.session import make_session

    images_dir, gt, _, _ = open_dataset(dataset_dir, "val")
    ds = CocoDetection(images_dir, gt, size, train=False)
    anchors = default_boxes(model.cfg.default_boxes())
    post = make_session(postprocess_model(anchors, model.cfg.num_classes, NmsParams()))
    cat_of = np.asarray(ds.cat_ids)
    chosen = select_images(gt, limit=limit)
    index_of = {im["file_name"]: i for i, im in enumerate(sorted(gt.images, key=lambda m: m["id"]))}
    spec = _names_spec(class_names, cat_of)
    device = next(model.parameters()).device
    results, ids, drawn = [], [], []
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for k in range(0, len(chosen), batch):
                part = chosen[k:k + batch]
                x = torch.stack([ds[index_of[im["file_name"]]][0] for im in part]).to(device)
                ploc, pconf = (t.float().cpu() for t in model(x))
                for j, im in enumerate(part):
                    b, lab, s = (o[0] for o in post.run(None, {"loc": ploc[j:j + 1].numpy(),
                                                                 "conf": pconf[j:j + 1].numpy()}))
                    d = Detections.from_normalized(b, lab, s, spec, im["width"], im["height"],
                                                   clip=False)
                    results += d.to_coco(im["id"])
                    ids.append(im["id"])
                    if len(drawn) < draw:
                        pixels = load_image(images_dir / im["file_name"], exif=False)
                        drawn.append(np.asarray(annotate(pixels, d[d.scores >= 0.3])))
    finally:
        for m, mode in modes.items():
            m.train(mode)
    metrics = coco_score(gt, results, img_ids=ids).metrics
    return (metrics, drawn) if draw else metrics


def _names_spec(class_names, cat_ids):
    from ..core.spec import ModelSpec

    return ModelSpec(class_names=tuple(class_names), category_ids=tuple(int(c) for c in cat_ids))


def set_train_mode(model: torch.nn.Module, freeze_bn: bool) -> None:
    """Training mode; with ``freeze_bn`` every BatchNorm in eval mode (its running statistics
    normalise and are never updated; its scale and shift still learn)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise UsageError(f"{{opt:optimizer}} must be sgd or adamw, got {cfg.optimizer!r}")


def _loggers(cfg: TrainConfig, out: Path, settings: dict, step: int, run_id: str | None,
             progress: Progress) -> RunLoggers:
    """TensorBoard when installed (said once when not), MLflow when asked for."""
    from .loggers import MlflowLog, TensorBoardLog, mlflow_available, tensorboard_available

    loggers: list = []
    if cfg.tensorboard:
        if tensorboard_available():
            loggers.append(TensorBoardLog(out, step))
        else:
            progress.note("no TensorBoard logs: the tensorboard package is not installed "
                          "(pip install 'singleshot[tensorboard]')")
    if cfg.mlflow:
        if not mlflow_available():
            raise UsageError("{opt:mlflow} needs the 'mlflow' extra (mlflow is not installed): "
                             "pip install 'singleshot[mlflow]'")
        loggers.append(MlflowLog(cfg.mlflow, out, settings, run_id))
    return RunLoggers(loggers)


def train(cfg: TrainConfig, *, resume: bool = False, exist_ok: bool = False,
          progress: Progress | None = None, world: World = SINGLE) -> Path:
    """Run (or resume) training; returns the path of the last checkpoint (``out/last.pt``;
    ``out/best.pt`` holds the best validation mAP).

    ``world``: this process's place in a data-parallel group (:mod:`.distributed`); each process
    runs this with its own ``world``, computes its share of every global batch of ``cfg.batch``
    images, and the gradients are averaged (torch DDP) so that every process takes the step of
    the global batch. Only rank 0 writes files, evaluates and reports progress.
    """
    progress = resolve(progress) if world.is_main else SILENT
    cfg.check()
    if cfg.threads or world.local_size > 1:
        # the machine's cores split among its processes: each one's default pool is all of them
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world.local_size))
    out = Path(cfg.out)
    held = [p.name for p in (out / "last.pt", out / "best.pt", out / "train_config.json")
            if p.exists() and world.is_main]
    if held and not resume and not exist_ok:  # never overwrite a run's checkpoints silently
        raise UsageError(f"{out} holds a training run ({', '.join(held)}); {{opt:resume}} "
                         "continues it, {opt:exist_ok} starts a new one over it, or choose another "
                         "{opt:out}")
    from ..io.files import ensure_dir

    if world.is_main:
        ensure_dir(out)
    images_dir, ann, layout, problems = open_dataset(cfg.data, "train", strict=cfg.strict)
    progress.note(f"{cfg.data}: a {layout.upper()} set, {len(ann.images)} image(s), classes "
                  f"{', '.join(c['name'] for c in sorted(ann.categories, key=lambda c: c['id']))}")
    for why in problems:
        progress.note(f"left out {why}")
    if cfg.val:
        open_dataset(cfg.val, "val", strict=cfg.strict)  # a broken --val fails now, not later
    torch.manual_seed(cfg.seed)
    probe_cfg = SSDConfig.named(cfg.config)
    dataset = CocoDetection(images_dir, ann, probe_cfg.input_size, train=True, seed=cfg.seed)
    for why in dataset.skipped:
        progress.note(f"skipped {why}")
    if not len(dataset):
        raise UsageError(f"{cfg.data}: none of its {len(dataset.skipped)} image(s) can be read")
    model_cfg = SSDConfig.named(cfg.config, width=cfg.width, num_classes=len(dataset.class_names))
    model = build_model(model_cfg)
    if cfg.backbone:
        load_weights(model, load_checkpoint(cfg.backbone))
    if cfg.init:
        init = load_checkpoint(cfg.init)
        same_classes = init.state_dict.get("conf.0.weight") is not None and \
            init.state_dict["conf.0.weight"].shape == model.conf[0].weight.shape
        load_weights(model, init, skip_heads=not same_classes)
    opt = _optimizer(cfg, model)
    steps_per_epoch = math.ceil(len(dataset) / cfg.batch)
    step, best, mlflow_run, carried = 0, -1.0, None, None
    last = out / "last.pt"
    epoch_so_far: dict = {}  # the current epoch's sums and seconds, saved with a mid-epoch step
    if resume:
        if not last.is_file():
            raise UsageError(f"{last}: nothing to resume")
        ck = load_checkpoint(last)
        load_weights(model, ck)
        opt.load_state_dict(ck.extra["optimizer"])
        step, best = int(ck.extra["step"]), float(ck.extra.get("best_map", -1.0))
        cfg.history = list(ck.extra.get("history", []))
        torch.set_rng_state(ck.extra["torch_rng"])
        mlflow_run = ck.extra.get("mlflow_run_id")
        carried = ck.extra.get("epoch_sums")  # the cut epoch's steps so far (its row's mean)
    device = world.device
    model.to(device)
    if world.backend == "nccl" and not cfg.freeze_bn:  # batch statistics of the global batch
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model  # what takes the images: the model, or DDP around it in a group
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        with peer_errors(world, " while starting"):  # DDP broadcasts rank 0's weights
            net = DistributedDataParallel(model, device_ids=[device.index] if device.index
                                          is not None else None)
    settings = {k: v for k, v in asdict(cfg).items() if k != "history"}  # the log: results.csv
    if world.is_main:
        settings["nproc"] = world.size
        write_text_atomic(out / "train_config.json", json.dumps(settings, indent=2, default=str))
        log = ResultsLog(out, resume_step=step if resume else 0)
        loggers = _loggers(cfg, out, settings, step if resume else 0, mlflow_run, progress)
    else:
        loggers = RunLoggers([])
    encoder = TargetEncoder(default_boxes(model_cfg.default_boxes()))
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    def save(path: Path) -> None:
        if world.is_main:
            save_checkpoint(path, model, model_cfg, dataset.class_names, tuple(dataset.cat_ids),
                            optimizer=opt.state_dict(), step=step, best_map=best,
                            history=cfg.history, torch_rng=torch.get_rng_state(),
                            train_config=asdict(cfg), mlflow_run_id=loggers.mlflow_run_id,
                            epoch_sums=dict(epoch_so_far) if step % steps_per_epoch else None)

    set_train_mode(model, cfg.freeze_bn)
    last_save = time.monotonic()
    autocast = cfg.precision == "bf16"
    status = "FAILED"
    try:
        while step < total_steps:
            epoch, start = divmod(step, steps_per_epoch)
            dataset.epoch = epoch
            batches = StepBatches(len(dataset), cfg.batch, cfg.seed, epoch, start, world)
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=batches, collate_fn=collate, num_workers=cfg.workers,
                persistent_workers=False)
            in_epoch = min(len(batches), total_steps - step)
            progress.start(f"epoch {epoch + 1}/{math.ceil(total_steps / steps_per_epoch)}",
                           in_epoch, unit="step")
            t0, seen = time.monotonic(), 0
            sums = {"steps": 0, "images": 0, "loss": 0.0, "loss_loc": 0.0, "loss_cls": 0.0}
            if carried and carried.get("epoch") == epoch and start:
                # a resumed epoch: its row is the mean over all its steps, before the cut too
                sums.update(carried["sums"])
                t0 -= carried.get("seconds", 0.0)
            carried = None
            epoch_so_far.update(epoch=epoch, sums=sums, seconds=0.0)
            for (images, boxes, labels), (_, real, whole) in zip(loader, batches.plan):
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, step, steps_per_epoch)
                gloc, glabel = encoder(boxes, labels)
                weight = (torch.arange(images.shape[0]) < real).float().to(device)
                # bf16: the forward pass under autocast, the loss in fp32 (its sums and softmax
                # want the range), the weights and the optimizer state in fp32
                with peer_errors(world, f" at step {step + 1}"):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        ploc, pconf = net(images.to(device))
                    per_total, per_loc, per_cls = ssd_loss(
                        ploc.float(), pconf.float(), gloc.to(device), glabel.to(device),
                        per_image=True)
                    # the mean over the global batch: this process's sum / all its images;
                    # x world.size because DDP averages the gradients over the processes
                    loss = (per_total * weight).sum() * (world.size / whole)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    terms = torch.stack([(t * weight).sum() for t in
                                         (per_total.detach(), per_loc, per_cls)]).cpu()
                    world.all_reduce_sum(terms)
                step += 1
                loss_g, loc_g, cls_g = (terms / whole).tolist()
                seen += whole
                for key, value in (("loss", loss_g), ("loss_loc", loc_g), ("loss_cls", cls_g)):
                    sums[key] += value
                sums["steps"] += 1
                sums["images"] += whole
                lr = opt.param_groups[0]["lr"]
                rate = seen / max(time.monotonic() - t0, 1e-9)
                progress.advance(1, f"step {step} loss {loss_g:.3f} {rate:.1f} img/s lr {lr:.2e}")
                cfg.history.append({"step": step, "loss": round(loss_g, 5)})
                loggers.step(step, {"loss": loss_g, "loss_loc": loc_g, "loss_cls": cls_g,
                                    "lr": lr})
                epoch_so_far["seconds"] = time.monotonic() - t0
                if time.monotonic() - last_save > cfg.save_every_s:
                    save(last)
                    last_save = time.monotonic()
                if step >= total_steps or step % steps_per_epoch == 0:
                    break
            progress.done()
            epoch_done = step % steps_per_epoch == 0 or step >= total_steps
            seconds, metrics = time.monotonic() - t0, None
            if epoch_done and cfg.val and world.is_main and (
                    (step // steps_per_epoch) % cfg.eval_every == 0 or step >= total_steps):
                n_draw = cfg.val_images if loggers.loggers else 0  # drawn only to be logged
                got = evaluate_model(model, cfg.val, model_cfg.input_size, dataset.class_names,
                                     cfg.eval_images, draw=n_draw)
                metrics, drawn = got if n_draw else (got, [])
                if drawn:
                    loggers.images(step, drawn)
                cfg.history.append({"step": step, "val": metrics})
                progress.note(f"step {step} (epoch {step / steps_per_epoch:.1f}): val AP "
                              f"{metrics['AP']:.4f} AP50 {metrics['AP50']:.4f}")
                if metrics["AP"] > best:
                    best = metrics["AP"]
                    save(out / "best.pt")
            if epoch_done:
                save(last)
                last_save = time.monotonic()
                if world.is_main:
                    row = log.add(epoch, step, opt.param_groups[0]["lr"], sums, seconds, metrics)
                    loggers.epoch(step, row)
        status = "FINISHED"
    except ImageError as err:  # from a loader worker: its message carries the worker's traceback
        save(last)
        raise ImageError(str(err).strip().splitlines()[-1].removeprefix(
            "singleshot.errors.ImageError: ") + " (training stopped"
            + (f"; {last} holds step {step})" if world.is_main else ")")) from None
    except PeerLost as err:  # the weights are those of `step`: the failed step changed nothing
        save(last)
        raise PeerLost(f"{err} (training stopped"
                       + (f"; {last} holds step {step})" if world.is_main else ")")) from None
    except KeyboardInterrupt:
        status = "KILLED"
        save(last)  # the run resumes from here
        progress.note(f"interrupted at step {step}; {last} holds it")
        raise
    finally:
        progress.done()
        loggers.close(status)
    save(last)
    # every process leaves together, once rank 0 has written: a peer that left early would
    # look dead to a rank still saving
    world.barrier()
    return last
