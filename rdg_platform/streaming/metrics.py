"""Prometheus metrics of the streaming apps (one registry per process, one HTTP endpoint per app).

Why a small wrapper instead of module-level globals: tests build several pipelines in one process,
and each needs counters it can read back without colliding with the others' registrations.
``rdg apps status`` scrapes the same endpoint for lag and throughput, so nothing but Prometheus
text is needed to observe an app.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Event time -> Cassandra ack, in seconds: the freshness the issue asks for (window + ~2 s).
FRESHNESS_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 12, 15, 20, 30, 60, 120, 300, float("inf"))


class RateMeter:
    """Events per second over a sliding wall-clock window (for ``rdg apps status``)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._marks: deque[tuple[float, int]] = deque()
        self._total = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self._total += n

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._marks.append((now, self._total))
            while len(self._marks) > 1 and now - self._marks[0][0] > self.window_s:
                self._marks.popleft()
            t0, n0 = self._marks[0]
        return 0.0 if now - t0 <= 0 else (self._total - n0) / (now - t0)


class AppMetrics:
    """Every metric an app may expose; processors and sinks each use their own subset."""

    def __init__(self, app: str, registry: CollectorRegistry | None = None) -> None:
        self.app = app
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Counter("rdg_records_in", "Input records consumed, by topic", ["app", "topic"], registry=r)
        self.records_out = Counter("rdg_records_out", "Graph records emitted (after dedup), by kind and type",
                                   ["app", "kind", "type"], registry=r)
        self.records_mapped = Counter("rdg_records_mapped", "Graph records produced by mapping (before dedup)",
                                      ["app", "kind", "type"], registry=r)
        self.dedup_suppressed = Counter("rdg_dedup_suppressed", "Graph record updates the dedup window did not "
                                        "emit (updates in - records out, counted when a key's window closes)", ["app", "kind", "type"], registry=r)
        self.dropped = Counter("rdg_events_dropped", "Events dropped as noise by the filter step, by reason",
                               ["app", "reason"], registry=r)
        self.dlq = Counter("rdg_dlq_records", "Records sent to a dead-letter topic, by reason", ["app", "topic", "reason"],
                           registry=r)
        self.buffered = Gauge("rdg_dedup_buffered", "Graph records waiting in the dedup buffer", ["app"], registry=r)
        self.cassandra_writes = Counter("rdg_cassandra_writes", "Graph records acknowledged by Cassandra, by type",
                                        ["app", "kind", "type"], registry=r)
        self.cassandra_errors = Counter("rdg_cassandra_errors", "Failed Cassandra write attempts (chunks)", ["app"],
                                        registry=r)
        self.backpressure = Counter("rdg_sink_backpressure", "Times the sink raised SinkBackpressureError", ["app"],
                                    registry=r)
        self.lag = Gauge("rdg_consumer_lag", "Messages between the last processed offset and the end of the partition",
                         ["app", "topic", "partition"], registry=r)
        self.input_rate = Gauge("rdg_input_rate", "Input records per second over the last 10 s", ["app"], registry=r)
        self.freshness = Histogram("rdg_event_to_write_seconds", "Event time to Cassandra acknowledgement",
                                   ["app"], buckets=FRESHNESS_BUCKETS, registry=r)
        self.rate = RateMeter()
        self.input_rate.labels(app).set_function(self.rate.rate)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``port`` (a background thread of prometheus_client)."""
        start_http_server(port, addr=addr, registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Sum of a sample over every label set matching ``labels`` (tests and status)."""
        total = 0.0
        for fam in self.registry.collect():
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total
