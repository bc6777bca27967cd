"""A detection dataset for training (torch ``Dataset``), from a COCO, YOLO or Pascal VOC set
(:mod:`singleshot.data.formats` reads them into one COCO form)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..core.spec import IMAGENET_MEAN, IMAGENET_STD
from ..data.categories import Categories
from ..data.formats import read_dataset
from ..errors import UsageError
from ..eval.annotations import CocoAnnotations, check_annotations, load_annotations
from ..io.images import load_image
from .augment import train_transform


def resolve_dataset(folder: str | os.PathLike) -> tuple[Path, Path]:
    """A dataset folder -> (images dir, annotations file): ``annotations.json`` + ``images/``
    (what ``singleshot data synth`` writes)."""
    root = Path(folder)
    return root / "images", root / "annotations.json"


def open_dataset(path: str | os.PathLike, split: str = "train", *,
                 strict: bool = False) -> tuple[Path, CocoAnnotations, str, list[str]]:
    """The ``split`` of a COCO, YOLO or VOC set -> (images root, checked annotations, layout,
    problems). ``strict``: a malformed entry is a UsageError instead of a problem left out."""
    ds = read_dataset(path, split)
    if strict and ds.problems:
        raise UsageError(f"{len(ds.problems)} malformed entr{'y' if len(ds.problems) == 1 else 'ies'}"
                         f" in {path} ({{opt:strict}}); the first: {ds.problems[0]}")
    return ds.root, check_annotations(ds.coco, str(path)), ds.layout, ds.problems


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be an image (missing, not an image), from its header only; or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header is read here
        return None
    except FileNotFoundError:
        return "no such file"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        return f"not an image ({type(err).__name__})"


class CocoDetection(torch.utils.data.Dataset):
    """Images and boxes of a COCO-format set.

    ``__getitem__`` -> (image float32 [3, S, S] normalised, boxes float32 [N, 4] xyxy normalised,
    labels int64 [N] contiguous 1..C in sorted category-id order). Crowd boxes are skipped.
    ``train=True`` applies the SSD augmentations with a generator seeded by (seed, epoch, index),
    so a resumed run sees the same samples.
    """

    def __init__(self, images_dir, annotations, size: int, train: bool = True, seed: int = 0):
        """``annotations``: an instances file, or :class:`CocoAnnotations` already read."""
        self.images_dir = Path(images_dir)
        self.coco = annotations if isinstance(annotations, CocoAnnotations) else \
            load_annotations(annotations)
        self.size, self.train, self.seed, self.epoch = size, train, seed, 0
        cats = Categories.of(self.coco.data)
        self.cat_ids, self.class_names = list(cats.ids), cats.names
        label_of = {c: cats.index(c) + 1 for c in cats.ids}  # 0 is the background
        by_image: dict[int, list] = {im["id"]: [] for im in self.coco.images}
        for a in self.coco.data["annotations"]:
            x, y, w, h = a["bbox"]
            if not a.get("iscrowd") and w > 1 and h > 1:
                by_image[a["image_id"]].append((x, y, x + w, y + h, label_of[a["category_id"]]))
        items = [(im["file_name"], np.asarray(by_image[im["id"]], np.float32).reshape(-1, 5))
                 for im in sorted(self.coco.images, key=lambda im: im["id"])]
        # an image no decoder opens is left out here (and reported), not found by a loader
        # worker mid-epoch; a header that opens but a body that does not still fails there
        bad = {name: why for name, _ in items if (why := _unreadable(self.images_dir / name))}
        self.skipped = [f"{name}: {why}" for name, why in bad.items()]
        self.items = [it for it in items if it[0] not in bad]
        self.mean = np.asarray(IMAGENET_MEAN, np.float32)
        self.std = np.asarray(IMAGENET_STD, np.float32)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        name, ann = self.items[index]
        img = load_image(self.images_dir / name, exif=False)
        boxes, labels = ann[:, :4].copy(), ann[:, 4].astype(np.int64)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            img, boxes, labels = train_transform(img, boxes, labels, self.size, rng)
        else:
            h, w = img.shape[:2]
            from PIL import Image

            img = np.asarray(Image.fromarray(img).resize((self.size, self.size), Image.BILINEAR))
            boxes = boxes / np.array([w, h, w, h], np.float32)
        x = (img.astype(np.float32) / 255 - self.mean) / self.std
        return (torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),
                torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(labels))


def collate(batch):
    """Stack images; keep per-image box and label tensors in lists."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch], [b[2] for b in batch]
