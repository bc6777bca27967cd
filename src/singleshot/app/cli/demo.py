"""``singleshot demo``: the bundled model on held-out scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ...io.files import ensure_dir
from .common import _alias, app, user_errors


@app.command()
@user_errors
def demo(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default runs/demo/<timestamp>).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to show (default: the bundled one).")] = "demo",
    num_images: Annotated[Optional[int], typer.Option("--num-images", help="Number of held-out scenes.  [default: 12]")] = None,
    images: Annotated[Optional[int], typer.Option("--images", hidden=True)] = None,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Also run the bundled int8 variants and print the fp32/int8 table.")] = True,
) -> None:
    """Run the bundled model on held-out synthetic scenes: annotated images, detections.json and
    a report with mAP and per-stage timings. Offline."""
    import datetime

    from ..demo import run_demo

    images = _alias(num_images, "--num-images", images, "--images")
    images = 12 if images is None else images
    if images < 1:
        raise UsageError("--num-images must be at least 1")
    out = ensure_dir(out or Path("runs") / "demo" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    res = run_demo(out, model=model, n_images=images, compare=compare)
    t = res.timings_ms
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
        if any(r["speedup"] < 1 for r in res.card):
            print(f"note: int8 is slower here: {why_int8_is_slow(cpu_info())} "
                  "(bench/RESULTS.md times the full-width 1200x1200 model)")
    print(f"report: {out / 'report.html'} (and report.md); annotated images: {out / 'annotated'}; "
          f"detections: {out / 'detections.json'}")
