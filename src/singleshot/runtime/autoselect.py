"""``--backend auto`` by measurement: the installed backends (and OpenVINO's precisions) are
timed on the model itself, once per model file and CPU, and the pick is cached under
``$SINGLESHOT_HOME/auto-backend.json``.

Candidates, in today's order of preference: OpenVINO with its default precision (bf16 where the
CPU has it), OpenVINO fp32 (only where that default is bf16), onnxruntime. Each runs one warm-up
and then as many timed inferences as a 10 s budget allows (at least one). A candidate within 10%
of the fastest keeps its place in that order, so run-to-run noise cannot flip the pick.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..progress import Progress, resolve

NEAR = 1.10  # within 10% of the fastest counts as a tie
BUDGET_S = 10.0


def candidates(precision: str, openvino: bool, bf16: bool) -> list[tuple[str, str]]:
    """(backend, precision) pairs to time, in order of preference."""
    out = []
    if openvino and precision in ("auto", "bf16"):
        out.append(("openvino", "auto" if precision == "auto" else "bf16"))
    if openvino and (precision == "fp32" or (precision == "auto" and bf16)):
        out.append(("openvino", "fp32"))
    if precision != "bf16":
        out.append(("onnxruntime", "fp32"))
    return out


def choose(times_ms: list[float]) -> int:
    """Index of the pick: the first candidate within 10% of the fastest."""
    best = min(times_ms)
    return next(i for i, t in enumerate(times_ms) if t <= best * NEAR)


def _cache_file() -> Path:
    from ..hub.download import cache_dir

    return cache_dir() / "auto-backend.json"


def cache_key(model_digest: str, precision: str, preprocess: str) -> str:
    """Model file, CPU, request and runtime versions: a pick holds while none of them changes."""
    from importlib.metadata import PackageNotFoundError, version

    from .cpu import cpu_fingerprint

    versions = []
    for package in ("onnxruntime", "openvino"):
        try:
            versions.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            pass
    return f"{model_digest}:{cpu_fingerprint()}:{precision}:{preprocess}:{','.join(versions)}"


def auto_backend(model, build, *, precision: str = "auto", preprocess: str = "card",
                 progress: Progress | None = None, budget_s: float = BUDGET_S) -> tuple[str, str]:
    """(backend, precision) to run ``model`` (a path or ModelProto) with here: from the cache,
    else measured and cached. ``build(backend, precision)`` makes the Detector to time. The pick
    and why go to ``progress.note``."""
    import onnx

    from ..hub.download import sha256_file
    from .backends import openvino_available
    from .cpu import cpu_info

    progress = resolve(progress)
    cands = candidates(precision, openvino_available(), cpu_info()["bf16"])
    if len(cands) == 1:  # nothing to choose between
        return cands[0]
    if isinstance(model, onnx.ModelProto):
        digest = hashlib.sha256(model.SerializeToString()).hexdigest()
    else:
        digest = sha256_file(Path(model))
    key = cache_key(digest, precision, preprocess)
    path = _cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        hit = cache[key]
        progress.note(f"backend auto: {hit['backend']} ({hit['precision']}), measured before on "
                      f"this CPU ({hit['why']}; cached in {path})")
        return hit["backend"], hit["precision"]
    times, labels = [], []
    per = budget_s / len(cands)
    for backend, prec in cands:
        times.append(_time(build(backend, prec), per))
    k = choose(times)
    for (backend, prec), t in zip(cands, times):
        labels.append(f"{backend} {prec} {t:.1f} ms")
    why = ", ".join(labels) + " per inference" + \
        (" (within 10% keeps the preferred order)" if times[k] != min(times) else "")
    cache[key] = {"backend": cands[k][0], "precision": cands[k][1], "why": why,
                  "times_ms": times}
    from ..io.files import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, cache)
    progress.note(f"backend auto: {cands[k][0]} ({cands[k][1]}) - measured {why}")
    return cands[k]


def _time(det, budget_s: float) -> float:
    """Median ms of ``det``'s backend call on a mid-grey image, within ``budget_s`` (at least
    one)."""
    h, w = det.spec.input_size
    x = det.preprocess(np.full((h, w, 3), 114, np.uint8))
    feeds = det.postprocessor.feeds(det.params, None)
    t0 = time.perf_counter()
    det.backend.run(x, feeds)  # warm-up
    ms: list[float] = []
    while not ms or (time.perf_counter() - t0 < budget_s and len(ms) < 20):
        a = time.perf_counter()
        det.backend.run(x, feeds)
        ms.append((time.perf_counter() - a) * 1e3)
    return float(np.median(ms))
