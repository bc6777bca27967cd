"""bf16 training against fp32 on the demo recipe (README, "The bundled model"): the same steps of
the same recipe, then the validation AP of each, and the steps/s of each.

    python bench/train_bf16_ap.py [--steps 800] [--data runs/synth]

The recipe's data (5000 training scenes, seed 1; 500 validation scenes, seed 2) is written when
missing; the evaluation uses the first 200 validation scenes, as the recipe's --eval-limit does.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

RECIPE = ["--width", "0.125", "--batch", "16", "--optimizer", "adamw", "--lr", "0.001",
          "--weight-decay", "0.0005", "--warmup", "300", "--milestones", "6,7", "--eval-limit",
          "200", "--seed", "0", "--no-tensorboard", "--exist-ok"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--data", default="runs/synth")
    ap.add_argument("--out", default="runs/bf16-ap")
    ap.add_argument("--train-images", type=int, default=5000, help="the recipe's 5000, or fewer "
                    "(the first N of the same seed) where writing them takes too long")
    ap.add_argument("--val-images", type=int, default=500)
    a = ap.parse_args()
    from singleshot.data.synth import write_dataset
    from singleshot.runtime.cpu import cpu_info

    info = cpu_info()
    if not info["bf16"]:
        sys.exit(f"this CPU ({info['model']}) has no bf16: nothing to compare")
    data = Path(a.data)
    for split, n, seed in (("train", a.train_images, 1), ("val", a.val_images, 2)):
        if not (data / split / "annotations.json").exists():
            write_dataset(data / split, n, seed=seed)
    print(f"CPU: {info['model']}, int8 {info['int8']}, bf16 yes; {a.steps} steps of the demo "
          f"recipe on {a.train_images} training scenes, evaluated on the first 200 of "
          f"{a.val_images}")
    for precision in ("fp32", "bf16"):
        out = Path(a.out) / precision
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "singleshot", "train", "--data",
                        str(data / "train"), "--val", str(data / "val"), "-o", str(out),
                        "--max-steps", str(a.steps), "--precision", precision, *RECIPE],
                       check=True, capture_output=True, text=True)
        seconds = time.monotonic() - t
        with (out / "results.csv").open() as f:
            rows = list(csv.DictReader(f))
        last = [r for r in rows if r["val_AP"]][-1]
        print(f"{precision}: val AP {float(last['val_AP']):.4f} AP50 {float(last['val_AP50']):.4f}"
              f" after step {last['step']}; {seconds / 60:.1f} min in all, "
              f"{a.steps / seconds:.2f} steps/s with start-up and evaluation")


if __name__ == "__main__":
    main()
