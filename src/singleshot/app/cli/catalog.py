"""``singleshot models``, ``download`` and ``info``: what models there are, fetching them, what a file is."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ...errors import ModelError
from .common import app, user_errors


@app.command()
@user_errors
def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the known models (zoo files and the bundled one) and whether they are cached."""
    from rich.console import Console
    from rich.table import Table

    from ...hub.download import catalog

    rows = catalog()
    if as_json:
        print(json.dumps({"models": rows}, indent=2))
        return
    table = Table()
    for col in ("name", "opset", "size", "card mAP", "measured with", "cached", "about"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(r["opset"]), f"{r['size'] / 1e6:.1f} MB" if r["size"] else "-",
                      f"{r['card_map']}" if r["card_map"] is not None else "-", r["card_metric"],
                      "yes" if r["local"] else "no", r["description"])
    console = Console(width=140)
    console.print(table)
    for r in rows:
        if r["url"]:
            console.print(f"{r['name']:12} sha256 {r['sha256']}\n{'':12} {r['url']}",
                          soft_wrap=True, highlight=False)


@app.command()
@user_errors
def download(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registry name, e.g. ssd-12.")],
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
    with_test_data: Annotated[bool, typer.Option("--with-test-data", help="Also fetch the zoo's archive with sample test data and extract it safely (then: singleshot verify).")] = False,
) -> None:
    """Download a zoo model into the cache ($SINGLESHOT_HOME, default ~/.cache/singleshot)."""
    from ...hub.download import ensure_model
    from ...hub.registry import get_entry

    entry = get_entry(name)
    path = ensure_model(entry, force=force)
    print(path)
    if with_test_data:
        from ...hub.download import ensure_test_data

        folder = ensure_test_data(entry, force=force)
        print(f"{folder}  (check it here: singleshot verify {folder})")


@app.command()
@user_errors
def info(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="ONNX file or registry name.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Describe an ONNX model: I/O, opset, ops, metadata, contract, quantization. Exit 2 when
    the file is not a detector (after describing it)."""
    from ...graph.inspect import describe
    from ...runtime.detector import resolve_model_path

    d = describe(resolve_model_path(model))
    not_detector = ModelError(f"{d['path']}: not a detector ({d.get('contract_error')})") \
        if not d.get("contract") else None
    if as_json:
        print(json.dumps(d, indent=2))
        if not_detector:
            raise not_detector
        return
    print(f"{d['path']}  ({d['size_bytes'] / 1e6:.1f} MB, {d['parameters']:,} parameters, "
          f"producer: {d['producer'] or '-'})")
    print("opset:   " + ", ".join(f"{k} {v}" for k, v in d["opset"].items()))
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            print(f"{kind[:-1]:7}: {t['name']} {t['dtype']} {t['shape']}")
    if d.get("contract"):
        s = d["spec"]
        src = "metadata" if s["from_metadata"] else "zoo defaults (no metadata)"
        print(f"contract: {d['contract']} - input {s['input_size'][0]}x{s['input_size'][1]}, "
              f"{s['classes']} classes, {s['anchors']} default boxes, spec from {src}")
        if d.get("nms"):
            n = d["nms"]
            print(f"nms:     score > {n['score_threshold']}, IoU > {n['iou_threshold']} "
                  f"suppressed, {n['max_per_class']} per class, {n['max_det']} per image")
    else:
        print(f"contract: none ({d.get('contract_error')})")
    q = d["quantization"]
    print("quantized: " + (f"{q['format']}, activations {'/'.join(q['activations']) or '?'}, "
                           f"weights {'/'.join(q['weights']) or '?'}, "
                           f"{'per-channel' if q['per_channel'] else 'per-tensor'}"
                           if q else "no (float)"))
    print("ops:     " + ", ".join(f"{k} {v}" for k, v in d["ops"].items()))
    if d["metadata"]:
        print("metadata:")
        for k, v in d["metadata"].items():
            print(f"  {k}: {v if len(v) <= 100 else v[:97] + '...'}")
    if not_detector:
        raise not_detector
