"""``singleshot verify``: run a model's recorded test sets (the ONNX Model Zoo layout:
``test_data_set_N/input_K.pb`` and ``output_K.pb``, ONNX TensorProto files) and compare.

Detector outputs are compared as detections - same label, box and score within tolerances, tie
order free; anything else elementwise. Default tolerances are what fp32 on another CPU needs;
int8 models, whose kernels round differently from CPU to CPU, get looser ones.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import DownloadError, UsageError

FP32_TOL = {"box": 1e-3, "score": 1e-3, "rtol": 1e-3, "atol": 1e-4}
INT8_TOL = {"box": 0.02, "score": 0.02, "rtol": 0.05, "atol": 0.02}
ARCHIVES = (".tar.gz", ".tgz", ".tar")


@dataclass
class Layout:
    model: Path
    sets: list[Path]


def find_layout(source: str | os.PathLike, workdir: Path) -> Layout:
    """The model file and its test sets, wherever they sit under ``source`` (an archive -
    extracted safely into ``workdir`` -, a folder, or an .onnx with the sets beside it)."""
    from ..hub.archive import safe_extract

    path = Path(source)
    if path.is_file() and path.name.endswith(ARCHIVES):
        try:
            path = safe_extract(path, workdir / "archive")
        except DownloadError as err:
            raise UsageError(str(err)) from None
    if path.is_file() and path.suffix == ".onnx":
        root, models = path.parent, [path]
    elif path.is_dir():
        root, models = path, sorted(path.rglob("*.onnx"))
    else:
        raise UsageError(f"{source}: no such archive, folder or .onnx file")
    if len(models) != 1:
        raise UsageError(f"{source}: {len(models)} .onnx files; expected exactly one model")
    found = root.glob("test_data_set_*") if path.is_file() else root.rglob("test_data_set_*")
    sets = sorted(p for p in found if p.is_dir())  # beside an .onnx: its own sets only
    if not sets:
        raise UsageError(f"{source}: no test_data_set_* folders to verify against")
    return Layout(models[0], sets)


def _tensors(folder: Path, kind: str) -> list[np.ndarray]:
    files = sorted(folder.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[-1]))
    out = []
    for f in files:
        try:
            out.append(numpy_helper.to_array(onnx.load_tensor(str(f))))
        except Exception as err:  # protobuf decode errors
            raise UsageError(f"{f}: not an ONNX tensor file ({type(err).__name__})") from None
    return out


def _match(got, ref, box_tol: float, score_tol: float) -> tuple[int, float, float, int | None]:
    """Greedy matching of detections (boxes [K,4], labels [K], scores [K]), tie order free:
    (matched, max box diff, max score diff of the matches, index of the first unmatched
    reference detection or None)."""
    (bg, lg, sg), (br, lr, sr) = got, ref
    used = np.zeros(len(sg), bool)
    matched, dbox, dscore, first = 0, 0.0, 0.0, None
    for i in range(len(sr)):
        ok = (~used) & (lg == lr[i]) & (np.abs(sg - sr[i]) <= score_tol) & \
             (np.abs(bg - br[i]).max(axis=1, initial=0) <= box_tol)
        hit = np.flatnonzero(ok)
        if hit.size:
            j = hit[0]
            used[j] = True
            matched += 1
            dbox = max(dbox, float(np.abs(bg[j] - br[i]).max()))
            dscore = max(dscore, float(abs(sg[j] - sr[i])))
        elif first is None:
            first = i
    return matched, dbox, dscore, first


def verify(source: str | os.PathLike, *, backend: str = "onnxruntime", precision: str = "auto",
           box_tol: float | None = None, score_tol: float | None = None,
           rtol: float | None = None, atol: float | None = None) -> dict:
    """Run every test set of ``source``; ``{"model", "backend", "precision", "cpu",
    "tolerances", "sets": [{"set", "passed", "detections", "matched", "max_box_diff",
    "max_score_diff", "problem"}], "passed"}``."""
    from ..graph.inspect import quantization_info
    from ..runtime.cpu import cpu_info
    from ..runtime.detector import Detector

    with tempfile.TemporaryDirectory(prefix="singleshot-verify-") as work:
        src = source
        if not Path(source).exists() and not str(source).endswith((".onnx", *ARCHIVES)):
            # a registry name: its zoo archive (model + test sets), downloaded when missing
            from ..hub.download import ensure_test_data
            from ..hub.registry import get_entry

            entry = get_entry(str(source))
            if entry.url is None:
                raise UsageError(f"{source} is bundled and has no recorded test data; "
                                 "singleshot export --test-data N writes test sets to verify")
            src = ensure_test_data(entry)
        layout = find_layout(src, Path(work))
        proto = onnx.load(str(layout.model))
        int8 = quantization_info(proto) is not None
        det = Detector(proto, backend=backend, precision=precision)
        reduced = int8 or det.backend.float_precision == "bf16"  # rounds otherwise than fp32
        tol = dict(INT8_TOL if reduced else FP32_TOL)
        for key, value in (("box", box_tol), ("score", score_tol), ("rtol", rtol), ("atol", atol)):
            if value is not None:
                tol[key] = value
        names = [o.name for o in proto.graph.output]
        report = {"model": str(layout.model), "backend": det.backend.name,
                  "precision": det.backend.precision, "cpu": cpu_info()["model"],
                  "int8": int8, "reduced_precision": reduced, "tolerances": tol, "sets": []}
        for folder in layout.sets:
            inputs, outputs = _tensors(folder, "input"), _tensors(folder, "output")
            entry = {"set": folder.name, "passed": False, "detections": 0, "matched": 0,
                     "max_box_diff": 0.0, "max_score_diff": 0.0, "problem": None}
            report["sets"].append(entry)
            if len(inputs) != 1 or len(outputs) != len(names):
                entry["problem"] = (f"{len(inputs)} input(s) and {len(outputs)} output(s); the "
                                    f"model takes 1 and gives {len(names)}")
                continue
            got = det.backend.run(inputs[0], det.postprocessor.feeds(det.graph_params or
                                                                     det.params, None))
            if det.io.contract in ("zoo", "zoo-batch"):
                _compare_detections(entry, got, outputs, det.io.contract, tol)
            else:
                worst = max(float(np.max(np.abs(g - r) - tol["rtol"] * np.abs(r)))
                            for g, r in zip(got, outputs))
                entry["max_score_diff"] = max(float(np.abs(g - r).max())
                                              for g, r in zip(got, outputs))
                if worst > tol["atol"]:
                    entry["problem"] = (f"outputs differ by {entry['max_score_diff']:.3g}, over "
                                        f"atol {tol['atol']:g} + rtol {tol['rtol']:g}")
            entry["passed"] = entry["problem"] is None
        report["passed"] = all(s["passed"] for s in report["sets"])
        return report


def _compare_detections(entry: dict, got: list, ref: list, contract: str, tol: dict) -> None:
    from ..graph.contract import per_image

    g_img, r_img = per_image(got, contract), per_image(ref, contract)
    for k, (g, r) in enumerate(zip(g_img, r_img)):
        matched, dbox, dscore, first = _match(g, r, tol["box"], tol["score"])
        entry["detections"] += len(r[2])
        entry["matched"] += matched
        entry["max_box_diff"] = max(entry["max_box_diff"], dbox)
        entry["max_score_diff"] = max(entry["max_score_diff"], dscore)
        if entry["problem"] is None and (first is not None or len(g[2]) != len(r[2])):
            what = (f"recorded detection {first} (label {int(r[1][first])}, score "
                    f"{float(r[2][first]):.4f}) has no match" if first is not None else
                    f"{len(g[2])} detections, {len(r[2])} recorded")
            entry["problem"] = f"image {k}: {what}" if contract == "zoo-batch" else what


def write_test_data(model_path: str | os.PathLike, n: int, seed: int = 0) -> list[Path]:
    """``n`` test sets beside ``model_path`` in the zoo's format: ``test_data_set_K/input_0.pb``
    (the card's preprocessing of a generated photo-like scene) and ``output_J.pb`` (the model's
    outputs on onnxruntime here), so the file can be verified on another machine."""
    from ..data.synth import make_scene
    from ..graph.contract import graph_io, read_spec
    from ..io.files import atomic_path
    from ..runtime.preprocess import preprocess
    from ..runtime.session import make_session

    model_path = Path(model_path)
    proto = onnx.load(str(model_path))
    io_ = graph_io(proto, str(model_path))
    spec = read_spec(proto, io_)
    session = make_session(proto)
    batch = io_.input_shape[0] if isinstance(io_.input_shape[0], int) else 1
    written = []
    for k in range(n):
        x = np.concatenate([preprocess(make_scene(seed + 7919 * k, j)[0], spec)
                            for j in range(batch)])
        outs = session.run(list(io_.outputs), {io_.input: x})
        folder = model_path.parent / f"test_data_set_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in [("input_0", x)] + [(f"output_{j}", o) for j, o in enumerate(outs)]:
            with atomic_path(folder / f"{name}.pb") as tmp:
                tmp.write_bytes(numpy_helper.from_array(np.asarray(arr)).SerializeToString())
        written.append(folder)
    return written
