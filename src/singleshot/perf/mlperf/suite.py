"""``singleshot mlperf`` as a library call: scenarios x modes, compliance tests, the folders.

Layouts (``out``):
- performance / accuracy: ``out/<Scenario>/<mode>/`` (LoadGen's logs; ``accuracy.txt``).
- submission: ``out/results/<system>/ssd-resnet34/<Scenario>/{performance/run_1,accuracy}/``,
  ``out/compliance/<system>/ssd-resnet34/<Scenario>/TEST0N/`` (the test's logs and
  ``verify.json``), ``out/measurements/<system>/ssd-resnet34/<Scenario>/{mlperf,user}.conf``
  (the settings used) and ``out/systems/<system>.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...io.files import write_json_atomic
from . import conf, harness

ACCURACY_TARGET = 0.198  # 99% of the reference's 0.20 mAP (zoo model, COCO val2017, 1200x1200)


def run_suite(detector, paths: list[Path], gt, out: Path, *, scenarios: list[str], mode: str,
              values_of: Callable[[str], dict], compliance: list[str] = (),
              system: str = "singleshot", streams: int = 1, batch: int = 1,
              model_path: str | None = None, reference_map: float | None = None,
              note: Callable[[str], None] = lambda s: None, corrupt: bool = False) -> list[dict]:
    """Run ``mode`` (performance, accuracy or submission) for each scenario; returns the summary
    rows ``{"scenario", "mode", "result", "metric_name", "metric", "mAP", "meets_target",
    "compliance", "submission_grade", "out"}``."""
    out = Path(out)
    rows: list[dict] = []
    try:
        _run_all(detector, paths, gt, out, rows, scenarios=scenarios, mode=mode,
                 values_of=values_of, compliance=compliance, system=system, streams=streams,
                 batch=batch, reference_map=reference_map, note=note, corrupt=corrupt)
    except KeyboardInterrupt as err:  # the finished runs' logs stay; the summary says it was cut
        out.mkdir(parents=True, exist_ok=True)
        cut = str(err.out) if isinstance(err, harness.Interrupted) else None
        write_json_atomic(out / "summary.json", {"rows": rows, "interrupted": True,
                                                 "cut_run": cut})
        raise
    if mode == "submission":
        (out / "systems").mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "systems" / f"{system}.json",
                          harness.system_description(detector, model_path, system))
    write_json_atomic(out / "summary.json", {"rows": rows, "interrupted": False,
                                             "cut_run": None})
    return rows


def _run_all(detector, paths, gt, out: Path, rows: list[dict], *, scenarios, mode, values_of,
             compliance, system, streams, batch, reference_map, note, corrupt) -> None:
    """The runs of :func:`run_suite`, each row appended to ``rows`` as it finishes."""
    ms = None
    for scenario in scenarios:
        values = values_of(scenario)
        if ms is None and any(k not in values for k in ("target_latency", "target_qps")):
            ms = harness.calibrate(detector, paths)
        for n in harness.fill_expectations(values, scenario, ms or 0.0, streams):
            note(n)

        def one(run_mode, where, audit=None, bad=False):
            return harness.run(detector, paths, scenario, run_mode, where, values, streams=streams,
                               batch=batch, audit=audit, gt=gt, corrupt=bad)

        if mode != "submission":
            r = one(mode, out / scenario / mode)
            rows.append(_row(r, reference_map))
            continue
        base = out / "results" / system / conf.MODEL / scenario
        acc = one("accuracy", base / "accuracy")
        perf = one("performance", base / "performance" / "run_1")
        checks = {}
        for test in compliance:
            where = out / "compliance" / system / conf.MODEL / scenario / test
            audited = one("performance", where, audit=test, bad=corrupt)
            if test == "TEST01":
                verdict = harness.verify_test01(Path(acc["out"]) / "mlperf_log_accuracy.json",
                                                where / "mlperf_log_accuracy.json")
            else:
                verdict = harness.verify_margin(test, scenario, perf["metric"] or 0.0,
                                                audited["metric"] or 0.0)
            write_json_atomic(where / "verify.json", verdict)
            checks[test] = "PASS" if verdict["passed"] else "FAIL"
        measurements = out / "measurements" / system / conf.MODEL / scenario
        measurements.mkdir(parents=True, exist_ok=True)
        (measurements / "mlperf.conf").write_text(
            "".join(f"{conf.MODEL}.{scenario}.{k} = {v}\n" for k, v in sorted(values.items())))
        row = _row(perf, reference_map)
        row.update(mode="submission", mAP=acc["accuracy"]["mAP"],
                   meets_target=_meets(acc["accuracy"]["mAP"], reference_map),
                   compliance=checks)
        rows.append(row)


def _meets(ap: float | None, reference: float | None) -> bool | None:
    return None if ap is None or reference is None else ap >= 0.99 * reference


def _row(r: dict, reference_map: float | None) -> dict:
    ap = r.get("accuracy", {}).get("mAP")
    return {"scenario": r["scenario"], "mode": r["mode"],
            "result": "-" if r["valid"] is None else ("VALID" if r["valid"] else "INVALID"),
            "metric_name": r["metric_name"], "metric": r["metric"], "mAP": ap,
            "meets_target": _meets(ap, reference_map), "compliance": {},
            "reasons": r["reasons"] if r["valid"] is False else [],
            "over_target": r["over_target"],
            "submission_grade": r["submission_grade"], "out": r["out"]}


def summary_table(rows: list[dict]) -> str:
    """The Markdown summary: scenario, mode, result, metric, mAP, target, compliance."""
    from ...io.tables import markdown_table

    def metric(r):
        if r["metric"] is None:
            return "-"
        if "latency" in r["metric_name"]:
            return f"{r['metric'] / 1e6:.2f} ms ({r['metric_name'].split(' ')[0]})"
        return f"{r['metric']:.2f} samples/s"

    def result(r):
        flags = [f for f, on in (("short", not r["submission_grade"] and r["result"] != "-"),
                                 ("over target", r.get("over_target"))) if on]
        return r["result"] + (f" ({', '.join(flags)})" if flags else "")

    cells = [[r["scenario"], r["mode"], result(r),
              metric(r), "-" if r["mAP"] is None else f"{r['mAP']:.4f}",
              "-" if r["meets_target"] is None else ("yes" if r["meets_target"] else "no"),
              ", ".join(f"{k} {v}" for k, v in r["compliance"].items()) or "-"] for r in rows]
    table = markdown_table(["scenario", "mode", "result", "metric", "mAP", "meets 99% target",
                            "compliance"], cells)
    why = [f"{r['scenario']} INVALID (LoadGen): {'; '.join(r['reasons'])}" for r in rows
           if r["result"] == "INVALID" and r["reasons"]]
    why += [r["over_target"] for r in rows if r.get("over_target")]
    return table.rstrip("\n") + "\n" + "".join(f"{w}\n" for w in why)
