"""Build the benchmark models: the full SSD-ResNet34 1200x1200 (zoo contract, opset 13) with
random weights and realistic score ranges (see singleshot/model/lively.py), calibration and sample
images, and its int8 variants made by `singleshot quantize` with its defaults.

    python bench/make_model.py [OUT_DIR]          # default runs/bench

writes OUT_DIR/ssd1200-fp32.onnx, ssd1200-int8-qdq.onnx, ssd1200-int8-qoperator.onnx,
calib/ (generated photo-like scenes) and prints how many candidates pass the score threshold.
Any real 1200 checkpoint can replace the random one: `singleshot export CKPT -o ssd1200-fp32.onnx`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main(out_dir: str = "runs/bench") -> None:
    from singleshot.data.synth import write_dataset
    from singleshot.export.exporter import export_onnx
    from singleshot.model.lively import BENCH_HEADS, lively_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "ssd1200-fp32.onnx"
    if not fp32.exists():
        t = time.monotonic()
        export_onnx(lively_model("1200", **BENCH_HEADS), fp32, opset=13)
        print(f"exported {fp32} in {time.monotonic() - t:.0f} s")
    calib = out / "calib"
    if not (calib / "annotations.json").exists():
        write_dataset(calib, 20, seed=11)
    _report_candidates(fp32, next((calib / "images").iterdir()))
    for fmt in ("qdq", "qoperator"):
        q = out / f"ssd1200-int8-{fmt}.onnx"
        if not q.exists():
            subprocess.run([sys.executable, "-m", "singleshot", "quantize", str(fp32), "-o", str(q),
                            "--calib", str(calib / "images"), "--num-images", "20",
                            "--format", fmt], check=True)


def _report_candidates(model: Path, image: Path) -> None:
    """How busy NMS is on a sample: (box, class) pairs above the threshold, detections kept."""
    import onnx

    from singleshot.graph.contract import graph_io, read_spec
    from singleshot.graph.edit import with_outputs
    from singleshot.io.images import load_image
    from singleshot.runtime.preprocess import preprocess
    from singleshot.runtime.session import make_session

    proto = onnx.load(str(model))
    spec = read_spec(proto, graph_io(proto))
    x = preprocess(load_image(image, exif=False), spec)
    sess = make_session(with_outputs(proto, ("conf",)))
    conf, scores = sess.run(["conf", "scores"], {"image": x})
    p = np.exp(conf[0] - conf[0].max(0)) / np.exp(conf[0] - conf[0].max(0)).sum(0)
    cand = p[1:] > 0.05
    print(f"{image.name}: {int(cand.sum())} (box, class) candidates above 0.05 in "
          f"{int(cand.any(1).sum())} classes; {scores.shape[1]} detections after NMS")


if __name__ == "__main__":
    main(*sys.argv[1:])
