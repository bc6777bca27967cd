"""``Detections``: one image's results in pixels of the original image, with category ids and names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .boxes import box_convert, clip_boxes
from .spec import ModelSpec


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

    def to_coco(self, image_id: int) -> list[dict]:
        """COCO results entries (bbox as absolute xywh)."""
        xywh = box_convert(self.xyxy.astype(np.float64), "xyxy", "xywh")
        return [{"image_id": int(image_id), "category_id": int(c),
                 "bbox": [float(v) for v in b], "score": float(s)}
                for b, s, c in zip(xywh, self.scores, self.category_ids)]
