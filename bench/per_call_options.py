"""The cost of per-call post-processing options: Detector.infer with the detector's own options,
with other thresholds, and with one class, on one generated scene, against building a Detector
for those options instead (what a session cache would pay on each miss).

    python bench/per_call_options.py MODEL [MODEL...] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    from singleshot.data.synth import make_scene
    from singleshot.runtime.cpu import describe
    from singleshot.runtime.detector import Detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    print(describe())
    image = make_scene(7, 0, size=(640, 480))[0]
    other = {"conf": 0.01, "iou": 0.3, "max_det": 300}
    for model in args.models:
        det = Detector(model, exif=False)
        x = det.preprocess(image)
        for _ in range(2):
            det.infer(x)

        def median_ms(**options) -> float:
            params, classes = det.options(**options)
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                det.infer(x, params, classes)
                times.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(times)

        t0 = time.perf_counter()
        Detector(model, exif=False, **other)
        build = (time.perf_counter() - t0) * 1e3
        print(f"{model}: default {median_ms():.1f} ms, conf 0.01 iou 0.3 max_det 300 "
              f"{median_ms(**other):.1f} ms, one class {median_ms(classes=[det.spec.category_ids[0]]):.1f} ms; "
              f"a new Detector for those options: {build:.0f} ms")


if __name__ == "__main__":
    main()
