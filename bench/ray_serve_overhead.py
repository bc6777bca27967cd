"""What Ray Serve adds per request: `singleshot bench --server` against local `singleshot serve`
and against `singleshot serve --engine ray` (a local Ray instance started for each run), side by
side on this machine, servers one after the other, every configuration in each round.

    python bench/ray_serve_overhead.py MODEL IMAGES_DIR [--clients 16] [--requests 2000]
        [--seconds S] [--rounds 2] [--json OUT]

Configurations, sized alike: local with one instance of 2 threads vs one replica of 2 CPUs
(the proxy's cost, like for like; Ray Serve's Python proxy and its HAProxy ingress), local
defaults (2 instances x 1 thread) vs 2 replicas of 1 CPU. Prints a Markdown table; --json keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

EXE = str(Path(sys.executable).with_name("singleshot"))
CONFIGS = {
    "local, 1 instance x 2 threads": ["--instances", "1", "--threads", "2"],
    "ray, 1 replica x 2 CPUs": ["--engine", "ray", "--replicas", "1", "--cpus-per-worker", "2"],
    "ray, 1 replica x 2 CPUs, --proxy haproxy": ["--engine", "ray", "--replicas", "1",
                                                 "--cpus-per-worker", "2", "--proxy", "haproxy"],
    "local defaults (2 instances x 1 thread)": [],
    "ray, 2 replicas x 1 CPU": ["--engine", "ray", "--replicas", "2", "--cpus-per-worker", "1"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table(first: str, runs: dict[str, list[dict]]) -> str:
    """A Markdown table of ``runs`` (configuration -> its `bench --server --json` results)."""
    lines = [f"| {first} | req/s (each round) | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    for name, rs in runs.items():
        def each(get):
            return " / ".join(f"{get(r):.1f}" for r in rs)
        lines.append(f"| {name} | {each(lambda r: r['throughput_rps'])} | "
                     f"{each(lambda r: r['latency_ms']['p50'])} | "
                     f"{each(lambda r: r['latency_ms']['p99'])} | "
                     f"{sum(r['errors'] for r in rs)} |")
    return "\n".join(lines)


def wait_ready(port: int, proc, timeout_s: float = 180) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("server not ready")


def one(model: str, images: str, extra: list[str], args) -> dict:
    port, grpc = free_port(), free_port()
    proc = subprocess.Popen([EXE, "serve", "--model", model, "--port", str(port),
                             "--grpc-port", str(grpc), *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port, proc)
        load = ["--seconds", str(args.seconds)] if args.seconds else \
            ["--requests", str(args.requests)]
        # a short warm-up, then the measured run
        subprocess.run([EXE, "bench", "--server", f"http://127.0.0.1:{port}", "--clients",
                        str(args.clients), "--requests", str(4 * args.clients), "--images",
                        images, "--json"], capture_output=True, check=True)
        out = subprocess.run([EXE, "bench", "--server", f"http://127.0.0.1:{port}",
                              "--clients", str(args.clients), *load, "--images", images,
                              "--json"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["ray", "stop", "--force"], capture_output=True) if "--engine" in extra \
            else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="configuration names (default: all)")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runs: dict[str, list[dict]] = {}
    names = [n for n in CONFIGS if not args.only or any(o in n for o in args.only)]
    for _ in range(args.rounds):
        for name in names:
            res = one(args.model, args.images, CONFIGS[name], args)
            runs.setdefault(name, []).append(res)
            print(f"{name}: {res['throughput_rps']:.1f} req/s, p50 {res['latency_ms']['p50']:.1f}"
                  f" ms, p99 {res['latency_ms']['p99']:.1f} ms, errors {res['errors']}",
                  file=sys.stderr, flush=True)
    print(table("server", runs))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
