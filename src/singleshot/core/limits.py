"""The range of every numeric parameter, declared once.

The command line declares each numeric option with :func:`singleshot.app.cli.common.ranged`,
which reads its range here, and the library checks the same table for Python callers
(``Detector(threads=0)`` is a :class:`RangeError` naming ``threads``, as ``--threads 0`` names
the option). A name means one thing everywhere it appears, so one entry serves every command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError


class RangeError(UsageError, ValueError):
    """A number outside its parameter's range (also a ValueError, for Python callers)."""


@dataclass(frozen=True)
class Range:
    """``lo`` <= value <= ``hi`` (``lo_open``: lo itself excluded); ``integer``: whole numbers
    only. Never NaN or infinite."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        lo = None if self.lo is None else (int(self.lo) if self.integer else self.lo)
        hi = None if self.hi is None else (int(self.hi) if self.integer else self.hi)
        if lo is not None and hi is not None:
            return f"{kind} from {lo}{' (excluded)' if self.lo_open else ''} to {hi}"
        if lo is not None:
            return f"{kind} {'above' if self.lo_open else 'of at least'} {lo}"
        return f"{kind} of at most {hi}" if hi is not None else kind

    def problem(self, value) -> str | None:
        """Why ``value`` is out of range, or None when it is fine."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) and \
                not hasattr(value, "__index__") and not hasattr(value, "__float__"):
            return f"must be {self.describe()}, got {value!r}"
        try:
            v = float(value)
        except (OverflowError, ValueError, TypeError):
            return f"must be {self.describe()}, got {value!r}"
        bad = (not math.isfinite(v) or (self.integer and v != int(v))
               or (self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo))
               or (self.hi is not None and v > self.hi))
        if isinstance(value, int) and not bad:  # floats lose precision past 2**53: compare ints
            bad = (self.hi is not None and value > self.hi) or \
                (self.lo is not None and value < self.lo)
        return f"must be {self.describe()}, got {value!r}" if bad else None


_INT = dict(integer=True)
_MANY = 10**9  # counts of things a run makes or reads: large, but an int64 everywhere

RANGES: dict[str, Range] = {
    # the detector and its runtime
    "threads": Range(1, 1024, **_INT),
    "streams": Range(1, 1024, **_INT),
    "batch": Range(1, 4096, **_INT),
    "conf": Range(0.0, 1.0),
    "iou": Range(0.0, 1.0),
    "max_det": Range(1, 1_000_000, **_INT),
    "max_pixels": Range(1, 1 << 40, **_INT),
    # datasets and runs
    "num_images": Range(1, _MANY, **_INT),
    "limit": Range(1, _MANY, **_INT),
    "eval_limit": Range(1, _MANY, **_INT),
    "seed": Range(0, 2**32 - 1, **_INT),
    "num_videos": Range(1, 100_000, **_INT),
    "num_frames": Range(1, 10_000_000, **_INT),
    "frame_width": Range(64, 8192, **_INT),
    "frame_height": Range(64, 8192, **_INT),
    "fps": Range(1, 1000, **_INT),
    # bench
    "iterations": Range(1, _MANY, **_INT),
    "warmup": Range(0, _MANY, **_INT),  # bench: untimed runs; train: warm-up steps
    "duration": Range(0.0, 7 * 86400.0, lo_open=True),
    "target_qps": Range(0.0, 1e7, lo_open=True),
    "clients": Range(1, 4096, **_INT),
    "requests": Range(1, _MANY, **_INT),
    "seconds": Range(0.0, 7 * 86400.0, lo_open=True),
    # the cluster
    "workers": Range(1, 100_000, **_INT),
    "cpus_per_worker": Range(0.0, 4096.0, lo_open=True),
    # export and quantize
    "opset": Range(7, 30, **_INT),
    "test_data": Range(0, 10_000, **_INT),
    "max_trials": Range(0, 1000, **_INT),
    # serve
    "port": Range(1, 65535, **_INT),
    "grpc_port": Range(0, 65535, **_INT),
    "poll_s": Range(0.0, 86_400.0, lo_open=True),
    "max_connections": Range(1, 1_000_000, **_INT),
    "timeout_s": Range(0.0, 86_400.0, lo_open=True),
    "max_body_mb": Range(0.0, 1e6, lo_open=True),
    "instances": Range(1, 1024, **_INT),
    "max_batch": Range(1, 4096, **_INT),
    "max_delay_ms": Range(0.0, 60_000.0),
    "max_queue": Range(1, _MANY, **_INT),
    "target_ongoing": Range(0.0, 1e6, lo_open=True),  # serve --engine ray --autoscale
    "delay_s": Range(0.0, 86_400.0),
    # train
    "width": Range(0.0, 16.0, lo_open=True),  # the channel multiplier
    "epochs": Range(1, 1_000_000, **_INT),
    "lr": Range(0.0, 100.0, lo_open=True),
    "weight_decay": Range(0.0, 1.0),
    "eval_every": Range(1, 1_000_000, **_INT),
    "loader_workers": Range(0, 1024, **_INT),
    "max_steps": Range(1, _MANY * 1000, **_INT),
    "nproc": Range(1, 1024, **_INT),  # data-parallel processes on this machine
    "dist_timeout_s": Range(1.0, 86_400.0),  # a collective's wait for a silent peer
    "log_every": Range(1, _MANY, **_INT),  # steps between progress lines in logs
    "val_images": Range(0, 64, **_INT),  # validation images drawn for TensorBoard/MLflow
    "report_worst": Range(0, 1000, **_INT),  # eval --report: the costliest images drawn
    # drawing (detect)
    "line_width": Range(1, 1000, **_INT),
    "font_size": Range(4, 2000, **_INT),
    # verify
    "box_tol": Range(0.0, 1e9),
    "score_tol": Range(0.0, 1e9),
    "rtol": Range(0.0, 1e9),
    "atol": Range(0.0, 1e9),
    # video
    "stride": Range(1, _MANY, **_INT),
    "start": Range(0.0, 1e9),
    "end": Range(0.0, 1e9, lo_open=True),
    "reconnect": Range(0, 1000, **_INT),
    # mlperf
    "performance_sample_count": Range(1, _MANY, **_INT),
    "target_latency_ms": Range(0.0, 1e7, lo_open=True),
    "min_duration_s": Range(0.0, 7 * 86400.0, lo_open=True),
    "min_query_count": Range(1, _MANY, **_INT),
}


def check(name: str, value):
    """``value`` when it is None or within the range of ``name``; else a RangeError naming
    ``{opt:name}``."""
    if value is None:
        return None
    problem = RANGES[name].problem(value)
    if problem:
        raise RangeError(f"{{opt:{name}}} {problem}")
    return value


def check_all(**values) -> None:
    """:func:`check` each keyword (its name is its key)."""
    for name, value in values.items():
        check(name, value)
