"""Synthetic data, augmentations, matching and loss, training, resume and fine-tuning."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from singleshot.core.coder import decode
from singleshot.data.synth import CLASSES, make_scene, write_dataset
from singleshot.model import build_model
from singleshot.model.checkpoint import load_checkpoint
from singleshot.training.augment import hflip, random_crop, train_transform
from singleshot.training.loop import TrainConfig, lr_at, train
from singleshot.training.loss import TargetEncoder, ssd_loss

# ---- generator --------------------------------------------------------------------------------

def test_generator_is_deterministic(tmp_path):
    a_img, a_obj = make_scene(7, 3)
    b_img, b_obj = make_scene(7, 3)
    assert np.array_equal(a_img, b_img) and a_obj == b_obj
    c_img, c_obj = make_scene(8, 3)  # another seed: another scene (size, pixels and objects)
    assert c_obj != a_obj and (c_img.shape != a_img.shape or not np.array_equal(a_img, c_img))
    p1 = write_dataset(tmp_path / "a", 6, seed=5, workers=1)
    p2 = write_dataset(tmp_path / "b", 6, seed=5, workers=2)
    assert p1.read_text() == p2.read_text()
    for f in sorted((tmp_path / "a" / "images").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / "images" / f.name).read_bytes()
    data = json.loads(p1.read_text())
    assert [c["name"] for c in data["categories"]] == list(CLASSES) and len(CLASSES) >= 6
    for ann in data["annotations"]:
        im = data["images"][ann["image_id"] - 1]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= im["width"] + 0.01 and y + h <= im["height"] + 0.01
        assert 0.04 * min(im["width"], im["height"]) < max(w, h) < 0.95 * max(im["width"], im["height"])


# ---- augmentations (property tests) ------------------------------------------------------------

def _scene_with_boxes(rng, n):
    """An image with n non-overlapping boxes, each filled with its own flat colour."""
    h, w = int(rng.integers(60, 200)), int(rng.integers(60, 200))
    img = np.zeros((h, w, 3), np.uint8)
    boxes, colours = [], []
    for k in range(n):
        for _ in range(50):
            bw, bh = rng.uniform(8, w / 2), rng.uniform(8, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            b = np.array([x, y, x + bw, y + bh], np.float32)
            if all(b[2] < o[0] or o[2] < b[0] or b[3] < o[1] or o[3] < b[1] for o in boxes):
                boxes.append(b)
                colours.append((40 * (k + 1), 255 - 30 * k, 100 + 20 * k))
                img[int(np.ceil(y)):int(y + bh), int(np.ceil(x)):int(x + bw)] = colours[-1]
                break
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.arange(1, len(boxes) + 1), colours


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4))
def test_crop_and_flip_keep_boxes_on_their_pixels(seed, n):
    rng = np.random.default_rng(seed)
    img, boxes, labels, colours = _scene_with_boxes(rng, n)
    out, ob, ol = random_crop(img, boxes, labels, rng)
    if rng.uniform() < 0.5:
        out, ob = hflip(out, ob)
    h, w = out.shape[:2]
    assert len(ob) == len(ol) >= 1 and set(ol.tolist()) <= set(labels.tolist())
    assert (ob[:, 0] >= 0).all() and (ob[:, 2] <= w).all() and (ob[:, 1] >= 0).all() and (ob[:, 3] <= h).all()
    assert (ob[:, 2] >= ob[:, 0]).all() and (ob[:, 3] >= ob[:, 1]).all()
    for b, lab in zip(ob, ol):
        if b[2] - b[0] >= 3 and b[3] - b[1] >= 3:  # the box centre still shows that box's colour
            cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
            assert tuple(out[cy, cx]) == colours[lab - 1]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_train_transform_output(seed):
    rng = np.random.default_rng(seed)
    img, boxes, labels, _ = _scene_with_boxes(rng, 3)
    out, nb, nl = train_transform(img, boxes, labels, 96, rng)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert len(nb) == len(nl) >= 1
    assert (nb >= 0).all() and (nb <= 1).all() and (nb[:, 2:] >= nb[:, :2]).all()


def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    img, boxes, _, _ = _scene_with_boxes(rng, 3)
    i2, b2 = hflip(*hflip(img, boxes))
    assert np.array_equal(i2, img) and np.allclose(b2, boxes)


# ---- matching and loss ---------------------------------------------------------------------------

def test_matching_hand_made():
    anchors = np.array([[0.25, 0.25, 0.5, 0.5],    # 0: top-left quadrant
                        [0.75, 0.75, 0.5, 0.5],    # 1: bottom-right quadrant
                        [0.5, 0.5, 0.2, 0.2],      # 2: small centre box
                        [0.3, 0.25, 0.5, 0.5]], np.float32)  # 3: near anchor 0
    enc = TargetEncoder(anchors)
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5],       # exactly anchor 0; IoU with 3 is 0.67
                       [0.45, 0.45, 0.56, 0.56]])  # small: best anchor 2 (IoU 0.30 < 0.5)
    loc, lab = enc.match(gt, torch.tensor([3, 5]))
    assert lab.tolist() == [3, 0, 5, 3]  # anchor 2 forced; anchor 3 by IoU > 0.5; anchor 1 none
    assert torch.allclose(loc[:, 0], torch.zeros(4), atol=1e-6)  # perfect anchor: zero offsets
    boxes = decode(loc.T.numpy(), anchors)
    np.testing.assert_allclose(boxes[[0, 2, 3]], gt.numpy()[[0, 1, 0]], atol=1e-5)
    empty_loc, empty_lab = enc.match(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert (empty_lab == 0).all() and empty_loc.shape == (4, 4)


def test_loss_hand_made():
    a = 40
    glabel = torch.zeros(2, a, dtype=torch.int64)
    glabel[0, :2] = torch.tensor([1, 2])  # image 0: 2 positives; image 1: none
    gloc = torch.randn(2, 4, a)
    good_conf = torch.full((2, 3, a), -10.0)
    good_conf[:, 0, :] = 10.0
    good_conf[0, 0, :2] = -10.0
    good_conf[0, 1, 0] = good_conf[0, 2, 1] = 10.0
    assert ssd_loss(gloc.clone(), good_conf, gloc, glabel).item() < 1e-6  # perfect prediction
    # a wrong offset of 1 on one coordinate costs smooth-L1 0.5 / 2 positives, averaged over 2 images
    off = gloc.clone()
    off[0, 0, 0] += 1.0
    assert ssd_loss(off, good_conf, gloc, glabel).item() == pytest.approx(0.5 / 2 / 2, abs=1e-5)
    # hard negatives: exactly 3 x 2 = 6 negatives count; making a 7th-worst negative worse is free
    conf = good_conf.clone()
    conf[0, 1, 2:] = torch.linspace(9, 0, a - 2)  # negatives with decreasing confusion
    base = ssd_loss(gloc, conf, gloc, glabel).item()
    conf2 = conf.clone()
    conf2[0, 1, 10] = 0.5  # the 9th hardest negative changes, but it is not among the 6
    assert ssd_loss(gloc, conf2, gloc, glabel).item() == pytest.approx(base, rel=1e-6)
    conf3 = conf.clone()
    conf3[0, 1, 3] = 20.0  # among the 6 hardest: costs more
    assert ssd_loss(gloc, conf3, gloc, glabel).item() > base


def test_lr_schedule():
    cfg = TrainConfig(data="", out="", lr=0.1, warmup=10, milestones=(2, 3))
    assert lr_at(cfg, 0, 100) == pytest.approx(0.01)
    assert lr_at(cfg, 10, 100) == pytest.approx(0.1)
    assert lr_at(cfg, 200, 100) == pytest.approx(0.01)
    assert lr_at(cfg, 300, 100) == pytest.approx(0.001)


# ---- training ------------------------------------------------------------------------------------

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
