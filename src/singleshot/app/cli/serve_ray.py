"""``singleshot serve --engine ray``: parse the Ray options, call
:mod:`singleshot.serve.ray_serve`, say where the application answers, and hold it until Ctrl-C
(or return at once with ``--detach``)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from ...errors import UsageError
from .common import _require_extra, flag


def _autoscale(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        low, high = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{{opt:autoscale}} must be MIN,MAX (two whole numbers), got "
                         f"{text!r}") from None
    if low < 1 or high < low:
        raise UsageError(f"{{opt:autoscale}} needs 1 <= MIN <= MAX, got {text!r}")
    return low, high


def serve_on_ray(config, given: set, *, host: str, port: int, grpc_port: int | None,
                 address, replicas, autoscale, cpus_per_worker, max_ongoing_requests,
                 target_ongoing_requests, upscale_delay_s, downscale_delay_s,
                 metrics_interval_s, detach: bool, stop, write_config, app_name: str,
                 proxy: str = "python") -> None:
    if stop is not None:
        extra = sorted(given - {"stop", "address", "engine"})
        if extra:
            raise UsageError(f"--stop takes only {{opt:address}}, not "
                             f"{', '.join(flag(e) for e in extra)}")
    if replicas is not None and autoscale is not None:
        raise UsageError("--replicas and --autoscale are two ways to say how many replicas: "
                         "give one")
    auto = _autoscale(autoscale)
    for opt in ("target_ongoing_requests", "upscale_delay_s", "downscale_delay_s",
                "metrics_interval_s"):
        if opt in given and auto is None:
            raise UsageError(f"{flag(opt)} goes with --autoscale MIN,MAX")
    if grpc_port == 0:
        raise UsageError("--grpc-port 0 (a free port) is local serve's; Ray's gRPC proxy "
                         "needs a fixed port on every node")
    if grpc_port is not None and grpc_port == port:
        raise UsageError(f"--grpc-port {grpc_port} is the HTTP --port too: choose another")
    from ...serve.ray_serve import Scaling

    scaling = Scaling(replicas=replicas, autoscale=auto,
                      cpus_per_worker=cpus_per_worker or 1.0,
                      max_ongoing_requests=max_ongoing_requests or 16,
                      target_ongoing_requests=target_ongoing_requests,
                      upscale_delay_s=upscale_delay_s, downscale_delay_s=downscale_delay_s,
                      metrics_interval_s=metrics_interval_s)
    _require_extra("ray.serve", "ray", "serve --engine ray")
    if write_config is not None:
        return _write_config(config, scaling, write_config, host=host, port=port,
                             grpc_port=grpc_port, name=app_name, detach=detach)
    from ...serve import ray_serve

    if stop is not None:
        ray_serve.stop(stop, address)
        print(f"stopped application {stop!r}")
        return
    try:
        deployed = ray_serve.run(config, scaling, address=address, host=host, port=port,
                                 grpc_port=grpc_port, name=app_name, require_lasting=detach,
                                 proxy=proxy)
    except KeyboardInterrupt:
        _shutdown(None, app_name)
        raise
    if not _answers(deployed.http):
        print(f"note: nothing answers at {deployed.http}: Serve on this cluster was started "
              "before with other --host/--port (it takes them once per cluster; `serve "
              "shutdown` and run again to change them)", file=sys.stderr)
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(deployed.replicas.items()))
    print(f"application {app_name!r} on Ray Serve ({counts or 'no'} replica(s); cluster "
          f"{deployed.address}):")
    print(f"  {deployed.http}/  (OIP v2 REST at /v2, POST /detect, the page at /, /metrics)")
    if deployed.grpc:
        print(f"  {deployed.grpc}  (gRPC inference.GRPCInferenceService; metadata "
              f"'application: {app_name}' where Serve runs other applications)")
    if detach:
        print(f"stop it: singleshot serve --engine ray --stop {app_name}"
              + (f" --address {address}" if address else ""))
        return
    # SIGTERM (a process manager, `kill`) ends a foreground run as Ctrl-C does; set after
    # ray.init, whose core worker installs a handler of its own that would kill the process
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print("Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _shutdown(deployed, app_name)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/v2/health/live", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # something of ours answers (an API key, a model still loading)
    except OSError:
        return False


def _shutdown(deployed, app_name: str) -> None:
    """The application goes with the command; a local instance started for it too."""
    import ray

    from ...serve import ray_serve

    if not ray.is_initialized():
        return
    try:
        if deployed is None or deployed.joined:
            if app_name in ray_serve.applications():
                ray_serve.delete(app_name)
        else:
            from ray import serve

            serve.shutdown()
            ray.shutdown()
    except Exception as err:  # noqa: BLE001 - the cluster went first: nothing left to stop
        print(f"note: stopping {app_name!r}: {str(err).splitlines()[0]}", file=sys.stderr)


def _write_config(config, scaling, path: Path, *, host: str, port: int, grpc_port, name: str,
                  detach: bool) -> None:
    import yaml

    from ...io.files import ensure_parent, write_text_atomic
    from ...io.guard import check_output_file
    from ...serve.ray_serve import check_model, config_document

    if detach:
        raise UsageError("--write-config writes a file and deploys nothing; --detach is for "
                         "a deployment")
    check_output_file(path, [config.model, config.model_repository], "write_config")
    doc = config_document(check_model(config), scaling, name=name, host=host, port=port,
                          grpc_port=grpc_port)
    ensure_parent(path, "write_config")
    write_text_atomic(path, yaml.safe_dump(doc, sort_keys=False))
    print(f"wrote {path}: serve deploy {path}  (or KubeRay's serveConfigV2)")
