"""``singleshot quantize``: static int8, optionally accuracy-aware."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ...io.files import ensure_parent
from .common import JsonOpt, _alias, app, model_argument, ranged, user_errors


@app.command()
@user_errors
def quantize(
    model_arg: Annotated[Optional[str], typer.Argument(metavar="MODEL", help="Float32 ONNX model (zoo contract or raw heads) or registry name (or -m/--model).", show_default=False)] = None,
    model_opt: Annotated[Optional[str], typer.Option("--model", "-m", help="The model, as an option (the same as MODEL).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the int8 model.  [required]")] = None,
    calib: Annotated[Optional[Path], typer.Option(help="Folder of calibration images.  [required]")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", hidden=True)] = None,
    format: Annotated[str, typer.Option("--format", help="qdq (portable: onnxruntime, OpenVINO) or qoperator (onnxruntime only).")] = "qdq",
    num_images: Annotated[int, ranged("num_images", help="Calibration images to use.")] = 100,
    method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel.")] = True,
    activations: Annotated[str, typer.Option(help="uint8 (asymmetric, fast here) or int8.")] = "uint8",
    eval_images: Annotated[Optional[Path], typer.Option(help="Accuracy-aware mode: folder of evaluation images.")] = None,
    eval_annotations: Annotated[Optional[Path], typer.Option(help="Accuracy-aware mode: COCO annotations of --eval-images.")] = None,
    max_drop: Annotated[Optional[str], typer.Option(help="Accuracy-aware mode: allowed mAP drop, 1% (relative to fp32) or 0.01 (absolute).  [default: 1%]")] = None,
    max_trials: Annotated[Optional[int], ranged("max_trials", help="Accuracy-aware mode: trials after the first (1, 2, 4, ... convs back in float).  [default: 6]")] = None,
    eval_limit: Annotated[Optional[int], ranged("eval_limit", help="Accuracy-aware mode: evaluate on the first N images only.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Static int8 quantization with a float post-processing tail (QDQ by default).

    With --eval-images and --eval-annotations, fp32 and int8 are evaluated (COCO mAP) and the
    most sensitive convolutions go back to float, trial by trial, until the drop is within
    --max-drop; every trial is printed and <stem>.report.json is written beside OUT."""
    from ...io.guard import check_output_file
    from ...quant.accuracy import report_path
    from ...quant.static import Recipe, quantize_model, recipe_of
    from ...runtime.detector import resolve_model_path

    model = model_argument(model_arg, model_opt)
    output = _alias(out, "--out", output, "--output")
    if output is None:
        raise UsageError("--out/-o is required: where to write the int8 model")
    if calib is None:
        raise UsageError("--calib is required: a folder of calibration images")
    if (eval_images is None) != (eval_annotations is None):
        raise UsageError("accuracy-aware mode needs both --eval-images and --eval-annotations")
    if eval_images is None:
        given = [n for n, v in (("--max-drop", max_drop), ("--max-trials", max_trials),
                                ("--eval-limit", eval_limit)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to accuracy-aware mode "
                             "(--eval-images and --eval-annotations)")
    model = resolve_model_path(model)  # a registry name (demo, ssd-12) works too
    inputs = [model, eval_annotations]
    check_output_file(output, inputs)
    check_output_file(report_path(output), inputs)
    recipe = Recipe(format=format.lower(), activations=activations.lower(), per_channel=per_channel,
                    method=method.lower(), num_images=num_images)
    recipe.validate()  # a bad --format or --method is refused before any work
    ensure_parent(output)
    t0 = time.monotonic()
    if eval_images is None:
        written = quantize_model(model, output, calib, recipe)
        recipe_text = recipe_of(written).describe()  # as done: images actually used
        if as_json:
            print(json.dumps({"model": str(model), "out": str(written),
                              "size_bytes": written.stat().st_size, "recipe": recipe_text,
                              "seconds": round(time.monotonic() - t0, 3)}))
            return
        print(f"recipe: {recipe_text}")
        print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB) in "
              f"{time.monotonic() - t0:.0f} s")
        return
    from ...quant.accuracy import DropTarget, format_trials, quantize_accuracy_aware

    target = DropTarget.parse(max_drop if max_drop is not None else "1%")
    report = quantize_accuracy_aware(model, output, calib, recipe, eval_images=eval_images,
                                     eval_annotations=eval_annotations, target=target,
                                     max_trials=6 if max_trials is None else max_trials,
                                     limit=eval_limit)
    chosen = report["trials"][report["chosen_trial"]]
    stream = sys.stderr if as_json else sys.stdout
    if as_json:
        print(json.dumps(report))
    print(f"recipe: {recipe_of(output).describe()}", file=stream)
    print(format_trials(report), end="", file=stream)
    print(f"wrote {output} (trial {chosen['trial']}, {len(chosen['float_nodes'])} conv(s) in float) "
          f"and {report_path(output)} in {time.monotonic() - t0:.0f} s", file=stream)
    if not report["met_target"]:
        print(f"error: no trial kept the drop within {target.describe()}; wrote the most "
              "accurate one (raise --max-trials or --max-drop)", file=sys.stderr)
        raise typer.Exit(1)
