"""Pipeline efficiency and new-edge freshness at half the maximum rate (issue 14).

One run, against the local services the settings name (``--test-session``: the test session's
services, as the integration tests use them), with every processor and sink running as a real
supervised process in an isolated keyspace with unique consumer groups
(``tests.support.streaming.local_pipeline``):

1. **End to end, as fast as possible.** A fixed generator workload (``GeneratorConfig`` with
   ``--members`` and ``--duration-s`` of simulated time, dated in the past) is generated, encoded
   and produced as fast as the generator can into the source topics. The run is over when every
   processor has consumed the workload and the sinks have written every graph record the
   processors had emitted by then (trailing dedup emissions that fall due a window later are a
   latency property, not throughput, and are waited for but not timed). Counted from the apps'
   Prometheus endpoints: ``rdg_records_in_total`` of the processors, ``rdg_cassandra_writes_total``
   of the sinks, and the graph topics' end offsets.

   **Graph row** = one ``GraphRecord`` acknowledged by Cassandra: a node update (one row), or an
   edge update (its forward and reverse adjacency rows and their latest-index rows). The same unit
   is used for the baseline.

2. **Raw baseline, same run, same rows.** The graph records the processors emitted (read back from
   the graph topics over exactly the offsets the sinks consumed) are written with the plain
   cassandra-driver: the statements ``GraphStore.write`` issues (``UPDATE ... USING TIMESTAMP ? AND
   TTL ?`` full or partial, latest-index ``INSERT``), prepared once, all bound values built before
   the clock starts, forward and reverse rows in one ``execute_concurrent`` at the KV layer's
   concurrency (128), into a fresh keyspace with the same schema. Efficiency = end-to-end graph
   rows/s ÷ raw rows/s. Steps 1 and 2 alternate ``--repeat`` times.

3. **Freshness at half the measured maximum.** A separate process drives the generator (the
   end-to-end workload's shape, fresh ids each pass) at 0.5 × the median end-to-end events/s, or
   at ``--half-rate``, while single login events (a new account, device and ``logged_in_from``
   edge) are produced one at a time; latency = produce call until all three are readable from
   Cassandra (polled every 0.1 s). Optionally also into the idle pipeline first.

CPU seconds of processors, sinks, Cassandra, Kafka and this process (the generator) are sampled
over each end-to-end run to show where the time goes. Prints a markdown report.

    PYTHONPATH=. python benchmarks/bench_pipeline.py --help
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from rdg_platform.avro import AvroSerde
    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.model.mapping import GraphRecord
    from rdg_platform.settings import KafkaSettings, Settings
    from tests.support.streaming import LocalPipeline

KV_CONCURRENCY = 128  # GraphStore.from_spec's default: what the sinks' KV layer runs with


def log(msg: str) -> None:
    print(f"[bench_pipeline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs: Sequence[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


# ---------------------------------------------------------------------------------- observation
def watermarks(kafka: KafkaSettings, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """End offset of every partition of ``topics``."""
    from confluent_kafka import Consumer, TopicPartition

    from rdg_platform.kafka_client import client_config

    c = Consumer(client_config(kafka, **{"group.id": f"bench-wm-{uuid.uuid4().hex[:6]}"}))
    out: dict[tuple[str, int], int] = {}
    try:
        for t in topics:
            md = c.list_topics(t, timeout=10)
            for p in md.topics[t].partitions:
                out[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
    finally:
        c.close()
    return out


def offsets_delta(a: dict[tuple[str, int], int], b: dict[tuple[str, int], int]) -> int:
    return sum(b[k] - a.get(k, 0) for k in b)


def read_graph_records(kafka: KafkaSettings, start: dict[tuple[str, int], int],
                       end: dict[tuple[str, int], int]) -> list[GraphRecord]:
    """Every graph record on the graph topics between ``start`` and ``end`` (what the sinks consumed)."""
    from confluent_kafka import Consumer, TopicPartition

    from rdg_platform.kafka_client import client_config
    from rdg_platform.model.mapping import GraphRecord

    c = Consumer(client_config(kafka, **{"group.id": f"bench-read-{uuid.uuid4().hex[:6]}",
                                         "enable.auto.commit": False}))
    parts = [TopicPartition(t, p, start.get((t, p), 0)) for (t, p), e in end.items() if e > start.get((t, p), 0)]
    total = offsets_delta(start, end)
    out: list[GraphRecord] = []
    seen = 0
    if parts:
        c.assign(parts)
    deadline = time.monotonic() + 300
    while seen < total and time.monotonic() < deadline:
        for m in c.consume(1000, timeout=1.0):
            if m.error():
                continue
            if m.offset() >= end[(m.topic() or "", m.partition() or 0)]:
                continue
            seen += 1
            v = m.value()
            if v:
                try:
                    out.append(GraphRecord.from_dict(json.loads(v)))
                except (ValueError, KeyError, TypeError):
                    pass  # the sinks dead-letter these; not a graph row
    c.close()
    if seen < total:
        raise RuntimeError(f"read {seen} of {total} graph records")
    return out


def listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:``port`` (our own user's services)."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except psutil.Error:
        return None
    return None


@dataclass
class CpuProbe:
    """CPU seconds (user + system) of groups of processes between :meth:`start` and :meth:`stop`."""

    groups: dict[str, list[psutil.Process]]
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for g, procs in self.groups.items():
            s = 0.0
            for p in procs:
                try:
                    t = p.cpu_times()
                    s += t.user + t.system
                except psutil.Error:
                    pass
            out[g] = s
        return out

    def start(self) -> None:
        self.before = self._cpu()

    def stop(self) -> None:
        after = self._cpu()
        self.used = {g: after[g] - self.before.get(g, 0.0) for g in after}


class LoadAverage:
    """1-minute load average sampled every 5 s in a background thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(5.0)

    def __enter__(self) -> LoadAverage:
        self._th.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._th.join()

    def span(self) -> str:
        if not self.samples:
            return "n/a"
        return f"{min(self.samples):.1f}-{max(self.samples):.1f} (median {statistics.median(self.samples):.1f})"


# ---------------------------------------------------------------------------------- end to end
@dataclass
class E2EResult:
    events: int
    seconds: float  # produce start -> all consumed and every emitted record written
    rows: float  # graph rows (sink acknowledgements) written in that time
    rows_all: float  # including the trailing emissions written a window later
    produce_s: float
    start: dict[tuple[str, int], int]
    end: dict[tuple[str, int], int]
    cpu_s: dict[str, float]

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def gen_config(members: int, duration_s: float, max_events: int | None = None) -> Any:
    """A generator workload with unique ids, dated entirely in the past (so no event is ahead of the
    processors' clock-skew guard and its timing does not depend on when it is produced)."""
    from rdg_platform.generator.journeys import GeneratorConfig

    start = int(time.time() * 1000) - int(duration_s * 1000) - 120_000
    return GeneratorConfig(members=members, duration_s=duration_s, start_ms=start, max_events=max_events,
                           id_prefix=f"bp{uuid.uuid4().hex[:6]}-")


def run_e2e(pipe: LocalPipeline, serde: AvroSerde, members: int, duration_s: float, window_s: float,
            cpu_groups: dict[str, list[psutil.Process]]) -> E2EResult:
    from rdg_platform.generator.producer import make_producer, produce_generated
    from rdg_platform.streaming.supervisor import scrape_metrics

    apps = pipe.supervisor.apps()
    proc_ports = [a.metrics_port or 0 for a in apps if a.kind == "processor"]
    sink_ports = [a.metrics_port or 0 for a in apps if a.kind == "sink"]
    graph_topics = sorted({t for a in apps if a.kind == "sink" for t in a.input_topics})
    bs = pipe.settings.kafka

    def total(ports: Sequence[int], name: str) -> float:
        """Sum over the apps; a busy app's endpoint may miss a 1 s scrape, so retry for a minute."""
        deadline = time.monotonic() + 60
        while True:
            scraped = [scrape_metrics(p, timeout_s=5.0) for p in ports]
            if all(scraped):
                return sum(m.get(name, 0.0) for m in scraped)
            if time.monotonic() > deadline:
                raise RuntimeError(f"an app's metrics endpoint did not answer ({name})")
            time.sleep(0.2)

    def wait(cond: Callable[[], bool], timeout_s: float, what: str) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return time.perf_counter()
            time.sleep(0.2)
        raise TimeoutError(what)

    cfg = gen_config(members, duration_s)
    in0 = total(proc_ports, "rdg_records_in_total")
    w0 = total(sink_ports, "rdg_cassandra_writes_total")
    g0 = watermarks(bs, graph_topics)
    cpu = CpuProbe(cpu_groups)
    producer, tracker = make_producer(bs)
    cpu.start()
    t0 = time.perf_counter()
    summary = produce_generated(cfg, producer, tracker, serde)
    produce_s = time.perf_counter() - t0
    n = summary.total
    log(f"  produced {n} events in {produce_s:.1f} s; waiting for the processors ...")
    wait(lambda: total(proc_ports, "rdg_records_in_total") - in0 >= n, 1800, "processors did not consume the workload")
    g_in = watermarks(bs, graph_topics)
    emitted = offsets_delta(g0, g_in)
    log(f"  processors consumed it ({time.perf_counter() - t0:.1f} s); {emitted} graph records emitted so far")
    t_done = wait(lambda: total(sink_ports, "rdg_cassandra_writes_total") - w0 >= emitted, 1800,
                  "sinks did not write what was emitted")
    cpu.stop()
    rows = total(sink_ports, "rdg_cassandra_writes_total") - w0
    log(f"  sinks caught up at {t_done - t0:.1f} s ({rows:.0f} rows); waiting for trailing emissions ...")
    # Trailing emissions fall due within one window (wall clock) of the last input; then wait until
    # the graph topics stop growing and the sinks have written everything on them.
    time.sleep(window_s + 3)
    deadline = time.monotonic() + 600
    prev: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        g_end = watermarks(bs, graph_topics)
        if g_end == prev and total(sink_ports, "rdg_cassandra_writes_total") - w0 >= offsets_delta(g0, g_end):
            break
        prev = g_end
        time.sleep(2.0)
    else:
        raise TimeoutError("trailing emissions not written")
    rows_all = total(sink_ports, "rdg_cassandra_writes_total") - w0
    return E2EResult(n, t_done - t0, rows, rows_all, produce_s, g0, g_end, cpu.used)


# ---------------------------------------------------------------------------------- raw baseline
@dataclass
class RawResult:
    rows_per_s: float
    statements_per_s: float
    passes: int
    rows: int
    writers: int = 1
    elapsed_s: float = 0.0
    cassandra_cpu_s: float = 0.0  # over the whole call, including the writers' start-up and warm-up


def raw_statements(store: GraphStore, records: Sequence[GraphRecord]) -> tuple[Any, list[tuple[Any, tuple[Any, ...]]]]:
    """(session, [(prepared statement, bound values)]): what ``GraphStore.write`` sends for
    ``records``, prepared directly on the driver session, values bound in the same way."""
    from cassandra.query import UNSET_VALUE

    from rdg_platform.kv.codec import encode_blob, encode_props
    from rdg_platform.kv.store import NODE_ITEM, KVStore

    spec = store.spec
    full_nodes = {n: frozenset(t.properties) for n, t in spec.nodes.items()}
    full_edges = {e: frozenset(t.properties) for e, t in spec.edges.items()}
    session = None
    prepared: dict[tuple[str, str], Any] = {}

    def prep(t: Any, cql: str) -> Any:
        nonlocal session
        key = (t.fq, cql)
        ps = prepared.get(key)
        if ps is None:
            s = store.kv.session(t)
            if session is None:
                session = s
            ps = prepared[key] = s.prepare(cql.format(t=t.fq))
        return ps

    idx_partial = ("INSERT INTO {t} (record_id, updated_at, item_key, props) VALUES (?, ?, ?, ?) "
                   "USING TIMESTAMP ? AND TTL ?")
    idx_full = ("INSERT INTO {t} (record_id, updated_at, item_key, pb) VALUES (?, ?, ?, ?) "
                "USING TIMESTAMP ? AND TTL ?")
    stmts: list[tuple[Any, tuple[Any, ...]]] = []
    for r in records:
        p, ts = r.properties, r.updated_at
        if r.kind == "node":
            t = store.node_table(r.type)
            ttl = t.namespace.ttl_s
            if p and p.keys() == full_nodes.get(r.type) and None not in p.values():
                stmts.append((prep(t, KVStore.UPSERT_FULL), (ts * 1000, ttl, encode_blob(p), UNSET_VALUE, ts, r.id,
                                                             NODE_ITEM)))
            else:
                stmts.append((prep(t, KVStore.UPSERT), (ts * 1000, ttl, encode_props(p) if p else UNSET_VALUE,
                                                        UNSET_VALUE, ts, r.id, NODE_ITEM)))
            continue
        fwd, rev = store.edge_table(r.type, "out"), store.edge_table(r.type, "in")
        ttl = fwd.namespace.ttl_s
        dst = r.dst or ""
        enc: Any
        if p and p.keys() == full_edges.get(r.type) and None not in p.values():
            cql, icql, enc = KVStore.UPSERT_FULL, idx_full, encode_blob(p)
        else:
            cql, icql, enc = KVStore.UPSERT, idx_partial, encode_props(p) if p else UNSET_VALUE
        stmts.append((prep(fwd, cql), (ts * 1000, ttl, enc, UNSET_VALUE, ts, r.id, dst)))
        stmts.append((prep(rev, cql), (ts * 1000, ttl, enc, UNSET_VALUE, ts, dst, r.id)))
        fi, ri = store.latest_index(fwd), store.latest_index(rev)
        if fi is not None:
            stmts.append((prep(fi, icql), (r.id, ts, dst, enc, ts * 1000, ttl)))
        if ri is not None:
            stmts.append((prep(ri, icql), (dst, ts, r.id, enc, ts * 1000, ttl)))
    if session is None or not stmts:
        raise RuntimeError("no records for the raw baseline")
    return session, stmts


def _raw_worker(cfg: Settings, keyspace: str, records: list[dict[str, Any]], min_s: float, barrier: Any,
                results: Any) -> None:
    """One raw writer process: build and prepare its share, warm up, wait for the others, then send
    its statements in one ``execute_concurrent`` per pass until ``min_s`` has passed."""
    from cassandra.concurrent import execute_concurrent

    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.model.mapping import GraphRecord
    from tests.support.kv import isolated_spec

    store = GraphStore.from_spec(isolated_spec(keyspace, cfg), cfg.cassandra, version_refresh_s=None)
    try:
        session, stmts = raw_statements(store, [GraphRecord.from_dict(d) for d in records])
        execute_concurrent(session, stmts[:200], concurrency=KV_CONCURRENCY, raise_on_first_error=True)
        barrier.wait()
        started = time.perf_counter()
        passes = 0
        while True:
            execute_concurrent(session, stmts, concurrency=KV_CONCURRENCY, raise_on_first_error=True,
                               results_generator=False)
            passes += 1
            if time.perf_counter() - started >= min_s:
                break
        results.put((started, time.perf_counter(), passes * len(records), passes * len(stmts), passes))
    finally:
        store.close()


def raw_baseline(cfg: Settings, keyspace: str, records: Sequence[GraphRecord], min_s: float,
                 writers: int) -> RawResult:
    """The same records as the sinks wrote them, straight through the driver, by ``writers``
    processes (as many as the pipeline has sink processes, each with the KV layer's concurrency):
    prepared statements, bound values built before the clock starts, forward, reverse and index
    rows interleaved in one ``execute_concurrent`` per process and pass; passes repeat (idempotent
    overwrites) until ``min_s`` has passed so a small set is not timed by its ramp alone."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fresh drivers: no connection or IO thread inherited by a fork
    barrier = ctx.Barrier(writers)
    results = ctx.Queue()
    dicts = [r.to_dict() for r in records]
    shares = [dicts[i::writers] for i in range(writers)]
    procs = [ctx.Process(target=_raw_worker, args=(cfg, keyspace, s, min_s, barrier, results), daemon=True)
             for s in shares]
    for pr in procs:
        pr.start()
    got = [results.get(timeout=600) for _ in procs]
    for pr in procs:
        pr.join(60)
    start, end = min(g[0] for g in got), max(g[1] for g in got)
    rows, statements = sum(g[2] for g in got), sum(g[3] for g in got)
    return RawResult(rows / (end - start), statements / (end - start), min(g[4] for g in got), len(records), writers,
                     end - start)


# ---------------------------------------------------------------------------------- freshness
def login_event(run: str) -> tuple[str, str, dict[str, Any]]:
    """One login of a new account on a new device: two new nodes and a new ``logged_in_from`` edge."""
    from tests.support.streaming import journey_events

    return journey_events(run, int(time.time() * 1000), accounts=1, heartbeats=0)[0]


def freshness(pipe: LocalPipeline, serde: AvroSerde, store: GraphStore, samples: int,
              timeout_s: float) -> list[float]:
    """Seconds from producing one login event until its nodes and edge are all readable."""
    from confluent_kafka import Producer

    from rdg_platform.kafka_client import client_config
    from tests.support.streaming import expected_graph, wait_graph

    p = Producer(client_config(pipe.settings.kafka, **{"linger.ms": 0, "enable.idempotence": True}))
    p.list_topics("member.login", timeout=30)  # connect and authenticate before timing
    lat: list[float] = []
    for _ in range(samples):
        topic, key, rec = login_event(uuid.uuid4().hex[:8])
        exp = expected_graph([(topic, key, rec)])
        value = serde.encode(topic, rec)
        sent = time.perf_counter()
        p.produce(topic, key=key.encode(), value=value)
        p.flush(30)
        ok = not wait_graph(store, exp, timeout_s, poll_s=0.1)
        lat.append(time.perf_counter() - sent if ok else float("inf"))
    return lat


def _load_worker(cfg: Settings, members: int, duration_s: float, rate: float, stop: Any, sent: Any) -> None:
    """The background load, in its own process (so it neither shares the probe's interpreter lock
    nor is slowed by it): the end-to-end workload's shape, generated afresh (new ids) over and over,
    paced to ``rate`` events/s, until ``stop`` is set."""
    from rdg_platform.avro import AvroSerde, SchemaRegistry
    from rdg_platform.generator.producer import make_producer, produce_generated

    serde = AvroSerde(SchemaRegistry.from_settings(cfg.registry))
    producer, tracker = make_producer(cfg.kafka)

    def progress(k: int) -> None:
        with sent.get_lock():
            sent.value += k
        if stop.is_set():
            raise _StopLoad

    try:
        while not stop.is_set():
            produce_generated(gen_config(members, duration_s), producer, tracker, serde, rate=rate, progress=progress)
    except _StopLoad:
        producer.flush(30)


def freshness_under_load(cfg: Settings, pipe: LocalPipeline, serde: AvroSerde, store: GraphStore, rate: float,
                         samples: int, timeout_s: float, members: int, duration_s: float) -> tuple[list[float], float]:
    """:func:`freshness` while a separate process produces the end-to-end workload's shape at
    ``rate`` events/s; returns the latencies and the load rate achieved while sampling."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    sent = ctx.Value("q", 0)
    bg = ctx.Process(target=_load_worker, args=(cfg, members, duration_s, rate, stop, sent), daemon=True)
    bg.start()
    try:
        deadline = time.monotonic() + 60
        while sent.value == 0 and time.monotonic() < deadline:  # the worker's imports and first batch
            time.sleep(0.2)
        time.sleep(10)  # let the pipeline settle at the rate
        n0, t0 = sent.value, time.perf_counter()
        lat = freshness(pipe, serde, store, samples, timeout_s)
        achieved = (sent.value - n0) / (time.perf_counter() - t0)
        if not bg.is_alive():
            log("  WARNING: the load process ended before the sampling finished")
    finally:
        stop.set()
        bg.join(60)
        if bg.is_alive():
            bg.terminate()
    return lat, achieved


class _StopLoad(Exception):
    pass


# ---------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test-session", action="store_true",
                    help="use the integration-test session's services (tests/support/session.py) instead of "
                         "the RDG_* environment")
    ap.add_argument("--members", type=int, default=3500,
                    help="generator members of the end-to-end workload (3,500 x 600 s ~ 280k events, >= 60 s end to end on a quiet machine)")
    ap.add_argument("--duration-s", type=float, default=600.0,
                    help="simulated seconds of the end-to-end workload")
    ap.add_argument("--repeat", type=int, default=2, help="alternating end-to-end / raw repetitions")
    ap.add_argument("--raw-min-s", type=float, default=5.0, help="minimum timed seconds of each raw baseline")
    ap.add_argument("--raw-writers", type=int, default=0,
                    help="raw baseline writer processes besides 1 (default: as many as the pipeline's sinks); "
                         "the faster of the two is the baseline")
    ap.add_argument("--window-s", type=float, default=60.0, help="dedup window of the pipeline under test")
    ap.add_argument("--samples", type=int, default=100, help="freshness samples at half the maximum rate")
    ap.add_argument("--idle-samples", type=int, default=0, help="freshness samples into the idle pipeline first")
    ap.add_argument("--freshness-timeout-s", type=float, default=30.0, help="give up on one freshness sample after")
    ap.add_argument("--half-rate", type=float, default=0.0,
                    help="load rate (events/s) for the freshness part instead of half the measured maximum "
                         "(to re-run that part alone with --repeat 0)")
    ap.add_argument("--json", default="", help="also write the raw results to this JSON file")
    args = ap.parse_args()
    if args.samples < 1 or args.repeat < 0 or (args.repeat == 0 and not args.half_rate):
        ap.error("--samples must be >= 1, --repeat >= 0, and --repeat 0 needs --half-rate")

    from rdg_platform.avro import AvroSerde, SchemaRegistry
    from rdg_platform.kv.graph_store import GraphStore
    from tests.support.kv import isolated_spec, unique_keyspace
    from tests.support.streaming import local_pipeline

    cfg: Settings
    if args.test_session:
        from tests.support.session import session_settings

        cfg = session_settings()
    else:
        from rdg_platform.local_services.credentials import local_role_settings
        from rdg_platform.settings import load_settings

        cfg = local_role_settings(load_settings(), "admin")  # provisions topics and keyspaces
    serde = AvroSerde(SchemaRegistry.from_settings(cfg.registry))
    out: dict[str, Any] = {"args": vars(args), "reps": []}
    t_start = time.perf_counter()
    with LoadAverage() as load:
        log("starting the pipeline ...")
        with local_pipeline(cfg, window_s=args.window_s, name="bpipe") as pipe:
            store = GraphStore.from_spec(pipe.spec, pipe.settings.cassandra)
            raw_ks = unique_keyspace("rdg_bench_raw")
            raw_store = GraphStore.from_spec(isolated_spec(raw_ks, cfg), cfg.cassandra, version_refresh_s=None)
            raw_store.ensure_schema()
            me = psutil.Process()
            groups: dict[str, list[psutil.Process]] = {"processors": [], "sinks": [], "cassandra": [], "kafka": [],
                                                       "generator (this process, not its children)": [me]}
            for a in pipe.supervisor.apps():
                pid = pipe.supervisor.pid(a.name)
                if pid:
                    groups["processors" if a.kind == "processor" else "sinks"].append(psutil.Process(pid))
            for g, port in (("cassandra", cfg.cassandra.port), ("kafka", cfg.kafka.port)):
                pid = listener_pid(port)
                if pid:
                    groups[g].append(psutil.Process(pid))
            writers = args.raw_writers or len(groups["sinks"])
            try:
                for i in range(args.repeat):
                    log(f"repetition {i + 1}/{args.repeat}: end to end ...")
                    e = run_e2e(pipe, serde, args.members, args.duration_s, args.window_s, groups)
                    log(f"  e2e {e.events_per_s:.0f} events/s, {e.rows_per_s:.0f} rows/s over {e.seconds:.1f} s; "
                        "reading the graph records back ...")
                    recs = read_graph_records(pipe.settings.kafka, e.start, e.end)
                    log(f"  raw baseline over {len(recs)} records ...")
                    raws: dict[int, RawResult] = {}
                    for k in sorted({1, writers}):
                        cass = CpuProbe({"cassandra": groups["cassandra"]})
                        cass.start()
                        raws[k] = raw_baseline(cfg, raw_ks, recs, args.raw_min_s, k)
                        cass.stop()
                        raws[k].cassandra_cpu_s = cass.used["cassandra"]
                        log(f"  raw, {k} writer process(es): {raws[k].rows_per_s:.0f} rows/s "
                            f"({raws[k].statements_per_s:.0f} statements/s)")
                    r = max(raws.values(), key=lambda x: x.rows_per_s)  # the best baseline
                    eff = e.rows_per_s / r.rows_per_s
                    log(f"  efficiency {eff:.4f}")
                    out["reps"].append({"events": e.events, "seconds": e.seconds, "produce_s": e.produce_s,
                                        "events_per_s": e.events_per_s, "rows": e.rows, "rows_all": e.rows_all,
                                        "rows_per_s": e.rows_per_s, "cpu_s": e.cpu_s, "raw_rows": r.rows,
                                        "raw_rows_per_s": r.rows_per_s, "raw_statements_per_s": r.statements_per_s,
                                        "raw_passes": r.passes, "efficiency": eff,
                                        "raw_by_writers": {k: vars(v) for k, v in raws.items()}})
                half = args.half_rate or 0.5 * statistics.median(x["events_per_s"] for x in out["reps"])
                if args.idle_samples:
                    log(f"freshness into the idle pipeline ({args.idle_samples} samples) ...")
                    out["idle"] = freshness(pipe, serde, store, args.idle_samples, args.freshness_timeout_s)
                log(f"freshness at half the maximum rate: {half:.0f} events/s, {args.samples} samples ...")
                lat, achieved = freshness_under_load(cfg, pipe, serde, store, half, args.samples,
                                                     args.freshness_timeout_s, args.members, args.duration_s)
                out["half"] = {"rate": half, "achieved": achieved, "lat": lat}
            finally:
                store.close()
                try:
                    raw_store.kv.drop_keyspaces()
                except Exception as exc:  # a loaded Cassandra may time out; the keyspace is unique
                    log(f"could not drop the raw keyspace {raw_ks}: {exc}")
                finally:
                    raw_store.close()
    out["load"] = load.samples
    out["wall_s"] = time.perf_counter() - t_start
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    print_report(out, load.span())
    return 0


def print_report(out: dict[str, Any], load_span: str) -> None:
    reps = out["reps"]
    print(f"wall time {out['wall_s']:.0f} s, load average {load_span}\n")
    print("| rep | events | e2e s | events/s | graph rows written (timed / incl. trailing) | rows/s | "
          "raw rows/s (statements/s) | efficiency |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, x in enumerate(reps, 1):
        print(f"| {i} | {x['events']:,} | {x['seconds']:.1f} | {x['events_per_s']:,.0f} | {x['rows']:,.0f} / "
              f"{x['rows_all']:,.0f} | {x['rows_per_s']:,.0f} | {x['raw_rows_per_s']:,.0f} "
              f"({x['raw_statements_per_s']:,.0f}) | {x['efficiency']:.4f} |")
    print("\nraw baseline by writer processes (rows/s; Cassandra CPU ms per graph row):")
    for i, x in enumerate(reps, 1):
        print(f"- rep {i}: " + ", ".join(
            f"{k} writer(s) {v['rows_per_s']:,.0f} ({1000 * v['cassandra_cpu_s'] / (v['rows_per_s'] * v['elapsed_s']):.2f})"
            for k, v in x["raw_by_writers"].items())
            + f"; end to end: Cassandra {1000 * x['cpu_s'].get('cassandra', 0) / max(1.0, x['rows']):.2f} ms per row")
    effs = [x["efficiency"] for x in reps] or [float("nan")]
    print(f"\nefficiency median {statistics.median(effs):.4f} (range {min(effs):.4f}-{max(effs):.4f}), "
          f"target >= 0.6: {'met' if statistics.median(effs) >= 0.6 and min(effs) >= 0.6 else 'NOT met'}")
    print("\nCPU seconds over each timed end-to-end run (cores busy = CPU s / wall s):")
    for i, x in enumerate(reps, 1):
        print(f"- rep {i}: " + ", ".join(f"{g} {s:.0f} s ({s / x['seconds']:.2f} cores)"
                                         for g, s in x["cpu_s"].items()))
    for name, lat, extra in (("idle", out.get("idle"), ""),
                             ("half max rate", out.get("half", {}).get("lat"),
                              f" at {out.get('half', {}).get('rate', 0):.0f} events/s target, "
                              f"{out.get('half', {}).get('achieved', 0):.0f} achieved")):
        if not lat:
            continue
        fin = [v for v in lat if math.isfinite(v)]
        p99 = pct(lat, 0.99)
        print(f"\nnew-edge freshness, {name}{extra}: n={len(lat)} (timeouts {len(lat) - len(fin)}), "
              f"p50 {pct(lat, 0.5):.2f} s, p99 {p99:.2f} s, max {max(lat):.2f} s; target p99 <= 2 s: "
              f"{'met' if p99 <= 2 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
