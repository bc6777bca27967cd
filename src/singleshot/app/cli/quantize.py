"""``singleshot quantize``: static int8, optionally accuracy-aware."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ...io.files import ensure_parent
from .common import _alias, app, user_errors


@app.command()
@user_errors
def quantize(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Float32 ONNX model (zoo contract or raw heads) or registry name.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the int8 model.  [required]")] = None,
    calib: Annotated[Optional[Path], typer.Option(help="Folder of calibration images.  [required]")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", hidden=True)] = None,
    format: Annotated[str, typer.Option("--format", help="qdq (portable: onnxruntime, OpenVINO) or qoperator (onnxruntime only).")] = "qdq",
    num_images: Annotated[int, typer.Option(help="Calibration images to use.")] = 100,
    method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel.")] = True,
    activations: Annotated[str, typer.Option(help="uint8 (asymmetric, fast here) or int8.")] = "uint8",
    eval_images: Annotated[Optional[Path], typer.Option(help="Accuracy-aware mode: folder of evaluation images.")] = None,
    eval_annotations: Annotated[Optional[Path], typer.Option(help="Accuracy-aware mode: COCO annotations of --eval-images.")] = None,
    max_drop: Annotated[str, typer.Option(help="Allowed mAP drop: 1% (relative to fp32) or 0.01 (absolute).")] = "1%",
    max_trials: Annotated[int, typer.Option(help="Accuracy-aware mode: trials after the first (1, 2, 4, ... convs back in float).")] = 6,
    eval_limit: Annotated[Optional[int], typer.Option(help="Accuracy-aware mode: evaluate on the first N images only.")] = None,
) -> None:
    """Static int8 quantization with a float post-processing tail (QDQ by default).

    With --eval-images and --eval-annotations, fp32 and int8 are evaluated (COCO mAP) and the
    most sensitive convolutions go back to float, trial by trial, until the drop is within
    --max-drop; every trial is printed and OUT.report.json is written."""
    from ...quant.static import Recipe, quantize_model, recipe_of
    from ...runtime.detector import resolve_model_path

    model = resolve_model_path(str(model))  # a registry name (demo, ssd-12) works too
    output = _alias(out, "--out", output, "--output")
    if output is None:
        raise UsageError("--out/-o is required: where to write the int8 model")
    if calib is None:
        raise UsageError("--calib is required: a folder of calibration images")
    if num_images < 1:
        raise UsageError("--num-images must be at least 1")
    if (eval_images is None) != (eval_annotations is None):
        raise UsageError("accuracy-aware mode needs both --eval-images and --eval-annotations")
    recipe = Recipe(format=format.lower(), activations=activations.lower(), per_channel=per_channel,
                    method=method.lower(), num_images=num_images)
    recipe.validate()  # a bad --format or --method is refused before any work
    ensure_parent(output)
    t0 = time.monotonic()
    if eval_images is None:
        written = quantize_model(model, output, calib, recipe)
        print(f"recipe: {recipe_of(written).describe()}")  # as done: images actually used
        print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB) in "
              f"{time.monotonic() - t0:.0f} s")
        return
    from ...quant.accuracy import DropTarget, format_trials, quantize_accuracy_aware, report_path

    target = DropTarget.parse(max_drop)
    report = quantize_accuracy_aware(model, output, calib, recipe, eval_images=eval_images,
                                     eval_annotations=eval_annotations, target=target,
                                     max_trials=max_trials, limit=eval_limit)
    print(f"recipe: {recipe_of(output).describe()}")
    print(format_trials(report), end="")
    chosen = report["trials"][report["chosen_trial"]]
    print(f"wrote {output} (trial {chosen['trial']}, {len(chosen['float_nodes'])} conv(s) in float) "
          f"and {report_path(output)} in {time.monotonic() - t0:.0f} s")
    if not report["met_target"]:
        print(f"error: no trial kept the drop within {target.describe()}; wrote the most "
              "accurate one (raise --max-trials or --max-drop)", file=sys.stderr)
        raise typer.Exit(1)
