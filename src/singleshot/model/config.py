"""``SSDConfig``: the model's shape as plain data (no torch), with the named MLPerf configs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..core.anchors import DefaultBoxConfig


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


@dataclass(frozen=True)
class SSDConfig:
    """Shape of an SSD-ResNet34.

    input_size: square input side. width: channel multiplier (1.0 = the checkpoint). num_classes:
    foreground classes (the head predicts num_classes + 1 with 0 = background). head_stride: stride of
    the loc/conf convs (3 at 1200, 1 at 300). block_strides / block_pads: the five extra blocks'
    3x3 conv stride and padding.
    """

    input_size: int = 1200
    width: float = 1.0
    num_classes: int = 80
    head_stride: int = 3
    block_strides: tuple[int, ...] = (2, 2, 2, 2, 1)
    block_pads: tuple[int, ...] = (1, 1, 1, 0, 0)

    @classmethod
    def ssd1200(cls, **kw) -> "SSDConfig":
        """The zoo model: 1200x1200, 15130 anchors."""
        return cls(**{"input_size": 1200, "head_stride": 3, "block_strides": (2, 2, 2, 2, 1), **kw})

    @classmethod
    def ssd300(cls, **kw) -> "SSDConfig":
        """The MLPerf training model: 300x300, 8732 anchors (same keys and shapes as 1200)."""
        return cls(**{"input_size": 300, "head_stride": 1, "block_strides": (2, 2, 2, 1, 1), **kw})

    @classmethod
    def named(cls, name: str, **kw) -> "SSDConfig":
        names = {"1200": cls.ssd1200, "300": cls.ssd300}
        if name not in names:
            raise ValueError(f"unknown model config {name!r}; choose one of {sorted(names)}")
        return names[name](**kw)

    def ch(self, c: int) -> int:
        """A channel count of the full model scaled by ``width`` (at least 4)."""
        return max(4, int(round(c * self.width)))

    @property
    def num_anchors_per_location(self) -> tuple[int, ...]:
        return (4, 6, 6, 6, 4, 4)

    def feature_sizes(self) -> list[int]:
        """Side of each source feature map: backbone (stride 8), then the five extra blocks."""
        s = self.input_size
        s = _conv_out(s, 7, 2, 3)  # conv1
        s = _conv_out(s, 3, 2, 1)  # maxpool
        s = _conv_out(s, 3, 2, 1)  # resnet layer2 (layer3 keeps stride 1 here)
        sizes = [s]
        for stride, pad in zip(self.block_strides, self.block_pads):
            s = _conv_out(s, 3, stride, pad)
            sizes.append(s)
        if min(sizes) < 1:
            raise ValueError(f"input size {self.input_size} is too small for this config: "
                             f"feature maps {sizes}")
        return sizes

    def grid_sizes(self) -> list[int]:
        """Side of each head output (the anchor grid)."""
        sizes = [_conv_out(f, 3, self.head_stride, 1) for f in self.feature_sizes()]
        if min(sizes) < 1:
            raise ValueError(f"input size {self.input_size} gives an empty anchor grid: {sizes}")
        return sizes

    def default_boxes(self) -> DefaultBoxConfig:
        return DefaultBoxConfig.for_grid(self.input_size, tuple(self.grid_sizes()))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SSDConfig":
        d = dict(d)
        for key in ("block_strides", "block_pads"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
