"""Training with the MLPerf SSD recipe: SGD (momentum 0.9, weight decay 5e-4), linear warm-up,
x0.1 steps, smooth-L1 + hard-negative cross-entropy, periodic COCO evaluation, checkpoints that
resume from the exact step after an interruption."""

from __future__ import annotations

import json
import math
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
from ..progress import Progress, resolve
from .dataset import CocoDetection, collate, open_dataset
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
    history: list = field(default_factory=list)

    def check(self) -> None:
        """UsageError naming the first parameter out of its range (:mod:`singleshot.core.limits`)
        or not one of its choices."""
        check_all(width=self.width, epochs=self.epochs, batch=self.batch, lr=self.lr,
                  warmup=self.warmup, seed=self.seed, eval_every=self.eval_every,
                  max_steps=self.max_steps, weight_decay=self.weight_decay, threads=self.threads)
        check("loader_workers", self.workers)
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


class _ResumableSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch that can start part-way (resume mid-epoch)."""

    def __init__(self, n: int, seed: int, epoch: int, start: int) -> None:
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        self.order = torch.randperm(n, generator=g).tolist()[start:]

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def evaluate_model(model, dataset_dir: str, size: int, class_names, limit: int | None = None,
                   batch: int = 8) -> dict:
    """COCO metrics of a torch model on the ``val`` split of a COCO, YOLO or VOC set (the decode
    + NMS graph of the zoo contract, through onnxruntime, as `singleshot detect` runs it)."""
    from ..core.detections import Detections
    from ..core.nms import NmsParams
    from ..eval.coco import coco_score
    from ..eval.runner import select_images
    from ..graph.postprocess import postprocess_model
    from ..runtime.session import make_session

    images_dir, gt, _, _ = open_dataset(dataset_dir, "val")
    ds = CocoDetection(images_dir, gt, size, train=False)
    anchors = default_boxes(model.cfg.default_boxes())
    post = make_session(postprocess_model(anchors, model.cfg.num_classes, NmsParams()))
    cat_of = np.asarray(ds.cat_ids)
    chosen = select_images(gt, limit=limit)
    index_of = {im["file_name"]: i for i, im in enumerate(sorted(gt.images, key=lambda m: m["id"]))}
    spec = _names_spec(class_names, cat_of)
    results, ids = [], []
    model.eval()
    with torch.no_grad():
        for k in range(0, len(chosen), batch):
            part = chosen[k:k + batch]
            x = torch.stack([ds[index_of[im["file_name"]]][0] for im in part])
            ploc, pconf = model(x)
            for j, im in enumerate(part):
                b, lab, s = (o[0] for o in post.run(None, {"loc": ploc[j:j + 1].numpy(),
                                                             "conf": pconf[j:j + 1].numpy()}))
                d = Detections.from_normalized(b, lab, s, spec, im["width"], im["height"],
                                               clip=False)
                results += d.to_coco(im["id"])
                ids.append(im["id"])
    model.train()
    return coco_score(gt, results, img_ids=ids).metrics


def _names_spec(class_names, cat_ids):
    from ..core.spec import ModelSpec

    return ModelSpec(class_names=tuple(class_names), category_ids=tuple(int(c) for c in cat_ids))


def train(cfg: TrainConfig, *, resume: bool = False, exist_ok: bool = False,
          progress: Progress | None = None) -> Path:
    """Run (or resume) training; returns the path of the last checkpoint (``out/last.pt``;
    ``out/best.pt`` holds the best validation mAP)."""
    progress = resolve(progress)
    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    held = [p.name for p in (out / "last.pt", out / "best.pt", out / "train_config.json")
            if p.exists()]
    if held and not resume and not exist_ok:  # never overwrite a run's checkpoints silently
        raise UsageError(f"{out} holds a training run ({', '.join(held)}); {{opt:resume}} "
                         "continues it, {opt:exist_ok} starts a new one over it, or choose another "
                         "{opt:out}")
    from ..io.files import ensure_dir

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
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise UsageError(f"{{opt:optimizer}} must be sgd or adamw, got {cfg.optimizer!r}")
    steps_per_epoch = math.ceil(len(dataset) / cfg.batch)
    step, best = 0, -1.0
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise UsageError(f"{last}: nothing to resume")
        ck = load_checkpoint(last)
        load_weights(model, ck)
        opt.load_state_dict(ck.extra["optimizer"])
        step, best = int(ck.extra["step"]), float(ck.extra.get("best_map", -1.0))
        cfg.history = list(ck.extra.get("history", []))
        torch.set_rng_state(ck.extra["torch_rng"])
    settings = {k: v for k, v in asdict(cfg).items() if k != "history"}  # the log: results.csv
    write_text_atomic(out / "train_config.json", json.dumps(settings, indent=2, default=str))
    log = ResultsLog(out, resume_step=step if resume else 0)
    encoder = TargetEncoder(default_boxes(model_cfg.default_boxes()))
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    def save(path: Path) -> None:
        save_checkpoint(path, model, model_cfg, dataset.class_names, tuple(dataset.cat_ids),
                        optimizer=opt.state_dict(), step=step, best_map=best,
                        history=cfg.history, torch_rng=torch.get_rng_state(),
                        train_config=asdict(cfg))

    model.train()
    last_save = time.monotonic()
    progress.start("train", total_steps, unit="step")
    if step:
        progress.advance(step)
    try:
        while step < total_steps:
            epoch, start = divmod(step, steps_per_epoch)
            dataset.epoch = epoch
            sampler = _ResumableSampler(len(dataset), cfg.seed, epoch, start * cfg.batch)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=cfg.batch, sampler=sampler, collate_fn=collate,
                num_workers=cfg.workers, persistent_workers=False, drop_last=False)
            t0, seen = time.monotonic(), 0
            sums = {"steps": 0, "images": 0, "loss": 0.0, "loss_loc": 0.0, "loss_cls": 0.0}
            for images, boxes, labels in loader:
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, step, steps_per_epoch)
                gloc, glabel = encoder(boxes, labels)
                # bf16: the forward pass under autocast, the loss in fp32 (its sums and softmax
                # want the range), the weights and the optimizer state in fp32
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                    ploc, pconf = model(images)
                loss, loss_loc, loss_cls = ssd_loss(ploc.float(), pconf.float(), gloc, glabel,
                                                    parts=True)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                seen += images.shape[0]
                for key, value in (("loss", loss), ("loss_loc", loss_loc),
                                   ("loss_cls", loss_cls)):
                    sums[key] += value.item()
                sums["steps"] += 1
                sums["images"] += images.shape[0]
                progress.advance(1, f"epoch {epoch} loss {loss.item():.3f} "
                                    f"{seen / (time.monotonic() - t0):.1f} img/s "
                                    f"lr {opt.param_groups[0]['lr']:.2e}")
                cfg.history.append({"step": step, "loss": round(loss.item(), 5)})
                if time.monotonic() - last_save > cfg.save_every_s:
                    save(last)
                    last_save = time.monotonic()
                if step >= total_steps or step % steps_per_epoch == 0:
                    break
            epoch_done = step % steps_per_epoch == 0 or step >= total_steps
            seconds, metrics = time.monotonic() - t0, None
            if epoch_done and cfg.val and ((step // steps_per_epoch) % cfg.eval_every == 0
                                           or step >= total_steps):
                metrics = evaluate_model(model, cfg.val, model_cfg.input_size,
                                         dataset.class_names, cfg.eval_images)
                cfg.history.append({"step": step, "val": metrics})
                progress.note(f"step {step} (epoch {step / steps_per_epoch:.1f}): val AP "
                              f"{metrics['AP']:.4f} AP50 {metrics['AP50']:.4f}")
                if metrics["AP"] > best:
                    best = metrics["AP"]
                    save(out / "best.pt")
            if epoch_done:
                save(last)
                last_save = time.monotonic()
                log.add(epoch, step, opt.param_groups[0]["lr"], sums, seconds, metrics)
    except ImageError as err:  # from a loader worker: its message carries the worker's traceback
        save(last)
        raise ImageError(str(err).strip().splitlines()[-1].removeprefix(
            "singleshot.errors.ImageError: ") + f" (training stopped; {last} holds step {step})"
        ) from None
    except KeyboardInterrupt:
        save(last)  # the run resumes from here
        progress.note(f"interrupted at step {step}; {last} holds it")
        raise
    finally:
        progress.done()
    save(last)
    return last
