"""Drawing detections on images with PIL (boxes and "name score" labels) that stay legible.

- Sizes scale with the image: the line width and the label text are a fixed fraction of the
  image's shorter side (never under a readable minimum), so a 12000x9000 photo's labels read as
  a 640x480 one's do; :class:`DrawStyle` overrides them.
- Labels avoid each other and the border: each detection, highest score first, takes the first
  of its candidate places (above the box, inside its top, below it, inside its bottom, then
  further down inside it) that is inside the image and clear of the labels placed before it,
  else the place it overlaps least (:func:`layout_labels`). Boxes and labels are drawn lowest
  score first, so the higher score is on top.
- Colours are stable per class (golden-ratio hue steps: neighbours in the class list differ
  most) and the text is black or white, whichever reads better on its colour.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core import detections as _detections
from ..core.detections import Detections

MIN_FONT_PX = 11  # below this the default font stops being readable
FONT_FRACTION = 0.022  # text height as a fraction of the shorter side (14 px at 640x480)


@dataclass(frozen=True)
class DrawStyle:
    """How detections are drawn. None: scaled with the image."""

    line_width: int | None = None
    font_size: int | None = None
    labels: bool = True  # the "name score" label at all
    conf: bool = True  # the score in the label

    def sizes(self, width: int, height: int) -> tuple[int, int]:
        """(line width, font size) in pixels for an image of that size."""
        short = min(width, height)
        font = self.font_size or max(MIN_FONT_PX, round(short * FONT_FRACTION))
        line = self.line_width or max(1, round(short / 300))
        return line, font


DEFAULT_STYLE = DrawStyle()


def _colour(label: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per label (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _font(size: int):
    return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (FreeType)


def label_text(det: Detections, k: int, style: DrawStyle = DEFAULT_STYLE,
               track_id=None) -> str:
    text = det.names[k] + (f" {det.scores[k]:.2f}" if style.conf else "")
    return text + (f" #{track_id}" if track_id is not None else "")


def layout_labels(boxes_xyxy: np.ndarray, sizes: list[tuple[float, float]], scores: np.ndarray,
                  width: int, height: int) -> list[tuple[float, float, float, float]]:
    """Where each label goes: boxes [N, 4] xyxy pixels, ``sizes`` [(w, h)] of the labels, scores
    [N] -> a rectangle (x1, y1, x2, y2) per detection, inside the image, placed highest score
    first on the first candidate clear of the ones placed before (else the least overlapping)."""
    placed = np.zeros((0, 4))
    out = [None] * len(boxes_xyxy)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        x1, y1, x2, y2 = (float(v) for v in boxes_xyxy[i])
        w, h = sizes[i]
        tops = [y1 - h, y1, y2, y2 - h]  # above, inside top, below, inside bottom
        tops += list(np.arange(y1 + h, y2 - 2 * h, h)[:36])  # further down inside the box
        # candidates in order: each top with the left edge, then with the right edge
        cand = np.asarray([(left, top) for top in tops for left in (x1, x2 - w)], np.float64)
        cand[:, 0] = np.clip(cand[:, 0], 0.0, max(0.0, width - w))
        cand[:, 1] = np.clip(cand[:, 1], 0.0, max(0.0, height - h))
        rects = np.concatenate([cand, cand + (w, h)], 1)  # [K, 4]
        if len(placed):
            ix = np.clip(np.minimum(rects[:, None, 2], placed[None, :, 2])
                         - np.maximum(rects[:, None, 0], placed[None, :, 0]), 0, None)
            iy = np.clip(np.minimum(rects[:, None, 3], placed[None, :, 3])
                         - np.maximum(rects[:, None, 1], placed[None, :, 1]), 0, None)
            cost = (ix * iy).sum(1)
            free = np.flatnonzero(cost == 0)
            pick = int(free[0]) if len(free) else int(np.argmin(cost))
        else:
            pick = 0
        out[i] = tuple(float(v) for v in rects[pick])
        placed = np.vstack([placed, rects[pick]])
    return out


def annotate(image_rgb: np.ndarray, det: Detections, line_width: int | None = None, *,
             track_ids: list | None = None, trails: dict | None = None,
             style: DrawStyle | None = None) -> Image.Image:
    """A copy of ``image_rgb`` [H, W, 3] with ``det`` drawn on it (boxes in its pixel frame).
    ``track_ids``: per detection, an id (shown as ``#id``, box coloured by id) or None;
    ``trails``: id -> recent centres [(x, y)], drawn as a line; ``style``: sizes and what the
    labels show (``line_width``: the older spelling of ``style.line_width``)."""
    style = style or DEFAULT_STYLE
    if line_width is not None:
        style = replace(style, line_width=line_width)
    img = Image.fromarray(image_rgb).convert("RGB")
    draw = ImageDraw.Draw(img)
    lw, _ = style.sizes(*img.size)
    for tid, points in (trails or {}).items():
        if len(points) > 1:
            draw.line([tuple(map(float, p)) for p in points], fill=_colour(int(tid)), width=lw)
    ids = track_ids if track_ids is not None else [None] * len(det)
    colours = [_colour(int(t) if t is not None else int(lab)) for t, lab in zip(ids, det.labels)]
    order = np.argsort(np.asarray(det.scores), kind="stable")  # lowest first: highest on top
    for k in order:
        x1, y1, x2, y2 = (float(v) for v in det.xyxy[k])
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=colours[k], width=lw)
    if not style.labels or not len(det):
        return img
    texts, rects, size = label_layout(det, *img.size, style, ids)
    font, pad = _font(size), max(1, size // 6)
    for k in order:
        rx1, ry1, rx2, ry2 = rects[k]
        draw.rectangle([rx1, ry1, rx2, ry2], fill=colours[k])
        draw.text((rx1 + pad, ry1 + pad + size * 0.8), texts[k], fill=_text_colour(colours[k]),
                  font=font, anchor="ls")
    return img


def label_layout(det: Detections, width: int, height: int, style: DrawStyle = DEFAULT_STYLE,
                 track_ids: list | None = None) -> tuple[list[str], list[tuple], int]:
    """The labels of ``det`` on a ``width`` x ``height`` image: (texts, rectangles (x1, y1, x2,
    y2) in pixels from :func:`layout_labels`, font size in pixels)."""
    _, size = style.sizes(width, height)
    font, pad = _font(size), max(1, size // 6)
    ids = track_ids if track_ids is not None else [None] * len(det)
    texts = [label_text(det, k, style, ids[k]) for k in range(len(det))]
    sizes = []
    for text in texts:
        left, _, right, _ = font.getbbox(text)
        sizes.append((right - left + 2 * pad, size + 2 * pad))
    return texts, layout_labels(det.xyxy, sizes, det.scores, width, height), size


def _render(det: Detections, image=None, **style) -> np.ndarray:
    """:meth:`Detections.plot`: ``image`` an array, a PIL image, a path, or None (``det.path``)."""
    from .images import as_rgb, load_image

    if image is None:
        if det.path is None:
            raise ValueError("these detections have no path: give the image to draw on")
        image = det.path
    rgb = as_rgb(image) if isinstance(image, (Image.Image, np.ndarray)) else load_image(image)
    return np.asarray(annotate(rgb, det, style=DrawStyle(**style)))


_detections.set_renderer(_render)
