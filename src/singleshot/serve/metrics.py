"""Prometheus metrics of one server (prometheus-client, a registry of its own): requests by
endpoint and status, request durations; queue and inference durations and batch sizes by model
and version; in-flight requests and queued images."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("singleshot_requests", "Requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.request_seconds = Histogram("singleshot_request_seconds", "Request duration",
                                         ["endpoint"], buckets=LATENCY, registry=r)
        per = ["model", "version"]
        self.queue_seconds = Histogram("singleshot_queue_seconds", "Time a batch's first request "
                                       "waited", per, buckets=LATENCY, registry=r)
        self.inference_seconds = Histogram("singleshot_inference_seconds", "Detection time of a "
                                           "batch", per, buckets=LATENCY, registry=r)
        self.batch_images = Histogram("singleshot_batch_images", "Images per batch", per,
                                      buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=r)
        self.in_flight = Gauge("singleshot_in_flight", "Requests being served", registry=r)
        self.queued = Gauge("singleshot_queued_images", "Images waiting for a detector",
                            registry=r)

    def observe_batch(self, queue_s: float, inference_s: float, images: int,
                      stages_ms: dict | None = None, model: str = "", version: str = "") -> None:
        self.queue_seconds.labels(model, version).observe(queue_s)
        self.inference_seconds.labels(model, version).observe(inference_s)
        self.batch_images.labels(model, version).observe(images)

    def render(self) -> bytes:
        return generate_latest(self.registry)
