"""``singleshot demo``: the bundled model on held-out scenes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...hub.registry import model_files
from .common import JsonOpt, OverwriteOpt, _alias, app, claim_out, ranged, user_errors


@app.command()
@user_errors
def demo(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default runs/demo/<timestamp>).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to show (default: the bundled one).")] = "demo",
    num_images: Annotated[Optional[int], ranged("num_images", "--num-images", help="Number of held-out scenes.  [default: 12]")] = None,
    images: Annotated[Optional[int], ranged("num_images", "--images", hidden=True)] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Also run the bundled int8 variants and print the fp32/int8 table.")] = True,
) -> None:
    """Run the bundled model on held-out synthetic scenes: annotated images, detections.json and
    a report with mAP and per-stage timings. Offline. Over an earlier demo folder, the old
    run moves into OUT/previous-N/ first (said)."""
    from ...io.files import new_run_folder
    from ..demo import run_demo

    images = _alias(num_images, "--num-images", images, "--images")
    images = 12 if images is None else images
    out = out or new_run_folder("demo")
    out = claim_out(out, "demo", overwrite=overwrite, inputs=model_files([model]))
    res = run_demo(out, model=model, n_images=images, compare=compare)
    t = res.timings_ms
    if as_json:
        print(json.dumps({"out": str(out), "images": res.n_images, "metrics": res.metrics,
                          "timings_ms": t, "detections": res.n_detections, "card": res.card}))
        return
    print(f"mAP (COCO AP@[.5:.95]) on {res.n_images} held-out scenes: {res.metrics['AP']:.3f} "
          f"(AP50 {res.metrics['AP50']:.3f})")
    print("per image: " + ", ".join(f"{k} {t[k]:.1f} ms" for k in
                                    ("decode", "preprocess", "inference", "postprocess")))
    if res.card:
        from ..demo import card_markdown

        print("fp32 vs int8 on the same scenes (speed-up of the inference stage):")
        print(card_markdown(res.card), end="")
        from ...runtime.cpu import cpu_info, describe, why_int8_is_slow

        print(describe())
        from ..demo import slower_than_fp32

        slow = slower_than_fp32(res.card)
        if slow:
            print(f"note: {', '.join(slow)} slower than fp32 here: "
                  f"{why_int8_is_slow(cpu_info())} (bench/RESULTS.md times the full-width "
                  "1200x1200 model)")
    print(f"report: {out / 'report.html'} (and report.md); annotated images: {out / 'annotated'}; "
          f"detections: {out / 'detections.json'}")
