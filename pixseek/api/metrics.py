"""Prometheus metrics, in a registry per application so that several apps (tests) never collide."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from pixseek.api.state import AppState


class Metrics:
    def __init__(self, state: AppState):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pixseek_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "pixseek_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        vectors = Gauge("pixseek_vectors", "Vectors in the FAISS index", registry=self.registry)
        vectors.set_function(lambda: len(state.library.loaded_vectors or ()))
        running = Gauge("pixseek_jobs_active", "Indexing jobs queued or running", registry=self.registry)
        running.set_function(lambda: int(state.jobs.active))

    def observe(self, route: str, method: str, status: int, started: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
