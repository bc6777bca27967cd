"""Accuracy-aware int8 quantization: quantize, measure COCO mAP against fp32, and while the drop
is larger than allowed, move the most sensitive convolutions back to float, trial by trial.

Sensitivity (why not onnxruntime's ``qdq_loss_debug`` as is: it matches tensors by the names
of inserted Q/DQ nodes, and our recipe leaves conv outputs unquantized, so the conv outputs it
would need are not among its pairs): every quantized Conv's output is read from the float model
and from the QDQ model on a few evaluation images. The noise-to-signal ratio of a conv output,
``sum((q - f)^2) / sum(f^2)``, holds the error that conv adds (int8 weights and int8 input) plus
what flows in from above; subtracting the largest ratio among the convs that feed it leaves the
error it adds itself, and convs are ranked by that.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import UsageError
from ..graph.edit import tensor_producers
from ..io.files import atomic_path, write_json_atomic
from ..io.tables import markdown_table
from ..progress import Progress, resolve
from .static import Recipe, prepare_float_model, quantize_model


@dataclass(frozen=True)
class DropTarget:
    """Allowed mAP drop: ``relative`` (a fraction of the fp32 mAP, from ``"1%"``) or absolute
    (mAP points, from ``"0.01"``)."""

    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> "DropTarget":
        t = str(text).strip()
        rel = t.endswith("%")
        try:
            v = float(t[:-1]) / 100 if rel else float(t)
        except ValueError:
            raise UsageError(f"{{opt:max_drop}} must look like 1% (relative) or 0.01 (absolute mAP), "
                             f"got {text!r}") from None
        if not 0 <= v < 1:
            raise UsageError(f"{{opt:max_drop}} must be from 0 to below 100% (or 1.0), got {text!r}")
        return cls(v, rel)

    def allows(self, fp32_ap: float, ap: float) -> bool:
        drop = fp32_ap - ap
        limit = self.value * fp32_ap if self.relative else self.value
        return drop <= limit + 1e-9

    def describe(self) -> str:
        return (f"{self.value * 100:g}% relative" if self.relative
                else f"{self.value:g} mAP absolute")


def float_counts(n: int) -> list[int]:
    """How many of the ``n`` ranked convs each trial keeps in float: 1, 2, 4, ... below n."""
    counts, k = [], 1
    while k < n:
        counts.append(k)
        k *= 2
    return counts


def _conv_sources(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Conv node name -> names of the nearest Conv nodes upstream of its data input."""
    producer = tensor_producers(model)
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        found, seen, stack = [], set(), [node.input[0]]
        while stack:
            p = producer.get(stack.pop())
            if p is None or p.name in seen:
                continue
            seen.add(p.name)
            if p.op_type == "Conv":
                found.append(p.name)
            else:
                stack.extend(i for i in p.input if i)
        out[node.name] = found
    return out


def conv_sensitivity(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto,
                     inputs: list[np.ndarray], input_name: str) -> list[dict]:
    """Rank the quantized convs of ``qdq_model`` by the error each adds (module docstring).

    ``float_model`` must have the node names the quantizer saw (``name_nodes``). Returns
    ``[{"node", "error", "local"}]``, most sensitive first; ``error`` is the noise-to-signal ratio
    of the conv's output in the int8 model, ``local`` the part it adds itself."""
    from ..graph.edit import with_outputs
    from ..runtime.session import make_session

    dq_outputs = {o for n in qdq_model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = {n.name: n.output[0] for n in qdq_model.graph.node
                 if n.op_type == "Conv" and n.input[0] in dq_outputs}
    float_convs = {n.name: n.output[0] for n in float_model.graph.node if n.op_type == "Conv"}
    # The quantizer may fold the Relu after a conv into the quantization and give the conv the
    # Relu's output name: the values are still the conv's, so convs are matched by node name.
    names = [n for n in float_convs if n in quantized]
    if not names:
        return []
    ftensors = tuple(float_convs[n] for n in names)
    qtensors = tuple(quantized[n] for n in names)
    noise, signal = np.zeros(len(names)), np.zeros(len(names))
    fsess = make_session(with_outputs(float_model, ftensors))
    qsess = make_session(with_outputs(qdq_model, tuple(t for t in qtensors if t not in
                                                      {o.name for o in qdq_model.graph.output})))
    for x in inputs:
        f = fsess.run(list(ftensors), {input_name: x})
        q = qsess.run(list(qtensors), {input_name: x})
        for i, (a, b) in enumerate(zip(f, q)):
            noise[i] += float(np.square(b.astype(np.float64) - a).sum())
            signal[i] += float(np.square(a.astype(np.float64)).sum())
    error = dict(zip(names, noise / np.maximum(signal, 1e-30)))
    sources = _conv_sources(float_model)
    ranked = [{"node": n, "error": error[n],
               "local": error[n] - max((error.get(s, 0.0) for s in sources.get(n, [])), default=0.0)}
              for n in names]
    return sorted(ranked, key=lambda r: -r["local"])


def report_path(out: str | os.PathLike) -> Path:
    """``OUT.onnx`` -> ``OUT.report.json``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".onnx") + ".report.json")


class _Evaluator:
    """COCO mAP and mean inference time of a model over the evaluation set."""

    def __init__(self, images: Path, annotations: Path, work: Path, limit: int | None) -> None:
        from ..eval.annotations import load_annotations

        if not Path(images).is_dir():
            raise UsageError(f"{images}: no such folder of evaluation images")
        self.gt = load_annotations(annotations)
        self.images, self.work, self.limit, self.n = Path(images), work, limit, 0
        self.failures: list[tuple[str, str]] = []

    def __call__(self, model_path: Path) -> tuple[float, float | None]:
        from ..eval.runner import run_detection
        from ..runtime.detector import Detector

        self.n += 1
        run = run_detection(Detector(model_path, exif=False), self.gt, self.images,
                            self.work / f"eval{self.n}", name=model_path.stem,
                            limit=self.limit)
        if not run.done_ids:
            raise UsageError(f"{self.images}: none of the evaluation images could be read")
        self.failures = run.failures
        return run.evaluator(self.gt).evaluate().metrics["AP"], run.inference_ms

    def tensors(self, spec, k: int) -> list[np.ndarray]:
        """The first ``k`` readable evaluation images, preprocessed for ``spec``."""
        from ..eval.runner import select_images
        from ..io.images import load_image
        from ..runtime.preprocess import preprocess

        out = []
        for im in select_images(self.gt, limit=self.limit):
            if len(out) == k:
                break
            try:
                out.append(preprocess(load_image(self.images / im["file_name"], exif=False), spec))
            except Exception:  # noqa: BLE001 - unreadable images are reported by the mAP pass
                continue
        return out


def quantize_accuracy_aware(model: str | os.PathLike, out: str | os.PathLike,
                            calib_dir: str | os.PathLike, recipe: Recipe, *,
                            eval_images: str | os.PathLike, eval_annotations: str | os.PathLike,
                            target: DropTarget, max_trials: int = 6, limit: int | None = None,
                            sensitivity_images: int = 8, progress: Progress | None = None) -> dict:
    """Quantize ``model`` into ``out`` keeping its mAP within ``target`` of fp32.

    Trial 0 quantizes every conv; each later trial keeps the 1, 2, 4, ... most sensitive convs in
    float; the first trial within the target is written to ``out``. When none is (after
    ``max_trials``), the most accurate one is written and the report says ``met_target: false``.
    ``OUT.report.json`` records fp32, every trial (float convs, mAP, drop, inference ms) and the
    sensitivity ranking. Returns the report."""
    from ..graph.contract import graph_io, load_model, read_spec

    if max_trials < 0:
        raise UsageError("{opt:max_trials} must be at least 0")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    progress = resolve(progress)
    quiet = Progress()  # calibration notes are shown once, by trial 0
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp_s:
        tmp = Path(tmp_s)
        ev = _Evaluator(Path(eval_images), Path(eval_annotations), tmp, limit)
        t0 = time.monotonic()
        fp32_ap, fp32_ms = ev(Path(model))
        for name, err in ev.failures:
            progress.note(f"evaluation image {name} skipped: {err}")
        progress.log(f"fp32: mAP {fp32_ap:.4f}, inference {fp32_ms:.2f} ms/img "
            f"({time.monotonic() - t0:.0f} s; target: drop at most {target.describe()})")
        trials: list[dict] = []
        ranking: list[dict] = []
        cache = tmp / "calibration.json"  # trial 0 calibrates, every later quantization reuses it

        def trial(float_nodes: list[str]) -> dict:
            k = len(trials)
            path = tmp / f"trial{k}.onnx"
            t = time.monotonic()
            quantize_model(model, path, calib_dir, recipe, exclude=set(float_nodes),
                           progress=progress if k == 0 else quiet, calibration_cache=cache)
            ap, ms = ev(path)
            row = {"trial": k, "float_nodes": float_nodes, "mAP": ap,
                   "drop_absolute": fp32_ap - ap,
                   "drop_relative": (fp32_ap - ap) / fp32_ap if fp32_ap > 0 else None,
                   "inference_ms": ms, "speedup": fp32_ms / ms if ms else None,
                   "within_target": target.allows(fp32_ap, ap),
                   "seconds": round(time.monotonic() - t, 1), "path": path}
            trials.append(row)
            rel = f" ({-row['drop_relative'] * 100:+.2f}%)" if row["drop_relative"] is not None else ""
            progress.log(f"trial {k}: {len(float_nodes)} conv(s) in float: mAP {ap:.4f}{rel}, "
                f"{ms:.2f} ms/img, {'within' if row['within_target'] else 'outside'} the target")
            return row

        row = trial([])
        if not row["within_target"] and max_trials:
            # rank on a QDQ model: its convs keep float outputs with the float model's names
            qdq_path = row["path"] if recipe.format == "qdq" else tmp / "rank-qdq.onnx"
            if recipe.format != "qdq":
                quantize_model(model, qdq_path, calib_dir, Recipe(**{**asdict(recipe), "format": "qdq"}),
                               progress=quiet, calibration_cache=cache)
            fmodel = prepare_float_model(load_model(model), recipe.opset)
            io = graph_io(fmodel, str(model))
            xs = ev.tensors(read_spec(fmodel, io), sensitivity_images)
            ranking = conv_sensitivity(fmodel, onnx.load(str(qdq_path)), xs, io.input)
            progress.log("most sensitive convs: " + ", ".join(
                f"{r['node']} ({r['local']:.2e})" for r in ranking[:5]))
            for k in float_counts(len(ranking))[:max_trials]:
                row = trial([r["node"] for r in ranking[:k]])
                if row["within_target"]:
                    break
        chosen = next((r for r in trials if r["within_target"]), None) or max(
            trials, key=lambda r: r["mAP"])
        with atomic_path(out) as tmp:
            shutil.copyfile(chosen["path"], tmp)
    report = {
        "model": str(model), "output": str(out), "recipe": asdict(recipe),
        "target": {"max_drop": target.value, "kind": "relative" if target.relative else "absolute"},
        "evaluation": {"images": str(eval_images), "annotations": str(eval_annotations),
                       "limit": limit, "failed_images": [n for n, _ in ev.failures]},
        "fp32": {"mAP": fp32_ap, "inference_ms": fp32_ms},
        "trials": [{k: v for k, v in r.items() if k != "path"} for r in trials],
        "chosen_trial": chosen["trial"], "met_target": chosen["within_target"],
        "sensitivity": ranking,
    }
    write_json_atomic(report_path(out), report)
    return report


def format_trials(report: dict) -> str:
    """The trials as a Markdown table (fp32 first)."""
    fp = report["fp32"]
    cells = [["fp32", "all", f"{fp['mAP']:.4f}", "-", f"{fp['inference_ms']:.2f}", "1.00x"]]
    for t in report["trials"]:
        cells.append([f"{t['trial']}" + (" (chosen)" if t["trial"] == report["chosen_trial"] else ""),
                      len(t["float_nodes"]), f"{t['mAP']:.4f}",
                      "-" if t["drop_relative"] is None else f"{-t['drop_relative'] * 100:+.2f}%",
                      f"{t['inference_ms']:.2f}", f"{t['speedup']:.2f}x"])
    return markdown_table(["trial", "convs in float", "mAP", "drop", "inference ms", "speed-up"],
                          cells)
