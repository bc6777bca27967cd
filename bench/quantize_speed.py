"""int8 vs fp32 inference speed of the 1200x1200 model in onnxruntime, side by side in one run.

    python bench/make_model.py runs/bench          # once: fp32 model and its int8 variants
    python bench/quantize_speed.py runs/bench [--runs 5] [--threads 2]

Times `session.run` on one preprocessed tensor (the card's preprocessing of a generated scene),
batch 1: each model is warmed up, then the models take turns, run by run, so that drifts of the
shared machine hit them alike. Prints the median seconds per image and the speed-up over fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

MODELS = (("fp32", "ssd1200-fp32.onnx"), ("int8 QDQ", "ssd1200-int8-qdq.onnx"),
          ("int8 QOperator", "ssd1200-int8-qoperator.onnx"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default="runs/bench")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort

    from singleshot.graph.contract import graph_io, read_spec
    from singleshot.io.images import load_image
    from singleshot.runtime.preprocess import preprocess
    from singleshot.runtime.session import make_session

    folder = Path(args.folder)
    image = sorted((folder / "calib" / "images").iterdir())[-1]
    sessions, x = {}, None
    for label, name in MODELS:
        proto = onnx.load(str(folder / name))
        if x is None:
            x = preprocess(load_image(image, exif=False), read_spec(proto, graph_io(proto)))
        sessions[label] = make_session(proto, args.threads)
        for _ in range(args.warmup):
            sessions[label].run(None, {"image": x})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.runs):
        for label, sess in sessions.items():
            t = time.perf_counter()
            sess.run(None, {"image": x})
            times[label].append(time.perf_counter() - t)
    base = statistics.median(times["fp32"])
    rows = [{"model": label, "file": name, "median_s": statistics.median(times[label]),
             "runs_s": times[label], "speedup": base / statistics.median(times[label])}
            for label, name in MODELS]
    print(f"onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}, "
          f"threads {args.threads or 'default'}, {args.runs} runs after {args.warmup} warm-up, "
          f"input {image.name}")
    print("| model | median s / image | speed-up vs fp32 |\n|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['median_s']:.3f} | {r['speedup']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"onnxruntime": ort.__version__, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
