"""Dynamic batching inside a Ray Serve replica: the server's own batcher (what `serve --engine
ray` runs: the local server's app in the replica) against Ray Serve's `@serve.batch` around the
same Detector, side by side on one local Ray instance, one replica of 2 CPUs each, /detect
under `singleshot bench --server`.

    python bench/ray_serve_batching.py MODEL IMAGES_DIR [--clients 8] [--seconds 30]
        [--max-batch 8] [--delay-ms 5] [--rounds 2]

MODEL: a batching graph (`singleshot export demo --batch dynamic -o demo-batch.onnx`, or the
1200 model re-batched the same way).
"""

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path

from ray_serve_overhead import free_port, table  # bench/ beside this script

from fastapi import Request  # a real annotation (no postponed evaluation): the class is
# pickled to the replica by value, where a string annotation could not be resolved

EXE = str(Path(sys.executable).with_name("singleshot"))


def serve_batch_app(model: str, max_batch: int, delay_ms: float):
    """/detect with `@serve.batch`: decode in a thread, then the batch method runs the
    Detector on the gathered images in one backend call."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 2}, max_ongoing_requests=16)
    @serve.ingress(api)
    class ServeBatch:
        def __init__(self) -> None:
            from singleshot.runtime.detector import Detector

            self.det = Detector(model, threads=2, backend="auto", preprocess="fast")

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=delay_ms / 1e3)
        async def run(self, images: list) -> list:
            return await asyncio.to_thread(self.det.detect_batch, images, conf=0.25)

        @api.post("/detect")
        async def detect(self, request: Request):
            from singleshot.runtime.report import DetectionReport, ImageResult

            rgb = await asyncio.to_thread(self.det.decode, await request.body())
            d = await self.run(rgb)
            return JSONResponse(DetectionReport(self.det.name, [ImageResult(None, d)]).to_dict())

        @api.get("/v2/health/ready")
        async def ready(self):
            return {"ready": True}

    return ServeBatch.bind()


def load(port: int, images: str, args) -> dict:
    url = f"http://127.0.0.1:{port}"
    subprocess.run([EXE, "bench", "--server", url, "--clients", str(args.clients), "--requests",
                    str(2 * args.clients), "--images", images, "--json"], capture_output=True,
                   check=True)
    out = subprocess.run([EXE, "bench", "--server", url, "--clients", str(args.clients),
                          "--seconds", str(args.seconds), "--images", images, "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import ray
    from ray import serve

    from singleshot.serve import ray_serve
    from singleshot.serve.build import ServerConfig

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    ray_serve.start("127.0.0.1", port, None)
    model = str(Path(args.model).resolve())
    rows = {}
    for _ in range(args.rounds):
        for name in ("the server's batcher (serve --engine ray)", "@serve.batch"):
            if name == "@serve.batch":
                serve.run(serve_batch_app(model, args.max_batch, args.delay_ms), name="b",
                          route_prefix="/")
            else:
                config = ServerConfig(model=model, max_batch=args.max_batch,
                                      max_delay_ms=args.delay_ms)
                ray_serve.deploy(config, ray_serve.Scaling(replicas=1, cpus_per_worker=2),
                                 name="b")
            res = load(port, args.images, args)
            rows.setdefault(name, []).append(res)
            print(f"{name}: {res['throughput_rps']:.2f} req/s p50 {res['latency_ms']['p50']:.1f}"
                  f" p99 {res['latency_ms']['p99']:.1f} errors {res['errors']}", file=sys.stderr,
                  flush=True)
            serve.delete("b")
    print(table("batching in the replica", rows))
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
