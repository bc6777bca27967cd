"""The Ray Data pipeline both cluster jobs run: inputs listed on the driver, URLs' bytes read in
tasks, decoding and detection in a pool of actors that each build their Detector once, results
streamed back to the driver as they finish (in any order).

    driver: [{"index", "source"}] -> read tasks (num_cpus=0; URLs only) -> {"data" | "error"}
        -> actors (num_cpus=C, intra-op threads C) -> {"index", "entry" (JSON), "pid", ...}

Where decoding runs: inside the actors, overlapped with inference by the same pipeline a local
run uses (:func:`singleshot.runtime.report.detect_paths`), with two calls in flight per actor
(three for actors of 2+ CPUs) so the next call's decoding overlaps this one's inference. The
read tasks only move bytes - they ask for no CPU, so they are scheduled even when the actors
hold every core - and compressed bytes, not decoded 4 MB arrays, cross the object store. Local
paths (one machine, or a file system every node mounts) are read by the actors themselves: a
read task per path costs the demo model 15-35% of its throughput on 2 cores (measured,
bench/RESULTS.md) for nothing gained.

Why not Ray's defaults: workers get ``OMP_NUM_THREADS=1``; onnxruntime's intra-op threads are
set from the actor's CPUs instead (explicitly, and the variable in the actors' environment). A
dead actor is restarted and its batches retried (Ray Data's actor pools default to
``max_restarts=-1`` and ``max_task_retries=-1``; tests kill one), and the driver writes each
input once whatever a retry returns (:class:`~singleshot.io.journal.Journal`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..core.limits import check_all
from ..errors import UsageError
from ..io.fetch import is_url, read_source
from ..io.images import load_image


@dataclass
class RayOptions:
    """``address``: a cluster's address, ``auto`` (the running one), or None: ``auto`` when one
    is running, else a local instance for this run. ``workers`` actors of ``cpus_per_worker``
    CPUs each (None: see :func:`plan_workers`); ``batch``: images per
    backend call, as ``--batch`` of a local run."""

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float | None = None
    batch: int = 1
    timings: dict = field(default_factory=dict)
    runtime_env: dict | None = None  # for a local instance started here only

    def check(self) -> None:
        """The ranges of :mod:`singleshot.core.limits` (RangeError naming the parameter)."""
        check_all(workers=self.workers, cpus_per_worker=self.cpus_per_worker, batch=self.batch)


def require_ray():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'singleshot[ray]'") from None
    return ray


def connect(opts: RayOptions) -> bool:
    """Join the cluster ``opts`` names (or start a local one, or use the one this process
    runs); the time it took goes to ``opts.timings["cluster_start_s"]``. True when the cluster
    outlives this process (joined by address, or already running here), False for a local
    instance started for this run."""
    ray = require_ray()
    t0 = time.perf_counter()
    for name in ("ray", "ray.data"):  # its notes would drown the run's own output
        logging.getLogger(name).setLevel(logging.ERROR)
    # the core worker's C++ log (e.g. a note on every actor pool) goes to this process's stderr
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    joined = True
    if not ray.is_initialized():
        address = opts.address
        if address is None:
            address = "auto" if _cluster_running() else None
        joined = address is not None
        if address and address != "auto":
            _reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=False,
                     runtime_env=None if joined else opts.runtime_env)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise UsageError(f"cannot join the Ray cluster at {address}: "
                             f"{str(err).splitlines()[0]}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.execution_options.preserve_order = False  # results stream back as they finish
    opts.timings["cluster_start_s"] = time.perf_counter() - t0
    return joined


def _reachable(address: str) -> None:
    """Fail in seconds, in one line, where ray.init would wait minutes on an address nothing
    answers at."""
    import socket

    hostport = address.split("://")[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"{{opt:address}} must be HOST:PORT (or auto), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise UsageError(f"cannot reach a Ray cluster at {address} ({err.strerror or err}); "
                         "start one with `ray start --head`, or leave out {opt:address}") from None


def _cluster_running() -> bool:
    """A cluster started with ``ray start`` on this machine (or RAY_ADDRESS) is there to join."""
    if os.environ.get("RAY_ADDRESS"):
        return True
    try:
        from ray._private.services import find_gcs_addresses
        return bool(find_gcs_addresses())
    except Exception:  # noqa: BLE001 - private API moved: start a local instance instead
        return False


def _read(batch: dict) -> dict:
    """Read task: each URL's bytes, or the one-line error a local run would give; local paths
    are left to the actor (empty data, no error)."""
    data, errors = [], []
    for src in batch["source"]:
        if not is_url(str(src)):
            data.append(b"")
            errors.append("")
            continue
        try:
            data.append(read_source(str(src)))
            errors.append("")
        except Exception as err:  # noqa: BLE001 - any read failure is that input's error entry
            data.append(b"")
            errors.append(str(err))
    return {**batch, "data": data, "error": errors}


class _Worker:
    """Base of the actors: the detector built once, from the model's bytes (written to a
    local file where the driver's path does not exist on this node)."""

    def __init__(self, model_path: str, model_ref, detector_kwargs: dict, threads: int) -> None:
        from ..runtime.detector import Detector

        t0 = time.perf_counter()
        path = Path(model_path)
        if not path.is_file():
            import ray

            path = Path(os.environ.get("TMPDIR", "/tmp")) / "singleshot-models" / path.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(ray.get(model_ref))
        self.detector = Detector(str(path), threads=threads, **detector_kwargs)
        self.pid = os.getpid()
        self.load_s = time.perf_counter() - t0
        self.reported = False

    def decoder(self, batch: dict, name_of, **image_kwargs):
        """source -> RGB, raising the read task's error for an input that could not be read."""
        from ..errors import ImageError

        n = len(batch["source"])
        by_source = {str(s): (bytes(d), str(e)) for s, d, e in
                     zip(batch["source"], batch.get("data", [b""] * n),
                         batch.get("error", [""] * n))}

        def load(source: str):
            data, error = by_source[source]
            if error:
                raise ImageError(error)
            # a local path is read here (an empty file read elsewhere would carry an error)
            return load_image(data or source, name=name_of(source), **image_kwargs)
        return load

    def rows(self, indices, entries: list[dict], started: float) -> dict:
        load_s = [0.0] * len(entries)
        if entries and not self.reported:
            load_s[0], self.reported = self.load_s, True  # model load reported once per actor
        return {"index": list(indices), "entry": [json.dumps(e) for e in entries],
                "pid": [self.pid] * len(entries), "load_s": load_s,
                "started": [started] * len(entries)}


def plan_workers(workers: int | None, cpus: float | None,
                 node_cpus: list[float]) -> tuple[int, float]:
    """(actors, CPUs each) for a cluster whose nodes have ``node_cpus``. An actor lives on one
    node, so by default it gets the smallest node's CPUs (one actor per node of the usual
    uniform cluster) and there are as many as fit; given ``workers`` alone, the cluster's CPUs
    are split among them (never more than a node has). UsageError for a plan that cannot run."""
    node_cpus = [c for c in node_cpus if c > 0] or [1.0]
    total = sum(node_cpus)
    if cpus is None:
        cpus = min(node_cpus) if workers is None else \
            max(1.0, min(max(node_cpus), float(total // workers)))
    if cpus > max(node_cpus):
        raise UsageError(f"{{opt:cpus-per-worker}} {cpus:g} is more than any node has "
                         f"({max(node_cpus):g})")
    fit = sum(int(c // cpus) for c in node_cpus)
    workers = workers or max(1, fit)
    if workers > fit:
        raise UsageError(f"{workers} worker(s) of {cpus:g} CPU(s) do not fit on the cluster's "
                         f"nodes ({', '.join(f'{c:g}' for c in node_cpus)} CPUs); lower "
                         "{opt:workers} or {opt:cpus-per-worker}")
    return workers, cpus


def actor_map(items: list[dict], worker: type, worker_kwargs: dict, detector,
              opts: RayOptions) -> Iterator[dict]:
    """Run ``items`` (``{"index", "source", ...}``) through read tasks and a pool of
    ``worker`` actors; yield ``{"index", "entry": dict, "pid", "load_s", "started"}`` per item
    as it finishes (``started``: wall-clock time its actor call began). ``detector``: the
    driver's (its model file and settings are shipped)."""
    import ray

    workers, cpus = plan_workers(opts.workers, opts.cpus_per_worker, [
        float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")])
    opts.workers, opts.cpus_per_worker = workers, cpus
    threads = max(1, int(cpus))
    model_ref = ray.put(Path(detector.name).read_bytes())
    settings = {"conf": None, "iou": None, "max_det": None, "exif": detector.exif,
                "backend": detector.backend.name, "precision": detector.backend.precision,
                "preprocess": detector.preprocess_mode, "agnostic": detector.params.agnostic}
    p, g = detector.params, detector.graph_params
    if g is None or (p.score_threshold, p.iou_threshold, p.max_det) != \
            (g.score_threshold, g.iou_threshold, g.max_det):
        settings.update(conf=p.score_threshold, iou=p.iou_threshold, max_det=p.max_det)
    # images per actor call: enough for every actor to have 16 calls (a smooth stream, little
    # redone when one dies), at most 32 (Ray's per-call overhead is ~ms), whole backend batches
    per_call = min(32, max(1, -(-len(items) // (opts.workers * 16))))
    per_call = -(-per_call // opts.batch) * opts.batch
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // per_call)))
    if any(is_url(item["source"]) for item in items):
        # zero-CPU read tasks, as many at a time as there are actors: unbounded, Ray would start
        # a worker process per task (dozens on 2 cores, measured) and starve the actors
        ds = ds.map_batches(_read, num_cpus=0, batch_size=per_call,
                            compute=ray.data.TaskPoolStrategy(size=opts.workers))
    ds = ds.map_batches(
        worker, batch_size=per_call, num_cpus=cpus,
        # calls in flight per actor: decoding the next while this one infers; a third helps a
        # 2-CPU actor keep both cores busy, a 1-CPU actor only oversubscribes (measured)
        compute=ray.data.ActorPoolStrategy(size=opts.workers,
                                           max_concurrent_calls_per_actor=3 if cpus >= 2 else 2),
        fn_constructor_kwargs={"model_path": detector.name, "model_ref": model_ref,
                               "detector_kwargs": settings, "threads": threads,
                               "batch": opts.batch, **worker_kwargs},
        runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}})
    # whole blocks as numpy columns: a dict per row from Ray costs the driver more than the
    # result itself when images take milliseconds
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for k in range(len(batch["index"])):
            yield {"index": int(batch["index"][k]), "entry": json.loads(batch["entry"][k]),
                   "pid": int(batch["pid"][k]), "load_s": float(batch["load_s"][k]),
                   "started": float(batch["started"][k])}
