"""``singleshot export``: a checkpoint to ONNX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ...io.files import ensure_parent
from .common import JsonOpt, _alias, _require_extra, app, ranged, user_errors


@app.command()
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="MLPerf .pth/.pytorch, torchvision or singleshot checkpoint; or, with --batch dynamic, a singleshot zoo .onnx (or registry name such as demo) to re-batch.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the .onnx file.  [required]")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", hidden=True)] = None,
    opset: Annotated[int, ranged("opset", help="ONNX opset (10, 12, 13, 17...).")] = 13,
    raw: Annotated[bool, typer.Option("--raw", help="Output head logits loc/conf with a dynamic batch (no NMS).")] = False,
    input_size: Annotated[Optional[str], typer.Option(help="Model config when the checkpoint does not say: 1200 or 300.")] = None,
    class_names: Annotated[Optional[Path], typer.Option("--class-names", help="Text file with one class name per line.")] = None,
    classes: Annotated[Optional[Path], typer.Option("--classes", hidden=True)] = None,
    check: Annotated[bool, typer.Option(help="Run the parity check against torch.")] = True,
    test_data: Annotated[int, ranged("test_data", help="Also write N test sets beside the model (test_data_set_K/input_0.pb, output_J.pb) for singleshot verify.")] = 0,
    batch: Annotated[Optional[str], typer.Option(help="The batched zoo contract: 'dynamic' or a fixed N (opset >= 12): outputs padded to the detection cap, with num_detections.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a checkpoint to ONNX in the zoo contract (or raw heads with --raw)."""
    from ...io.guard import check_output_file
    from ...runtime.backends import is_checkpoint

    output = _alias(out, "--out", output, "--output")
    classes = _alias(class_names, "--class-names", classes, "--classes")
    if output is None:
        raise UsageError("--out/-o is required: where to write the .onnx file")
    from ...hub.registry import is_registry_name

    onnx_input = checkpoint.suffix == ".onnx" or is_registry_name(str(checkpoint))
    if not onnx_input:  # a checkpoint: torch is needed, said before anything else
        _require_extra("torch", "torch", "export")
    check_output_file(output, [checkpoint, classes])
    if checkpoint.is_dir():
        raise UsageError(f"{checkpoint}: is a folder; give a checkpoint file (or an .onnx to "
                         "re-batch)")
    if not checkpoint.exists() and not onnx_input:
        raise UsageError(f"{checkpoint}: no such file")
    ensure_parent(output)
    if not is_checkpoint(checkpoint) and (checkpoint.suffix == ".onnx" or not checkpoint.exists()):
        if batch != "dynamic":
            raise UsageError(f"{checkpoint}: an ONNX graph can only be re-batched (--batch "
                             "dynamic); export checkpoints for anything else")
        from ...export.parity import rebatch_checked

        report = rebatch_checked(str(checkpoint), output)
        if as_json:
            print(json.dumps({"checkpoint": str(checkpoint), "out": str(output),
                              "kind": "batched zoo contract (batch dynamic)",
                              "parity": str(report)}))
            return
        print(f"{checkpoint} -> {output}: batched zoo contract (batch dynamic)")
        print(report)
        return
    from ...export.exporter import export_onnx
    from ...model.checkpoint import detector_from_checkpoint
    if input_size is not None and input_size not in ("1200", "300"):
        raise UsageError(f"--input-size must be 1200 or 300, got {input_size}")
    model, ckpt = detector_from_checkpoint(checkpoint, input_size)
    cfg = model.cfg
    names = ckpt.class_names
    if classes is not None:
        if not classes.is_file():
            raise UsageError(f"--class-names {classes}: no such file")
        names = tuple(n.strip() for n in classes.read_text().splitlines() if n.strip())
    if batch is not None and raw:
        raise UsageError("--raw graphs always take a dynamic batch; --batch is for the zoo contract")
    report = export_onnx(model, output, opset=opset, raw=raw, check=check, class_names=names,
                         batch=batch,
                         category_ids=ckpt.category_ids)
    kind = "raw heads" if raw else ("zoo contract" if batch is None else
                                    f"batched zoo contract (batch {batch})")
    sets = []
    if test_data:
        from ...eval.verify import write_test_data

        sets = write_test_data(output, test_data)
    if as_json:
        print(json.dumps({"checkpoint": str(checkpoint), "checkpoint_kind": ckpt.kind,
                          "out": str(output), "kind": kind, "opset": opset,
                          "input_size": cfg.input_size, "classes": cfg.num_classes,
                          "default_boxes": cfg.default_boxes().num_anchors,
                          "parity": None if report is None else str(report),
                          "test_sets": [str(p) for p in sets]}))
        return
    print(f"{checkpoint} ({ckpt.kind}) -> {output}: {kind}, "
          f"opset {opset}, input {cfg.input_size}x{cfg.input_size}, {cfg.num_classes} classes, "
          f"{cfg.default_boxes().num_anchors} default boxes")
    if report is not None:
        print(report)
    if sets:
        print(f"wrote {len(sets)} test set(s) beside {output}: "
              + ", ".join(p.name for p in sets))
