"""The MLPerf SSD training augmentations, in numpy/PIL on (image, boxes) pairs.

Boxes are absolute pixel xyxy [N, 4] float32 in the image they come with; every transform returns
boxes consistent with the image it returns.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance

from ..core.boxes import box_iou

# The 7 crop modes: keep the image, crops whose IoU with every box is at least 0.1 ... 0.9, any crop.
CROP_MODES = (None, 0.1, 0.3, 0.5, 0.7, 0.9, -1.0)


def random_crop(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                rng: np.random.Generator, tries: int = 50):
    """SSD random crop: mode drawn from CROP_MODES; crop sides ~ U(0.3, 1) of the image with
    aspect w/h in [0.5, 2]; accepted when every box has IoU >= the mode's minimum with the crop and
    at least one box centre lies inside; boxes whose centre is inside are kept and clipped."""
    h, w = img.shape[:2]
    while True:
        mode = CROP_MODES[int(rng.integers(0, len(CROP_MODES)))]
        if mode is None or len(boxes) == 0:
            return img, boxes, labels
        for _ in range(tries):
            cw, ch = rng.uniform(0.3, 1.0) * w, rng.uniform(0.3, 1.0) * h
            if not 0.5 <= cw / ch <= 2.0:
                continue
            left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            crop = np.array([[left, top, left + cw, top + ch]], np.float32)
            if (box_iou(boxes, crop)[:, 0] < mode).any():
                continue
            cx = (boxes[:, 0] + boxes[:, 2]) / 2
            cy = (boxes[:, 1] + boxes[:, 3]) / 2
            inside = (cx > left) & (cx < left + cw) & (cy > top) & (cy < top + ch)
            if not inside.any():
                continue
            l, t, r, b = int(left), int(top), int(np.ceil(left + cw)), int(np.ceil(top + ch))
            out = boxes[inside].copy()
            out[:, [0, 2]] = np.clip(out[:, [0, 2]], l, r) - l
            out[:, [1, 3]] = np.clip(out[:, [1, 3]], t, b) - t
            return img[t:b, l:r], out, labels[inside]


def hflip(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = img.shape[1]
    out = boxes.copy()
    out[:, [0, 2]] = w - boxes[:, [2, 0]]
    return img[:, ::-1], out


def colour_jitter(img: Image.Image, rng: np.random.Generator, brightness=0.125, contrast=0.5,
                  saturation=0.5, hue=0.05) -> Image.Image:
    """torchvision-style ColorJitter (brightness, contrast, saturation factors, hue shift) in a
    random order."""
    ops = []
    for enhancer, amount in ((ImageEnhance.Brightness, brightness),
                             (ImageEnhance.Contrast, contrast), (ImageEnhance.Color, saturation)):
        factor = rng.uniform(max(0.0, 1 - amount), 1 + amount)
        ops.append(lambda im, e=enhancer, f=factor: e(im).enhance(f))
    shift = rng.uniform(-hue, hue)

    def hue_op(im: Image.Image) -> Image.Image:
        hsv = np.asarray(im.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 255))) % 256
        return Image.fromarray(hsv, "HSV").convert("RGB")

    ops.append(hue_op)
    for i in rng.permutation(len(ops)):
        img = ops[i](img)
    return img


def train_transform(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: int,
                    rng: np.random.Generator):
    """crop -> flip (p=0.5) -> resize to size x size -> colour jitter.
    Returns (RGB uint8 [size, size, 3], boxes xyxy normalised [N, 4], labels [N])."""
    img, boxes, labels = random_crop(img, boxes, labels, rng)
    if rng.uniform() < 0.5:
        img, boxes = hflip(img, boxes)
    h, w = img.shape[:2]
    pil = Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.BILINEAR)
    pil = colour_jitter(pil, rng)
    norm = boxes / np.array([w, h, w, h], np.float32)
    return np.asarray(pil), norm.astype(np.float32), labels
