"""SSD default boxes (anchors) in numpy, in the exact order and values of the MLPerf reference.

Order: level -> box size -> row i -> column j, so the anchor index inside a level is
``k * H * W + i * W + j``, matching the heads' ``view(N, 4, -1)`` flattening.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

# The MLPerf scales for a 300 image; other sizes scale them linearly (1200 uses x4).
BASE_SCALES_300 = (21, 45, 99, 153, 207, 261, 315)
BASE_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))


@dataclass(frozen=True)
class DefaultBoxConfig:
    """Parameters of the default-box grid of a square input.

    fig_size: input side in pixels. feat_size: anchor-grid side per level (the head outputs).
    steps: pixels per grid cell per level. scales: len(levels)+1 box scales in pixels.
    aspect_ratios: extra ratios per level (each adds two boxes). fk_floor: grid size used for the
    centres is ``fig_size // step`` (the 1200 reference) instead of ``fig_size / step`` (300).
    """

    fig_size: int
    feat_size: tuple[int, ...]
    steps: tuple[float, ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    fk_floor: bool = False

    def __post_init__(self) -> None:
        n = len(self.feat_size)
        if not (len(self.steps) == n == len(self.aspect_ratios) and len(self.scales) == n + 1):
            raise ValueError(
                "default-box config needs as many steps and aspect-ratio lists as feature sizes, "
                f"and one scale more (got {n} sizes, {len(self.steps)} steps, "
                f"{len(self.scales)} scales, {len(self.aspect_ratios)} ratio lists)"
            )

    @classmethod
    def ssd1200(cls) -> "DefaultBoxConfig":
        """The zoo model's grid: 15130 boxes."""
        return cls(1200, (50, 25, 13, 7, 3, 3), (24, 48, 92, 171, 400, 400),
                   tuple(s * 4 for s in BASE_SCALES_300), BASE_ASPECT_RATIOS, fk_floor=True)

    @classmethod
    def ssd300(cls) -> "DefaultBoxConfig":
        """The MLPerf training model's grid: 8732 boxes."""
        return cls(300, (38, 19, 10, 5, 3, 1), (8, 16, 32, 64, 100, 300), BASE_SCALES_300,
                   BASE_ASPECT_RATIOS, fk_floor=False)

    @classmethod
    def for_grid(cls, fig_size: int, feat_size: tuple[int, ...]) -> "DefaultBoxConfig":
        """A grid for any input size: the reference scales scaled to ``fig_size``, centres on the
        grid cells (step = fig_size / feat_size). Returns the exact 300/1200 configs for those."""
        feat_size = tuple(int(f) for f in feat_size)
        for named in (cls.ssd1200(), cls.ssd300()):
            if named.fig_size == fig_size and named.feat_size == feat_size:
                return named
        if len(feat_size) != len(BASE_ASPECT_RATIOS):
            raise ValueError(f"expected {len(BASE_ASPECT_RATIOS)} levels, got {len(feat_size)}")
        return cls(fig_size, feat_size, tuple(fig_size / f for f in feat_size),
                   tuple(s * fig_size / 300 for s in BASE_SCALES_300), BASE_ASPECT_RATIOS)

    def num_anchors_per_location(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    @property
    def num_anchors(self) -> int:
        return sum(n * f * f for n, f in zip(self.num_anchors_per_location(), self.feat_size))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "DefaultBoxConfig":
        d = json.loads(text)
        return cls(int(d["fig_size"]), tuple(d["feat_size"]), tuple(d["steps"]),
                   tuple(d["scales"]), tuple(tuple(r) for r in d["aspect_ratios"]),
                   bool(d.get("fk_floor", False)))


def default_boxes(cfg: DefaultBoxConfig) -> np.ndarray:
    """Default boxes [A, 4] float32, (cx, cy, w, h) normalised, clamped to [0, 1] in that format.

    Computed in float64 like the reference's Python arithmetic, then rounded to float32 once.
    The xyxy form (``boxes.box_convert(.., "cxcywh", "xyxy")``) is not clipped.
    """
    rows: list[tuple[float, float, float, float]] = []
    fig = cfg.fig_size
    for idx, sfeat in enumerate(cfg.feat_size):
        fk = fig // cfg.steps[idx] if cfg.fk_floor else fig / cfg.steps[idx]
        sk1 = cfg.scales[idx] / fig
        sk2 = cfg.scales[idx + 1] / fig
        sk3 = math.sqrt(sk1 * sk2)
        sizes = [(sk1, sk1), (sk3, sk3)]
        for alpha in cfg.aspect_ratios[idx]:
            w, h = sk1 * math.sqrt(alpha), sk1 / math.sqrt(alpha)
            sizes += [(w, h), (h, w)]
        for w, h in sizes:
            for i, j in itertools.product(range(sfeat), repeat=2):
                rows.append(((j + 0.5) / fk, (i + 0.5) / fk, w, h))
    return np.clip(np.asarray(rows, dtype=np.float32), 0.0, 1.0)
