"""``singleshot verify``: a model's recorded test sets, run here and compared."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from .common import (
    BackendOpt,
    JsonOpt,
    PrecisionOpt,
    app,
    model_argument,
    ranged,
    user_errors,
)


@app.command()
@user_errors
def verify(
    model_arg: Annotated[Optional[str], typer.Argument(metavar="MODEL", help="An archive, a folder, a registry name (its zoo archive, downloaded when missing) or an .onnx with test_data_set_* beside it (or -m/--model).", show_default=False)] = None,
    model_opt: Annotated[Optional[str], typer.Option("--model", "-m", help="The model, as an option (the same as MODEL).")] = None,
    backend: BackendOpt = "onnxruntime",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
    box_tol: Annotated[Optional[float], ranged("box_tol", help="Largest box difference (normalised) of a matched detection.")] = None,
    score_tol: Annotated[Optional[float], ranged("score_tol", help="Largest score difference of a matched detection.")] = None,
    rtol: Annotated[Optional[float], ranged("rtol", help="Relative tolerance for other outputs.")] = None,
    atol: Annotated[Optional[float], ranged("atol", help="Absolute tolerance for other outputs.")] = None,
) -> None:
    """Run the recorded test sets of a model and compare the outputs. Exit 0: every set passes;
    1: a mismatch; 2: nothing to verify."""
    from ...eval.verify import verify as run_verify

    report = run_verify(model_argument(model_arg, model_opt), backend=backend,
                        precision=precision, box_tol=box_tol,
                        score_tol=score_tol, rtol=rtol, atol=atol)
    if as_json:
        print(json.dumps(report))
    else:
        tol = report["tolerances"]
        print(f"{report['model']}: {report['backend']} ({report['precision']}) on "
              f"{report['cpu']}; tolerances box {tol['box']:g}, score {tol['score']:g}"
              + (" (int8: looser, its kernels round differently on each CPU)" if report["int8"]
                 else " (bf16: looser, 8 mantissa bits)" if report["reduced_precision"] else ""))
        for s in report["sets"]:
            print(f"  {s['set']}: {'pass' if s['passed'] else 'FAIL'} - {s['matched']}/"
                  f"{s['detections']} detections matched, max box diff {s['max_box_diff']:.2e}, "
                  f"max score diff {s['max_score_diff']:.2e}"
                  + (f"; {s['problem']}" if s["problem"] else ""))
    if not report["passed"]:
        raise typer.Exit(1)
