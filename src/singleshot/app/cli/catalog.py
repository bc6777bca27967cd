"""``singleshot models``, ``download`` and ``info``: what models there are, fetching them, what a file is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import ModelError, UsageError
from .common import JsonOpt, app, model_argument, user_errors


def _describe_entry(entry, as_json: bool) -> None:
    """A registry entry not downloaded: what the registry knows, and how to fetch it."""
    doc = {"name": entry.name, "file": entry.filename, "url": entry.url, "sha256": entry.sha256,
           "size_bytes": entry.size, "opset": entry.opset, "card_map": entry.card_map,
           "card_metric": entry.card_metric, "description": entry.description,
           "downloaded": False}
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{entry.name}: {entry.description} (registry entry, not downloaded)")
    for key in ("file", "url", "sha256", "size_bytes", "opset", "card_map", "card_metric"):
        print(f"{key + ':':12} {doc[key] if doc[key] is not None else '-'}")
    print(f"download and describe the file: singleshot info {entry.name} --download")


@app.command()
@user_errors
def models(as_json: JsonOpt = False) -> None:
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
    as_json: JsonOpt = False,
) -> None:
    """Download a zoo model into the cache ($SINGLESHOT_HOME, default ~/.cache/singleshot)."""
    from ...hub.download import ensure_model
    from ...hub.registry import get_entry

    entry = get_entry(name)
    if with_test_data and entry.url is None:  # before anything is printed or fetched
        raise UsageError(f"{name} is bundled and has no zoo archive of test data; "
                         "singleshot export --test-data N writes test sets for your own models")
    path = ensure_model(entry, force=force)
    folder = None
    if not as_json:
        print(path)
    if with_test_data:
        from ...hub.download import ensure_test_data

        folder = ensure_test_data(entry, force=force)
        if not as_json:
            print(f"{folder}  (check it here: singleshot verify {folder})")
    if as_json:
        print(json.dumps({"name": entry.name, "path": str(path),
                          "test_data": str(folder) if folder else None}))


@app.command()
@user_errors
def info(
    model_arg: Annotated[Optional[str], typer.Argument(metavar="MODEL", help="ONNX file or registry name (or -m/--model).", show_default=False)] = None,
    model_opt: Annotated[Optional[str], typer.Option("--model", "-m", help="The model, as an option (the same as MODEL).")] = None,
    as_json: JsonOpt = False,
    fetch: Annotated[bool, typer.Option("--download", help="A registry model not in the cache: download it and describe the file (otherwise the registry entry is described).")] = False,
) -> None:
    """Describe an ONNX model: I/O, opset, ops, metadata, contract, quantization. A registry
    name not downloaded yet is described from the registry (--download fetches it). Exit 2
    when the file is not a detector (after describing it)."""
    from ...graph.inspect import describe
    from ...hub.download import model_path
    from ...hub.registry import get_entry, is_registry_name
    from ...runtime.detector import resolve_model_path

    model = model_argument(model_arg, model_opt)
    if is_registry_name(model) and not Path(model).is_file() and not fetch and \
            not model_path(get_entry(model)).is_file():
        _describe_entry(get_entry(model), as_json)
        return
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
