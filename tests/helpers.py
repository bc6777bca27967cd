"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import copy
import io
import struct
import zlib

import numpy as np
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from singleshot.eval.coco import METRIC_KEYS


def lively_model(cfg_name: str = "300", width: float = 0.125, num_classes: int = 80, seed: int = 0):
    """A narrow SSD-ResNet34 with random weights whose class scores vary like a trained model's
    (a few classes get biases so that candidates exist above 0.05)."""
    from singleshot.model.lively import lively_model as build

    return build(cfg_name, width=width, num_classes=num_classes, seed=seed)


def _png_with_header_size(width, height):
    """A valid tiny PNG whose IHDR claims ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def make_corpus(folder):
    """Good images in every odd mode, and bad files. Returns (good names, bad names)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    good = {
        "rgb.jpg": Image.fromarray(rgb),
        "gray.png": Image.fromarray(rgb[..., 0], "L"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "rgba.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"),
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "gray16.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
        "one_pixel.png": Image.new("RGB", (1, 1), (5, 6, 7)),
        "la.png": Image.merge("LA", [Image.fromarray(rgb[..., 0])] * 2),
        "bw.png": Image.fromarray(rgb[..., 0] > 128),
    }
    for name, img in good.items():
        img.save(folder / name)
    full = (folder / "rgb.jpg").read_bytes()
    bad = {
        "empty.jpg": b"",
        "truncated.jpg": full[: len(full) // 3],
        "notes.jpg": b"this is text, not a JPEG\n" * 4,
        "huge.png": _png_with_header_size(100_000, 100_000),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    (folder / "README.txt").write_text("not an image extension: skipped by folder expansion")
    return sorted(good), sorted(bad)


def synthetic_coco(seed: int = 0, n_images: int = 12, n_classes: int = 5, crowd: bool = True,
                   empty_images: int = 2):
    """Ground truth and noisy detections (COCO dicts) covering small/medium/large boxes, crowd
    regions, images without annotations and classes without detections."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 10 + 3 * k, "name": f"cls{k}", "supercategory": "x"} for k in range(n_classes)]
    images, anns, dets = [], [], []
    for i in range(n_images):
        w, h = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        images.append({"id": 100 + i, "file_name": f"img{i:03d}.png", "width": w, "height": h})
        if i >= n_images - empty_images:
            continue
        for _ in range(int(rng.integers(1, 8))):
            side = float(rng.choice([12, 50, 150]))  # small / medium / large
            bw, bh = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cat = cats[int(rng.integers(0, n_classes - 1))]["id"]  # the last class: no GT
            is_crowd = int(crowd and rng.uniform() < 0.1)
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat,
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": is_crowd})
            for _ in range(int(rng.integers(0, 3))):  # matches of varying quality
                j = rng.normal(0, side * 0.15, 4)
                dets.append({"image_id": 100 + i, "category_id": cat,
                             "bbox": [x + j[0], y + j[1], max(1.0, bw + j[2]), max(1.0, bh + j[3])],
                             "score": float(rng.uniform(0.05, 1))})
        for _ in range(int(rng.integers(0, 4))):  # false positives, some in the empty class
            dets.append({"image_id": 100 + i, "category_id": cats[int(rng.integers(0, n_classes))]["id"],
                         "bbox": [float(rng.uniform(0, w - 40)), float(rng.uniform(0, h - 40)), 30.0, 30.0],
                         "score": float(rng.uniform(0.05, 0.6))})
    return {"images": images, "annotations": anns, "categories": cats}, dets


def confident(d, thr=0.3):
    """The detections of ``d`` scoring at least ``thr``: (boxes, labels, scores)."""
    keep = d.scores >= thr
    return d.xyxy[keep], d.labels[keep], d.scores[keep]


def same_detections(a, b, *, score_tol, box_tol_px):
    """Confident detections agree: same labels in the same order, boxes and scores close."""
    ba, la, sa = confident(a)
    bb, lb, sb = confident(b)
    assert len(la) == len(lb) and (la == lb).all(), (la, lb)
    np.testing.assert_allclose(sa, sb, atol=score_tol)
    np.testing.assert_allclose(ba, bb, atol=box_tol_px)


def pycocotools_direct(gt_path, dets):
    """The official recipe, written out as a user would (an empty detection list gets an empty
    results COCO because loadRes cannot take one)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        if dets:
            dt = gt.loadRes(copy.deepcopy(dets))
        else:
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"],
                          "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per_class = {}
    for k, cid in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        per_class[gt.cats[cid]["name"]] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    return dict(zip(METRIC_KEYS, ev.stats.tolist())), per_class


def write_video(path, n_frames=30, fps=10, size=(160, 128), seed=5):
    """A clip whose content moves: a scene panned one pixel per frame (so frames differ)."""
    from singleshot.data.synth_video import write_panned

    return write_panned(path, n_frames, size, fps, seed)


def own_detections_dataset(root, model, n: int = 8, empty: int = 5, per_image: int = 40):
    """Images ``model`` is run on, with COCO ground truth made from its own confident
    detections (unclipped, in the stored pixel frame, COCO category ids; image ``empty`` gets
    none, so its detections are false positives): evaluating the model must then give AP near
    1. Writes ``root/images/``, ``root/instances.json`` and ``root/expected_results.json`` (the
    model's detections as COCO results); returns ``root``."""
    import json

    from singleshot.core.labels import COCO_CATEGORY_IDS, COCO_NAMES
    from singleshot.runtime.detector import Detector

    (root / "images").mkdir(parents=True)
    det = Detector(model, exif=False)
    rng = np.random.default_rng(0)
    images, anns, all_dets = [], [], []
    for i in range(n):
        w, h = int(rng.integers(160, 400)), int(rng.integers(160, 400))
        arr = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        img = Image.fromarray(arr).resize((w, h), Image.BILINEAR)
        if i == 3:
            img = img.convert("L")  # a grayscale image, as COCO has
        img.save(root / "images" / f"{i:012d}.png")
        images.append({"id": i + 1, "file_name": f"{i:012d}.png", "width": w, "height": h})
        all_dets.append(det(root / "images" / f"{i:012d}.png", clip=False))
    # every detection above a score that leaves at most per_image an image, so no detection
    # outside the ground truth outranks one inside it
    cut = max(float(d.scores[per_image]) if len(d) > per_image else 0.0 for d in all_dets)
    for i, d in enumerate(all_dets):
        for box, score, cat in zip(d.xyxy, d.scores, d.category_ids):
            if score > cut and i != empty:
                x1, y1, x2, y2 = (float(v) for v in box)
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(cat),
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                             "iscrowd": 0})
    cats = [{"id": c, "name": name} for c, name in zip(COCO_CATEGORY_IDS, COCO_NAMES)]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                     "categories": cats}))
    assert len(anns) > 10
    results = [r for i, d in enumerate(all_dets) for r in d.to_coco(i + 1)]
    (root / "expected_results.json").write_text(json.dumps(results))
    return root


def broken_exif() -> bytes:
    """A little-endian TIFF EXIF block: Orientation 6 and ImageWidth typed UNDEFINED (7)."""
    import struct

    entries = [(0x0100, 7, 4, b"\x01\x02\x03\x04"), (0x0112, 3, 1, struct.pack("<HH", 6, 0))]
    body = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        body += struct.pack("<HHI", tag, typ, count) + value
    body += struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + body


def cli(*args):
    """``singleshot ARGS`` in this process (typer's runner): (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from singleshot.app.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr
