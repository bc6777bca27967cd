"""`--engine local` against `--engine ray` on this machine: images/s from the start of the work
(models loaded: the first actor call's start) to the last result on the driver, with cluster
start and model load reported apart.

    python bench/cluster_throughput.py MODEL IMAGES_DIR [--num-images N]
        [--configs local,ray:1x2,ray:2x1] [--json FILE]

``ray:WxC`` is W actors of C CPUs each; every config runs the same images, one after another.
"""

from __future__ import annotations

import argparse
import json
import time


def run_local(model: str, paths: list[str]) -> dict:
    from singleshot.io.images import load_image
    from singleshot.runtime.detector import Detector
    from singleshot.runtime.report import detect_paths

    t0 = time.perf_counter()
    det = Detector(model, conf=0.25)
    load_s = time.perf_counter() - t0
    start = time.perf_counter()
    n = sum(1 for _ in detect_paths(det, paths, load_image))
    end = time.perf_counter()
    return {"config": "local", "model_load_s": load_s, "cluster_start_s": 0.0,
            "images": n, "images_per_s": n / (end - start), "wall_s": end - t0}


def run_ray(model: str, paths: list[str], workers: int, cpus: int) -> dict:
    import ray

    from singleshot.cluster.engine import RayOptions
    from singleshot.cluster.jobs import detect_on_ray
    from singleshot.runtime.detector import Detector

    t0 = time.perf_counter()
    det = Detector(model, conf=0.25)
    opts = RayOptions(workers=workers, cpus_per_worker=cpus)
    n = sum(1 for _ in detect_on_ray(det, paths, opts, image_kwargs={}))
    wall = time.perf_counter() - t0
    ray.shutdown()
    t = opts.timings
    return {"config": f"ray:{workers}x{cpus}", "model_load_s": t["model_load_s"],
            "cluster_start_s": t["cluster_start_s"], "images": n,
            "images_per_s": t["images_per_s"], "wall_s": wall}


def main() -> None:
    from singleshot.io.sources import expand_sources
    from singleshot.runtime.cpu import describe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("--num-images", type=int, default=None)
    ap.add_argument("--configs", default="local,ray:1x2,ray:2x1")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    paths, _ = expand_sources([args.images])
    paths = paths[:args.num_images] if args.num_images else paths
    print(describe())
    rows = []
    for config in args.configs.split(","):
        if config == "local":
            row = run_local(args.model, paths)
        else:
            w, c = config.split(":")[1].split("x")
            row = run_ray(args.model, paths, int(w), int(c))
        rows.append(row)
        base = rows[0]["images_per_s"]
        print(f"{row['config']:>9}: {row['images_per_s']:7.2f} images/s, work start to last result "
              f"({row['images_per_s'] / base:.2f}x local), cluster start "
              f"{row['cluster_start_s']:.1f} s, model load {row['model_load_s']:.2f} s, "
              f"wall {row['wall_s']:.1f} s for {row['images']} images", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": describe(), "model": args.model, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
