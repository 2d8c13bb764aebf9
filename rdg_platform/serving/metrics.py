"""Prometheus metrics of the query service: per-stage latency histograms and request counts.

Each app gets its own registry so tests and benchmarks can run several apps in one process without
"Duplicated timeseries" errors from the global default registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

STAGES = ("validate", "storage", "enrich", "total")
# Sub-millisecond to one second: the SLOs are single-digit milliseconds.
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25,
           0.5, 1.0, 2.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage = Histogram("rdg_api_stage_seconds", "Latency of one stage of a request",
                               ["endpoint", "stage"], buckets=BUCKETS, registry=self.registry)
        self.requests = Counter("rdg_api_requests", "Requests by endpoint and HTTP status",
                                ["endpoint", "status"], registry=self.registry)
        self.storage_reads = Counter("rdg_api_storage_reads", "Single-partition reads issued",
                                     ["endpoint"], registry=self.registry)
        # Pre-create the children so every stage shows up in /metrics from the first scrape.
        for ep in ("node", "edges", "count", "traverse"):
            for st in STAGES:
                self.stage.labels(ep, st)

    def observe(self, endpoint: str, stage: str, seconds: float) -> None:
        self.stage.labels(endpoint, stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
