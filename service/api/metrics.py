"""Prometheus metrics, correct with several workers.

With more than one worker, `initserve serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before the
workers start (or uses the one the operator set), and /metrics aggregates every worker's files.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.requests import Request
from starlette.responses import Response

REQUESTS = Counter(
    "initserve_requests_total", "HTTP requests by route template and status", ["route", "method", "status"]
)
LATENCY = Histogram(
    "initserve_request_duration_seconds",
    "Time to the last response byte, by route template",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
GENERATED_BYTES = Counter("initserve_generated_bytes_total", "Tensor bytes generated, by scheme", ["scheme"])
GENERATED_ELEMENTS = Counter("initserve_generated_elements_total", "Tensor elements generated, by scheme", ["scheme"])
CANCELLED = Counter(
    "initserve_cancelled_total", "Requests abandoned before their response ended, their work cancelled", ["reason"]
)
INFLIGHT_BYTES = Gauge("initserve_inflight_bytes", "Bytes of the memory budget held now", multiprocess_mode="livesum")


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route).observe(seconds)


def record_generation(scheme: str, elements: int, nbytes: int) -> None:
    GENERATED_ELEMENTS.labels(scheme).inc(elements)
    GENERATED_BYTES.labels(scheme).inc(nbytes)


def metrics_endpoint(request: Request) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
