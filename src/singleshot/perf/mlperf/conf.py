"""MLPerf's settings for ssd-resnet34: the shipped ``mlperf.conf`` (the v2.0 round's values), a
``user.conf`` on top, then the command line; turned into LoadGen's ``TestSettings`` explicitly
(a newer LoadGen's built-in configuration has no ssd-resnet34 entries).

Conf files are ``model.scenario.key = value`` lines (``*`` matches any model or scenario; a
named model or scenario wins over ``*``); times are milliseconds, percentiles 0..100. They are
read here rather than by ``TestSettings.FromConfig`` so that every value the run uses is known,
reported in the summary, and checked against ``mlperf_log_detail.txt`` by the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import UsageError

MODEL = "ssd-resnet34"
SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
KEYS = ("performance_sample_count_override", "qsl_rng_seed", "sample_index_rng_seed",
        "schedule_rng_seed", "target_latency_percentile", "min_duration", "min_query_count",
        "max_duration", "max_query_count", "samples_per_query", "target_latency", "target_qps")
# what --quick sets: seconds per run, not submission-grade; the query counts are the least
# LoadGen's early stopping accepts for the scenario's percentile (p90: 64, p99: 662)
QUICK = {"min_duration": 1000}
QUICK_QUERIES = {"SingleStream": 64, "MultiStream": 662, "Server": 662, "Offline": 1}


def shipped(name: str) -> Path:
    """A conf file shipped with the package (``mlperf.conf``, ``user.conf``)."""
    from importlib import resources

    return Path(str(resources.files("singleshot") / "assets" / name))


def read_conf(path: str | os.PathLike, scenario: str, option: str) -> dict[str, float]:
    """The values ``path`` gives ``ssd-resnet34`` in ``scenario``; UsageError (naming the line)
    for a missing file or a malformed line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{{opt:{option}}} {path}: cannot read "
                         f"({getattr(err, 'strerror', None) or err})") from None
    ranked: dict[str, tuple[int, float]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, eq, value = line.partition("=")
        parts = key.strip().split(".")
        if not eq or len(parts) != 3 or not value.strip():
            raise UsageError(f"{path}:{n}: expected 'model.scenario.key = value', got {line!r}")
        model, scen, name = parts
        try:  # integers exactly (64-bit seeds lose digits as floats)
            number = int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                raise UsageError(f"{path}:{n}: {name} must be a number, got "
                                 f"{value.strip()!r}") from None
        if model not in ("*", MODEL) or scen not in ("*", scenario) or name not in KEYS:
            continue  # other models, other scenarios, keys this harness does not set
        rank = (model == MODEL) * 2 + (scen == scenario)
        if name not in ranked or rank >= ranked[name][0]:
            ranked[name] = (rank, number)
    return {k: v for k, (_, v) in ranked.items()}


def effective(scenario: str, *, mlperf_conf=None, user_conf=None, overrides=None,
              quick: bool = False) -> dict:
    """Every value the run uses: mlperf.conf, user.conf, ``--quick``, then ``overrides``."""
    if scenario not in SCENARIOS:
        raise UsageError(f"{{opt:scenario}} must be one of {', '.join(SCENARIOS)} or all, "
                         f"got {scenario!r}")
    values = read_conf(mlperf_conf or shipped("mlperf.conf"), scenario, "mlperf_conf")
    if user_conf is not None:
        values.update(read_conf(user_conf, scenario, "user_conf"))
    if quick:
        values.update(QUICK, min_query_count=QUICK_QUERIES[scenario])
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return values


def submission_grade(values: dict, scenario: str) -> bool:
    """Whether the run meets the v2.0 minimums (duration and query count of the shipped conf)."""
    base = read_conf(shipped("mlperf.conf"), scenario, "mlperf_conf")
    return all(values.get(k, 0) >= base[k] for k in ("min_duration", "min_query_count"))


def test_settings(lg, scenario: str, mode: str, values: dict):
    """LoadGen ``TestSettings`` from ``values`` (see :func:`effective`); ``mode``: performance or
    accuracy."""
    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = lg.TestMode.AccuracyOnly if mode == "accuracy" else lg.TestMode.PerformanceOnly
    ms = 1_000_000  # ns per ms
    for key, attr in (("qsl_rng_seed", "qsl_rng_seed"),
                      ("sample_index_rng_seed", "sample_index_rng_seed"),
                      ("schedule_rng_seed", "schedule_rng_seed"),
                      ("min_query_count", "min_query_count"),
                      ("max_query_count", "max_query_count"),
                      ("performance_sample_count_override", "performance_sample_count_override")):
        if key in values:
            setattr(s, attr, int(values[key]))
    if "min_duration" in values:
        s.min_duration_ms = int(values["min_duration"])
    if "max_duration" in values:
        s.max_duration_ms = int(values["max_duration"])
    pct = values.get("target_latency_percentile")
    latency = values.get("target_latency")
    qps = values.get("target_qps")
    if scenario == "SingleStream":
        if pct is not None:
            s.single_stream_target_latency_percentile = pct / 100
        if latency is not None:
            s.single_stream_expected_latency_ns = int(latency * ms)
    elif scenario == "MultiStream":
        if pct is not None:
            s.multi_stream_target_latency_percentile = pct / 100
        if "samples_per_query" in values:
            s.multi_stream_samples_per_query = int(values["samples_per_query"])
        if latency is not None:
            s.multi_stream_expected_latency_ns = int(latency * ms)
    elif scenario == "Server":
        if pct is not None:
            s.server_target_latency_percentile = pct / 100
        if latency is not None:
            s.server_target_latency_ns = int(latency * ms)
        if qps is not None:
            s.server_target_qps = float(qps)
    elif qps is not None:
        s.offline_expected_qps = float(qps)
    return s
