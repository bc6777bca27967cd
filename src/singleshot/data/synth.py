"""Synthetic detection scenes: coloured shapes on textured, noisy backgrounds, written as a
COCO-format dataset. Deterministic for a seed (each image has its own generator seeded by
(seed, index), so any subset can be made again, in any order, in parallel)."""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..core.boxes import box_iou
from ..io.files import write_json_atomic
from ..progress import Progress, resolve, track

CLASSES = ("circle", "square", "triangle", "star", "cross", "hexagon")
SUPERSAMPLE = 2  # shapes are drawn at 2x and downsampled: anti-aliased edges


def _polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-size outline of a shape, [N, 2] in [-1, 1] (before scaling and rotation)."""
    if kind == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    if kind == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "star":
        t = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if kind == "cross":
        a = rng.uniform(0.28, 0.38)
        return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                         [-a, a], [-1, a], [-1, -a], [-a, -a]], float)
    if kind == "hexagon":
        t = np.arange(6) * np.pi / 3
        return np.stack([np.cos(t), np.sin(t)], 1)
    raise ValueError(kind)


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Textured background: smooth colour noise, optional stripes or checks, pixel noise."""
    base = rng.uniform(40, 215, 3)
    grid = rng.normal(0, rng.uniform(10, 45), (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3))
    smooth = np.asarray(Image.fromarray(np.clip(grid + 128, 0, 255).astype(np.uint8)).resize(
        (w, h), Image.BICUBIC), dtype=np.float32) - 128
    img = base + smooth
    yy, xx = np.mgrid[0:h, 0:w]
    kind = rng.integers(0, 3)
    if kind == 1:  # stripes
        ang, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        img += (np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)[..., None]
                * rng.uniform(5, 25))
    elif kind == 2:  # checks
        s = int(rng.integers(8, 40))
        img += (((xx // s + yy // s) % 2)[..., None] - 0.5) * rng.uniform(10, 40)
    img += rng.normal(0, rng.uniform(2, 12), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator, avoid: np.ndarray) -> tuple[int, int, int]:
    """A saturated colour that differs from the local background colour ``avoid``."""
    for _ in range(20):
        c = rng.integers(0, 256, 3)
        if np.abs(c - avoid).sum() > 150 and c.max() - c.min() > 60:
            return tuple(int(v) for v in c)
    return tuple(int(v) for v in 255 - avoid)


def make_scene(seed: int, index: int, size: tuple[int, int] | None = None,
               max_objects: int = 6) -> tuple[np.ndarray, list[dict]]:
    """One scene -> (RGB uint8 [H, W, 3], objects [{"bbox": [x, y, w, h], "category_id": 1..6}]).

    Objects span about 5% to 80% of the image side, any aspect from 0.6 to 1.6, any rotation;
    they may overlap (IoU up to 0.35), later ones in front.
    """
    rng = np.random.default_rng([seed, index])
    w, h = size or (int(rng.integers(320, 481)), int(rng.integers(280, 421)))
    img = _background(w, h, rng)
    ss = SUPERSAMPLE
    canvas = Image.fromarray(img).resize((w * ss, h * ss), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    objects: list[dict] = []
    boxes: list[list[float]] = []
    n = int(rng.integers(1, max_objects + 1))
    side = min(w, h)
    for _ in range(n * 4):  # tries
        if len(objects) == n:
            break
        kind_id = int(rng.integers(0, len(CLASSES)))
        frac = math.exp(rng.uniform(math.log(0.05), math.log(0.8)))  # log-uniform size
        aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
        sx, sy = frac * side / 2 * math.sqrt(aspect), frac * side / 2 / math.sqrt(aspect)
        theta = rng.uniform(0, 2 * np.pi) if CLASSES[kind_id] != "circle" else 0.0
        pts = _polygon(CLASSES[kind_id], rng) * [sx, sy]
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        pts = pts @ rot.T
        lo, hi = pts.min(0), pts.max(0)
        if hi[0] - lo[0] > w or hi[1] - lo[1] > h:
            continue
        cx = rng.uniform(-lo[0], w - hi[0])
        cy = rng.uniform(-lo[1], h - hi[1])
        pts = pts + [cx, cy]
        box = [float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()),
               float(pts[:, 1].max())]
        if boxes and box_iou(np.asarray([box], float), np.asarray(boxes, float)).max() > 0.35:
            continue
        local = img[int(np.clip(cy, 0, h - 1)), int(np.clip(cx, 0, w - 1))].astype(int)
        colour = _colour(rng, local)
        draw.polygon([tuple(p) for p in (pts * ss)], fill=colour,
                     outline=tuple(int(v * 0.6) for v in colour))
        boxes.append(box)
        objects.append({"bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                        "category_id": kind_id + 1})
    out = canvas.resize((w, h), Image.LANCZOS)
    if rng.uniform() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(out, dtype=np.float32) + rng.normal(0, rng.uniform(1, 6), (h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8), objects


def _write_one(args) -> dict:
    folder, seed, index = args
    img, objects = make_scene(seed, index)
    name = f"{index:06d}.jpg"
    Image.fromarray(img).save(Path(folder) / "images" / name, quality=92)
    return {"id": index + 1, "file_name": name, "width": img.shape[1], "height": img.shape[0],
            "objects": objects}


def write_dataset(out: str | os.PathLike, n_images: int, seed: int, workers: int | None = None,
                  progress: Progress | None = None) -> Path:
    """Write ``n_images`` scenes to ``out/images`` and ``out/annotations.json`` (COCO format,
    categories 1..6 named after the shapes). Returns the annotations path."""
    progress = resolve(progress)

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), seed, i) for i in range(n_images)]
    workers = workers or min(2, os.cpu_count() or 1)
    if workers > 1 and n_images > 8:
        with ProcessPoolExecutor(workers) as pool:
            records = list(track(pool.map(_write_one, jobs, chunksize=8), progress, "scenes",
                                 total=n_images, unit="img"))
    else:
        records = list(track((_write_one(j) for j in jobs), progress, "scenes", total=n_images,
                             unit="img"))
    images, anns = [], []
    for rec in records:
        images.append({k: rec[k] for k in ("id", "file_name", "width", "height")})
        for obj in rec["objects"]:
            x, y, bw, bh = obj["bbox"]
            anns.append({"id": len(anns) + 1, "image_id": rec["id"], "category_id": obj["category_id"],
                         "bbox": [round(v, 2) for v in (x, y, bw, bh)], "area": round(bw * bh, 2),
                         "iscrowd": 0})
    cats = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
    path = out / "annotations.json"
    write_json_atomic(path, {"info": {"description": f"singleshot synthetic shapes, seed {seed}"},
                             "images": images, "annotations": anns, "categories": cats}, indent=None)
    return path
