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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# Event time -> Cassandra ack, in seconds: the freshness the issue asks for (window + ~2 s).
FRESHNESS_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 12, 15, 20, 30, 60, 120, 300, float("inf"))


class RateMeter:
    """Events per second over the last ``window_s`` seconds of wall clock, whoever reads it and when.

    Counts go into one-second buckets as they are added; ``rate()`` sums the buckets of the last
    ``window_s`` seconds. Why buckets: the rate must not depend on how often it is read. (It used to
    be computed between two reads, so a sink's status, scraped once by ``rdg apps status``, always
    said 0.0.) ``add`` is called from one thread (the app's run loop); ``rate`` from the metrics
    server's thread.
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        if window_s < 1:
            raise ValueError("window_s must be >= 1")
        self.window_s = window_s
        self.clock = clock
        self._span = int(window_s)
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self._lock = threading.Lock()
        self.total = 0

    def add(self, n: int = 1) -> None:
        self.total += n
        sec = int(self.clock())
        buckets = self._buckets
        if buckets and buckets[-1][0] == sec:
            buckets[-1][1] += n
            return
        with self._lock:
            buckets.append([sec, n])
            while buckets[0][0] <= sec - self._span:
                buckets.popleft()

    def rate(self) -> float:
        now = self.clock()
        first = int(now) - self._span + 1  # the oldest whole second still inside the window
        with self._lock:
            n = sum(c for s, c in self._buckets if s >= first)
        return n / max(1e-9, now - first)


class _FastChild:
    __slots__ = ("_key", "_values")

    def __init__(self, values: dict[tuple[str, ...], float], key: tuple[str, ...]) -> None:
        self._values = values
        self._key = key
        values.setdefault(key, 0.0)

    def inc(self, amount: float = 1.0) -> None:
        self._values[self._key] += amount


class FastCounter(Collector):
    """A labelled counter for per-record hot paths, exposed exactly like a Counter (``<name>_total``).

    Why: ``prometheus_client.Counter`` takes a lock per increment and ``labels()`` builds and looks up
    a key per call; at ~10 increments per source event that was a tenth of a processor's time. Here an
    increment is a dict update. That needs no lock because every counter has one writer at a time
    (the run loop, or the holder of the dedup emitter's lock); the scrape copies the dict.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._children: dict[tuple[str, ...], _FastChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> _FastChild:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            child = self._children[values] = _FastChild(self._values, values)
        return child

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        fam = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, value in list(self._values.items()):
            fam.add_metric(list(key), value)
        return [fam]


class AppMetrics:
    """Every metric an app may expose; processors and sinks each use their own subset."""

    def __init__(self, app: str, registry: CollectorRegistry | None = None) -> None:
        self.app = app
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = FastCounter("rdg_records_in", "Input records consumed, by topic", ["app", "topic"], r)
        self.records_out = FastCounter("rdg_records_out", "Graph records emitted (after dedup), by kind and type",
                                       ["app", "kind", "type"], r)
        self.records_mapped = FastCounter("rdg_records_mapped", "Graph records produced by mapping (before dedup)",
                                          ["app", "kind", "type"], r)
        self.dedup_suppressed = FastCounter("rdg_dedup_suppressed", "Graph record updates the dedup window did "
                                            "not emit (updates in - records out, counted when a key's window "
                                            "closes)", ["app", "kind", "type"], r)
        self.expired = FastCounter("rdg_records_expired", "Graph records not written because their event time "
                                   "is older than their namespace's TTL (born expired), by kind and type",
                                   ["app", "kind", "type"], r)
        self.dropped = Counter("rdg_events_dropped", "Events dropped as noise by the filter step, by reason",
                               ["app", "reason"], registry=r)
        self.dlq = Counter("rdg_dlq_records", "Records sent to a dead-letter topic, by reason", ["app", "topic", "reason"],
                           registry=r)
        self.buffered = Gauge("rdg_dedup_buffered", "Keys held by the dedup buffer (each with an open window)",
                              ["app"], registry=r)
        self.cassandra_writes = FastCounter("rdg_cassandra_writes", "Graph records acknowledged by Cassandra, by "
                                            "type", ["app", "kind", "type"], r)
        self.erasure_fenced = Counter("rdg_erasure_fenced", "Records dropped because they touch an erased node and "
                                      "are not newer than its erasure (the erasure fence)", ["app", "kind", "type"],
                                      registry=r)
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
        """Expose ``/metrics`` on ``port`` (a background thread of prometheus_client), and ``/healthz``
        (200 ``ok`` while the process serves): the Kubernetes probes' endpoint, which must not render
        every metric on each probe."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        metrics_app = server.get_app()
        assert metrics_app is not None

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"ok\n"]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]

        server.set_app(app)

    def value(self, name: str, **labels: str) -> float:
        """Sum of a sample over every label set matching ``labels`` (tests and status)."""
        total = 0.0
        for fam in self.registry.collect():
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total
