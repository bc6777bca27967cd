"""The SSD-ResNet34 model in PyTorch (needs the ``torch`` extra) and checkpoint loading."""

from .config import SSDConfig
from .ssd import SSDResNet34, build_model

__all__ = ["SSDConfig", "SSDResNet34", "build_model"]
