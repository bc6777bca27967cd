"""``Detections``: one image's results in pixels of the original image, with category ids and names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .boxes import box_convert, clip_boxes
from .spec import ModelSpec


# Detections.plot draws with singleshot.io.draw, a layer above this one: it registers itself
# here when imported (the package's __init__ imports it), so core never imports io
_renderer = None


def set_renderer(render) -> None:
    """``render(detections, image, **style) -> RGB uint8 array``: what :meth:`Detections.plot`
    calls (registered by :mod:`singleshot.io.draw`)."""
    global _renderer
    _renderer = render


@dataclass
class Detections:
    """Detections of one image.

    Attributes:
        xyxy: float32 [N, 4] absolute pixel (x1, y1, x2, y2) in the original image.
        scores: float32 [N], descending.
        labels: int64 [N] contiguous model labels 1..C.
        category_ids: int64 [N] dataset category ids (COCO ids for the zoo models).
        names: list[str] of N category names.
        width, height: original image size in pixels.
        timings: milliseconds per stage (decode, preprocess, inference, postprocess).
        error: None, or why this image failed (``detector([...])`` goes on past a bad image).
    """

    xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    category_ids: np.ndarray
    names: list[str]
    width: int
    height: int
    path: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why this image has no result (a list call that went on)

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.xyxy.shape != (n, 4) or len(self.labels) != n or len(self.category_ids) != n \
                or len(self.names) != n:
            raise ValueError(f"inconsistent detection arrays: boxes {self.xyxy.shape}, {n} scores")

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> "Detections":
        """Select by a boolean mask, an index array or a slice."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Detections(self.xyxy[idx], self.scores[idx], self.labels[idx],
                          self.category_ids[idx], [self.names[i] for i in idx], self.width,
                          self.height, self.path, dict(self.timings))

    @classmethod
    def from_normalized(cls, boxes_xyxy_norm: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                        spec: ModelSpec, width: int, height: int, *, clip: bool = True,
                        path: str | None = None) -> "Detections":
        """Model outputs (boxes [N, 4] xyxy normalised, labels 1..C, scores) -> pixels of a
        ``width`` x ``height`` image (x scaled by width, y by height: the resize does not keep
        the aspect ratio). Labels outside 1..C raise ValueError."""
        boxes = np.asarray(boxes_xyxy_norm, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        finite = np.isfinite(boxes).all(axis=1)  # an untrained model can decode exp() to inf
        if not finite.all():
            boxes, labels, scores = boxes[finite], labels[finite], scores[finite]
        if labels.size and (labels.min() < 1 or labels.max() > spec.num_classes):
            raise ValueError(f"model produced labels outside 1..{spec.num_classes}")
        scale = np.asarray([width, height, width, height], dtype=np.float32)
        abs_boxes = boxes * scale
        if clip:
            abs_boxes = clip_boxes(abs_boxes, width, height)
        cats = np.asarray(spec.category_ids, dtype=np.int64)[labels - 1] if labels.size else \
            np.empty(0, dtype=np.int64)
        names = [spec.class_names[i - 1] for i in labels]
        return cls(abs_boxes, scores, labels, cats, names, int(width), int(height), path)

    def to_dicts(self, decimals: int = 2) -> list[dict]:
        """The CLI's JSON: ``[{"box": [x1, y1, x2, y2], "score", "category_id", "category"}]``."""
        return [{"box": [round(float(v), decimals) for v in box], "score": round(float(s), 5),
                 "category_id": int(c), "category": n}
                for box, s, c, n in zip(self.xyxy, self.scores, self.category_ids, self.names)]

    def to_dict(self, decimals: int = 2) -> dict:
        """One image: ``{"path", "width", "height", "detections": [...] (:meth:`to_dicts`: the
        entries of ``detect --json``), "timings"}``, plus ``"error"`` for an image that failed."""
        out = {"path": self.path, "width": self.width, "height": self.height,
               "detections": self.to_dicts(decimals),
               "timings": {k: round(float(v), 3) for k, v in self.timings.items()}}
        if self.error is not None:
            out["error"] = self.error
        return out

    def to_json(self, decimals: int = 2, **dumps) -> str:
        """:meth:`to_dict` as a JSON text (``dumps``: json.dumps options, e.g. ``indent=2``)."""
        import json

        return json.dumps(self.to_dict(decimals), **dumps)

    def to_pandas(self):
        """A pandas DataFrame, one row per detection: x1, y1, x2, y2 (pixels), score, label
        (1..C), category_id, category. pandas is imported only here."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Detections.to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame({
            "x1": self.xyxy[:, 0], "y1": self.xyxy[:, 1], "x2": self.xyxy[:, 2],
            "y2": self.xyxy[:, 3], "score": self.scores, "label": self.labels,
            "category_id": self.category_ids, "category": pd.Series(self.names, dtype=object)})

    def to_supervision(self, class_id: str = "index"):
        """A ``supervision.Detections``: ``xyxy`` (pixels), ``confidence``, ``class_id`` - by
        default supervision's own convention, the 0-based index into the model's class names
        (what its dataset loaders and annotators expect), or the COCO category id with
        ``class_id="category_id"`` - and ``data["class_name"]``, ``data["category_id"]``,
        ``data["label"]`` (the contiguous 1..C label). supervision is imported only here."""
        import supervision as sv

        ids = self._class_id_kind(class_id)
        return sv.Detections(xyxy=self.xyxy.astype(np.float32).reshape(-1, 4),
                             confidence=self.scores.astype(np.float32),
                             class_id=(self.labels - 1 if ids == "index" else
                                       self.category_ids).astype(int),
                             data={"class_name": np.asarray(self.names, dtype=object).reshape(-1),
                                   "category_id": self.category_ids.astype(np.int64),
                                   "label": self.labels.astype(np.int64)})

    @staticmethod
    def _class_id_kind(kind: str) -> str:
        if kind not in ("index", "category_id"):
            raise ValueError(f"class_id must be 'index' or 'category_id', got {kind!r}")
        return kind

    @classmethod
    def from_supervision(cls, detections, spec: ModelSpec, width: int, height: int,
                         path: str | None = None, *, class_id: str = "index",
                         classes: list[str] | None = None) -> "Detections":
        """A ``supervision.Detections`` -> Detections, sorted by descending score (a missing
        confidence counts as 1). Its ``class_id`` is, by default, supervision's 0-based index:
        into ``classes`` when given (a supervision dataset's ``classes``; mapped to ``spec``'s
        classes by name), else into ``spec``'s class names; ``class_id="category_id"``: COCO
        category ids of ``spec``. Identifiers are looked up, never shifted: ValueError for a
        class the model does not have."""
        xyxy = np.asarray(detections.xyxy, np.float32).reshape(-1, 4)
        n = len(xyxy)
        scores = np.ones(n, np.float32) if detections.confidence is None else \
            np.asarray(detections.confidence, np.float32)
        if detections.class_id is None:
            raise ValueError("supervision Detections without class_id cannot name their classes")
        given = np.asarray(detections.class_id, np.int64).reshape(-1)
        names = list(spec.class_names)
        if cls._class_id_kind(class_id) == "category_id":
            index = {int(c): k for k, c in enumerate(spec.category_ids)}
            unknown = sorted({int(c) for c in given} - set(index))
            if unknown:
                raise ValueError(f"class ids {unknown} are not category ids of this model "
                                 f"({list(spec.category_ids)[:5]}...)")
            positions = [index[int(c)] for c in given]
        else:
            table = list(classes) if classes is not None else names
            bad = sorted({int(c) for c in given if not 0 <= int(c) < len(table)})
            if bad:
                raise ValueError(f"class ids {bad} are not indices of the {len(table)} classes")
            by_name = {nm: k for k, nm in enumerate(names)}
            missing = sorted({table[int(c)] for c in given} - set(by_name))
            if missing:
                raise ValueError(f"classes {missing} are not classes of this model")
            positions = [by_name[table[int(c)]] for c in given]
        labels = np.asarray(positions, np.int64).reshape(-1) + 1
        cats = np.asarray(spec.category_ids, np.int64)[labels - 1] if n else np.empty(0, np.int64)
        order = np.argsort(-scores, kind="stable")
        return cls(xyxy[order], scores[order], labels[order], cats[order],
                   [names[labels[i] - 1] for i in order], int(width), int(height), path)

    def plot(self, image=None, *, line_width: int | None = None, font_size: int | None = None,
             labels: bool = True, conf: bool = True) -> np.ndarray:
        """These detections drawn on ``image`` (an RGB uint8 array [H, W, 3], a PIL image or a
        path; None: the file at :attr:`path`) -> RGB uint8 [H, W, 3]. Labels scale with the
        image and avoid each other (:mod:`singleshot.io.draw`)."""
        return _renderer(self, image, line_width=line_width, font_size=font_size,
                         labels=labels, conf=conf)

    def save(self, path, image=None, **style) -> None:
        """``path`` ending in ``.json``: :meth:`to_json`; otherwise :meth:`plot` (``style``: its
        options) saved as an image in the format its suffix names."""
        from pathlib import Path

        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(self.to_json(indent=2))
            return
        from PIL import Image

        Image.fromarray(self.plot(image, **style)).save(path)

    @classmethod
    def failed(cls, error: str, path: str | None = None) -> "Detections":
        """The result of an image that could not be read or run: empty, with ``error``."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int64), np.zeros(0, np.int64), [], 0, 0, path, error=error)

    def to_coco(self, image_id: int) -> list[dict]:
        """COCO results entries (bbox as absolute xywh)."""
        xywh = box_convert(self.xyxy.astype(np.float64), "xyxy", "xywh")
        return [{"image_id": int(image_id), "category_id": int(c),
                 "bbox": [float(v) for v in b], "score": float(s)}
                for b, s, c in zip(xywh, self.scores, self.category_ids)]
