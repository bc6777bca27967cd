"""A closed-loop HTTP load generator for ``singleshot bench --server URL``: ``clients`` threads,
each sending the next request as soon as its last one is answered (keep-alive connections), real
image bodies, for a fixed number of requests or a duration; throughput, latency percentiles and
errors by status. ``/v2/health/ready`` is polled during the run where the server has it."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from ..errors import UsageError


def load_test(url: str, bodies: list[bytes], *, clients: int = 16, requests: int | None = None,
              duration: float | None = None, path: str = "/detect",
              content_type: str = "image/jpeg", api_key: str | None = None) -> dict:
    """Run the load; returns ``{"url", "clients", "requests", "ok", "errors", "status",
    "seconds", "throughput_rps", "latency_ms": {"p50", "p90", "p99"}, "ready": {"checks",
    "ok"}}``. Throughput and latency count answered requests (200) only; ``status`` counts
    every answer by its code, ``"connection error"`` for none. UsageError when nothing answers
    at ``url`` before the load starts."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"{{opt:server}} must be an http://host:port address, got {url!r}")
    if clients < 1 or (requests is None and duration is None):
        raise UsageError("give a number of requests or a duration, and at least one client")
    host, port = parts.hostname, parts.port or 80
    try:  # a dead address is the user's mistake, not a load test of 100% errors
        with socket.create_connection((host, port), timeout=10):
            pass
    except OSError as err:
        raise UsageError(f"{{opt:server}} {url}: nothing answers there "
                         f"({err.strerror or err})") from None
    headers = {"Content-Type": content_type}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    lock, counter = threading.Lock(), [0]
    lat: list[list[float]] = [[] for _ in range(clients)]
    status: dict[int, int] = {}
    stop = threading.Event()
    deadline = time.perf_counter() + duration if duration else None

    def take() -> int | None:
        with lock:
            if (requests is not None and counter[0] >= requests) or stop.is_set() or \
                    (deadline is not None and time.perf_counter() >= deadline):
                return None
            counter[0] += 1
            return counter[0] - 1

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=300)
        while (i := take()) is not None:
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                resp.read()
                code = resp.status
            except (OSError, http.client.HTTPException):
                code = 0  # connection error
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=300)
            if code == 200:
                lat[k].append((time.perf_counter() - t0) * 1e3)
            with lock:
                status[code] = status.get(code, 0) + 1
        conn.close()

    ready = {"checks": 0, "ok": 0}

    def poll() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while not stop.wait(0.5):
            try:
                conn.request("GET", "/v2/health/ready")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 404:
                    return  # not our server: nothing to poll
                ready["checks"] += 1
                ready["ok"] += resp.status == 200
            except (OSError, http.client.HTTPException):
                ready["checks"] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    poller = threading.Thread(target=poll, daemon=True)
    t0 = time.perf_counter()
    poller.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    stop.set()
    poller.join(timeout=5)
    all_ms = np.asarray([v for c in lat for v in c], np.float64)
    done, ok = int(sum(status.values())), status.get(200, 0)
    return {"url": url, "path": path, "clients": clients, "requests": done, "ok": ok,
            "errors": done - ok,
            "status": {("connection error" if k == 0 else str(k)): v for k, v in status.items()},
            "seconds": seconds, "throughput_rps": ok / seconds if seconds else 0.0,
            "latency_ms": {f"p{q}": float(np.percentile(all_ms, q)) if all_ms.size else None
                           for q in (50, 90, 99)},
            "ready": ready}
