"""Export a small SSD-ResNet34-family model (random weights, 300x300, width 1/8) and a sample image,
so that `singleshot detect` can be tried on a fresh machine without downloads.

    python scripts/make_small_model.py runs/small

writes runs/small/small.onnx (zoo contract, opset 13) and runs/small/sample.jpg. The weights are
random: the detections show the pipeline working, not a trained detector.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import torch
except ImportError:
    sys.exit("error: this script exports with PyTorch, which is not installed: "
             "pip install 'singleshot[torch]'")

from singleshot.export.exporter import export_onnx  # noqa: E402 - after the torch check
from singleshot.model import build_model  # noqa: E402


def main(out_dir: str = "runs/small") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model("300", width=0.125).eval()
    with torch.no_grad():  # give three classes a prior so that random weights still score boxes
        for head in model.conf:
            bias = head.bias.view(81, -1)
            bias.zero_()
            bias[0] = 2.0
            bias[[1, 3, 18]] = torch.tensor([3.0, 2.5, 2.0])[:, None]
            torch.nn.init.xavier_uniform_(head.weight)
            head.weight.mul_(4.0)
    report = export_onnx(model, out / "small.onnx", opset=13)
    yy, xx = np.mgrid[0:480, 0:640]
    img = np.stack([xx * 255 / 640, yy * 255 / 480, (xx + yy) % 256], -1).astype(np.uint8)
    img[120:360, 200:440] = (230, 60, 40)
    Image.fromarray(img).save(out / "sample.jpg", quality=92)
    print(f"wrote {out / 'small.onnx'} and {out / 'sample.jpg'} ({report})")


if __name__ == "__main__":
    main(*sys.argv[1:])
