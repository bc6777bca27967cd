"""Drawing detections on images with PIL (boxes and "name score" labels)."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.detections import Detections


def _colour(label: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per label (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def annotate(image_rgb: np.ndarray, det: Detections, line_width: int | None = None, *,
             track_ids: list | None = None, trails: dict | None = None) -> Image.Image:
    """A copy of ``image_rgb`` [H, W, 3] with ``det`` drawn on it (boxes in its pixel frame).
    ``track_ids``: per detection, an id (shown as ``#id``, box coloured by id) or None;
    ``trails``: id -> recent centres [(x, y)], drawn as a line."""
    img = Image.fromarray(image_rgb).convert("RGB")
    draw = ImageDraw.Draw(img)
    lw = line_width or max(1, round(min(img.size) / 300))
    font = ImageFont.load_default()
    for tid, points in (trails or {}).items():
        if len(points) > 1:
            draw.line([tuple(map(float, p)) for p in points], fill=_colour(int(tid)), width=lw)
    ids = track_ids if track_ids is not None else [None] * len(det)
    for box, score, label, name, tid in zip(det.xyxy, det.scores, det.labels, det.names, ids):
        colour = _colour(int(tid) if tid is not None else int(label))
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=colour, width=lw)
        text = f"{name} {score:.2f}" + (f" #{tid}" if tid is not None else "")
        tx1, ty1, tx2, ty2 = draw.textbbox((x1, y1), text, font=font)
        ty = y1 - (ty2 - ty1) - 2 if y1 - (ty2 - ty1) - 2 >= 0 else y1
        draw.rectangle([x1, ty, x1 + (tx2 - tx1) + 4, ty + (ty2 - ty1) + 2], fill=colour)
        draw.text((x1 + 2, ty), text, fill=(0, 0, 0), font=font)
    return img
