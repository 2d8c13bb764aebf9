"""Streaming benchmark: processor vs raw consumer, sink vs raw driver inserts, dedup suppression,
freshness (loaded and idle), processor RSS through a soak, max sustained end-to-end rate.

Every ratio is measured in the same run on this machine, against the local services the RDG_*
settings name. The apps run as real supervised processes in an isolated keyspace with unique
consumer groups (``tests.support.streaming.local_pipeline``).
Prints a markdown table.

    python benchmarks/bench_streaming.py --help
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from rdg_platform.settings import KafkaSettings, Settings


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench_dedup(window_s: float, members: int, duration_s: float, max_window_s: float | None = None,
                checkpoint_s: float | None = None, checkpoint_rearms: bool = True) -> dict[str, float]:
    """Suppression on the generator's default workload, replayed at real-time pace through
    DedupBuffer: event time is the clock (the processors' wall clock when events arrive as they
    happen). ``checkpoint_s``: also drain the buffer every that many seconds, as the processor's
    checkpoints do (None: never); ``checkpoint_rearms``: a checkpoint counts as the windows of the
    keys it emitted closing (``drain(now)``, what the processor does), else it keeps them."""
    from rdg_platform.generator.journeys import GeneratorConfig, generate_events
    from rdg_platform.model import default_spec, map_event
    from rdg_platform.streaming.dedup import DedupBuffer

    spec = default_spec()
    cfg = GeneratorConfig(members=members, duration_s=duration_s)
    catalog: dict[tuple[str, str], Any] = {}
    buf = DedupBuffer(window_s, significant=spec.significant_properties(), max_window_s=max_window_s)
    mapped = emitted = 0
    next_checkpoint: float | None = None
    for ev in generate_events(cfg):
        if ev.bad is not None or ev.value is None:
            continue
        src = spec.sources[ev.topic]
        if src.kind == "side_input":
            catalog[(ev.topic, str(ev.value[src.key]))] = ev.value
        now = ev.timestamp_ms / 1000
        if checkpoint_s is not None:
            if next_checkpoint is None:
                next_checkpoint = now + checkpoint_s
            while now >= next_checkpoint:
                emitted += len(buf.pop_due(next_checkpoint))
                emitted += len(buf.drain(next_checkpoint if checkpoint_rearms else None))
                next_checkpoint += checkpoint_s
        emitted += len(buf.pop_due(now))
        for r in map_event(spec, ev.topic, ev.value, lambda t, k: catalog.get((t, k))):
            mapped += 1
            emitted += len(buf.add(r, now))
    emitted += len(buf.drain())
    return {"mapped": mapped, "emitted": emitted, "suppressed_fraction": 1 - emitted / max(1, mapped)}


def make_events(run: str, n: int, t0: int) -> list[tuple[str, str, dict[str, Any]]]:
    from tests.support.streaming import journey_events

    per = 25  # events per account in journey_events(heartbeats=20): 1 login + 22 playback + 3 gaming
    return journey_events(run, t0, accounts=max(1, n // (per + 1)), heartbeats=20)[:n]


def raw_consume_rate(kafka: KafkaSettings, topic: str, start: dict[int, int], end: dict[int, int],
                     decode: Any = None) -> float:
    """confluent-kafka ``consume(1000)`` over the same offsets; with ``decode``, also the processor's
    Avro decode of every value (the like-for-like baseline: the same input work, no framework)."""
    from confluent_kafka import Consumer, TopicPartition

    from rdg_platform.kafka_client import client_config

    c = Consumer(client_config(kafka, **{"group.id": f"bench-raw-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, p, o) for p, o in start.items() if end[p] > o])
    total = sum(end[p] - start[p] for p in start)
    n = 0
    t = time.perf_counter()
    while n < total:
        for m in c.consume(1000, timeout=1.0):
            if m.error():
                continue
            n += 1
            if decode is not None:
                decode(m.value())
    el = time.perf_counter() - t
    c.close()
    return n / el


def quix_noop_rate(kafka: KafkaSettings, topic: str, start: dict[int, int], end: dict[int, int], state_dir: str) -> float:
    """A Quix Streams app doing nothing per message over the same offsets: the ceiling of any
    per-message Quix app on this machine (its consume loop alone)."""
    from confluent_kafka import Consumer, TopicPartition
    from quixstreams import Application

    from rdg_platform.kafka_client import client_config
    from rdg_platform.streaming.runtime import connection_config

    group = f"bench-noop-{uuid.uuid4().hex[:6]}"
    c = Consumer(client_config(kafka, **{"group.id": group, "enable.auto.commit": False}))
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in start.items()], asynchronous=False)
    c.close()
    total = sum(end[p] - start[p] for p in start)
    app = Application(broker_address=connection_config(kafka), consumer_group=group, auto_offset_reset="latest",
                      loglevel="WARNING", state_dir=state_dir, use_changelog_topics=False, commit_interval=30)
    seen = {"n": 0, "t0": 0.0, "t1": 0.0}

    def count(_value: Any) -> None:
        if seen["n"] == 0:
            seen["t0"] = time.perf_counter()
        seen["n"] += 1
        if seen["n"] >= total:
            seen["t1"] = time.perf_counter()
            app.stop()

    app.dataframe(app.topic(topic, value_deserializer="bytes", key_deserializer="bytes")).apply(count)
    app.run()
    return (total - 1) / max(1e-9, seen["t1"] - seen["t0"])


def watermarks(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    from rdg_platform.kafka_client import client_config

    c = Consumer(client_config(kafka, **{"group.id": "bench-wm"}))
    md = c.list_topics(topic, timeout=10)
    out = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.topics[topic].partitions}
    c.close()
    return out


def wait_metric(port: int, name: str, target: float, timeout_s: float) -> tuple[float, float]:
    """Poll until metric >= target; returns (time first moved, time reached)."""
    from rdg_platform.streaming.supervisor import scrape_metrics

    base = scrape_metrics(port).get(name, 0.0)
    first = None
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        v = scrape_metrics(port).get(name, 0.0) - base
        now = time.perf_counter()
        if v > 0 and first is None:
            first = now
        if v >= target:
            return first or now, now
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not reach {target} in {timeout_s}s")


def bench_sink(cfg: Settings, n: int) -> dict[str, float]:
    """CassandraSink.write (chunked, retried, metered) vs raw execute_concurrent of the same UPSERTs."""
    from cassandra.concurrent import execute_concurrent
    from quixstreams.sinks import SinkBatch

    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.kv.store import NODE_ITEM, KVStore
    from rdg_platform.model import GraphRecord
    from rdg_platform.streaming.metrics import AppMetrics
    from rdg_platform.streaming.sink import CassandraSink
    from tests.support.kv import isolated_spec, unique_keyspace

    spec = isolated_spec(unique_keyspace("rdg_bench_sink"), cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra)
    store.ensure_schema()
    t0 = int(time.time() * 1000)
    try:
        def recs(tag: str) -> list[GraphRecord]:
            return [GraphRecord("node", "device", f"{tag}-{i}", None, {"device_type": "TV", "last_seen_ts": t0 + i},
                                t0 + i) for i in range(n)]

        # raw: the same prepared UPSERT, bound the same way, straight through the driver
        table = store.node_table("device")
        ps = store.kv.prepare(table, KVStore.UPSERT)
        session = store.kv.session(table)
        rr = recs("raw")
        params = [KVStore.upsert_params(r.id, NODE_ITEM, r.properties, None, r.updated_at, 0) for r in rr]
        execute_concurrent(session, [(ps, p) for p in params[:200]], concurrency=128)  # warm up
        t = time.perf_counter()
        execute_concurrent(session, [(ps, p) for p in params], concurrency=128, raise_on_first_error=True)
        raw_rate = n / (time.perf_counter() - t)

        sink = CassandraSink(store, AppMetrics("bench"))
        batch = SinkBatch("graph.node.device", 0)
        for i, r in enumerate(recs("sink")):
            batch.append(r, r.id, t0, [], i)
        t = time.perf_counter()
        sink.write(batch)
        sink_rate = n / (time.perf_counter() - t)
        return {"raw": raw_rate, "sink": sink_rate, "ratio": sink_rate / raw_rate}
    finally:
        store.kv.drop_keyspaces()
        store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="events for the processor/e2e throughput runs")
    ap.add_argument("--sink-records", type=int, default=20_000, help="records for the sink vs raw driver run")
    ap.add_argument("--window-s", type=float, default=60.0, help="dedup window of the pipeline under test")
    ap.add_argument("--max-window-s", type=float, default=None,
                    help="dedup part: largest window of a busy key (default 4 × --window-s, as the settings)")
    ap.add_argument("--checkpoint-s", type=float, default=None,
                    help="dedup part: processor checkpoint interval (default the largest window, as the settings)")
    ap.add_argument("--soak-s", type=float, default=60.0, help="duration of the RSS soak (issue target: 600)")
    ap.add_argument("--soak-rate", type=float, default=300.0, help="events/s during the soak")
    ap.add_argument("--dedup-members", type=int, default=100, help="generator members for the dedup run")
    ap.add_argument("--dedup-duration-s", type=float, default=600.0, help="generator simulated seconds")
    ap.add_argument("--freshness-samples", type=int, default=100,
                    help="samples per freshness percentile (idle and loaded each)")
    parts = ("dedup", "sink", "processor", "dedup-live", "e2e", "freshness", "soak")
    ap.add_argument("--only", default=",".join(parts),
                    help=f"comma-separated parts to run (default all: {','.join(parts)})")
    ap.add_argument("--half-rate", type=float, default=200.0,
                    help="load rate (ev/s) for loaded freshness when the e2e part is not run")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if only - set(parts):
        ap.error(f"--only: unknown parts {sorted(only - set(parts))} (known: {', '.join(parts)})")

    from rdg_platform.avro import AvroSerde, SchemaRegistry, topic_decoder
    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.local_services.credentials import local_role_settings
    from rdg_platform.settings import load_settings
    from tests.support.streaming import expected_graph, local_pipeline, produce_events, wait_graph

    cfg = local_role_settings(load_settings(), "admin")  # the bench provisions topics and keyspaces
    rows: list[tuple[str, str, str, str]] = []

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    if "dedup" in only:
        log("dedup suppression on the generator's default workload ...")
        w, cap = args.window_s, args.max_window_s if args.max_window_s is not None else 4 * args.window_s
        ck = args.checkpoint_s if args.checkpoint_s is not None else cap
        workload = f"{args.dedup_members} members × {args.dedup_duration_s:.0f} s"
        runs = [(f"dedup at real-time pace, {workload}: {w:.0f} s window growing to {cap:.0f} s, "
                 f"checkpoints every {ck:.0f} s (the processor)", bench_dedup(w, args.dedup_members,
                                                                              args.dedup_duration_s, cap, ck)),
                ("  same, no checkpoints", bench_dedup(w, args.dedup_members, args.dedup_duration_s, cap)),
                (f"  baseline: fixed {w:.0f} s window, checkpoints every {w:.0f} s keeping the windows "
                 f"(the processor before)", bench_dedup(w, args.dedup_members, args.dedup_duration_s, w, w,
                                                        checkpoint_rearms=False)),
                ("  baseline, no checkpoints", bench_dedup(w, args.dedup_members, args.dedup_duration_s, w))]
        for label, d in runs:
            rows.append((label, f"{d['suppressed_fraction']:.3f}", "≥ 0.9",
                         f"{d['mapped']:.0f} mapped → {d['emitted']:.0f} emitted"))

    if "sink" in only:
        log("sink vs raw driver ...")
        s = bench_sink(cfg, args.sink_records)
        rows.append(("sink: CassandraSink.write vs raw prepared inserts", f"{s['ratio']:.2f}", "≥ 0.7",
                     f"{s['sink']:.0f}/s vs {s['raw']:.0f}/s ({args.sink_records} records)"))
    if not only & {"processor", "dedup-live", "e2e", "freshness", "soak"}:
        print_rows(rows)
        return 0

    serde = AvroSerde(SchemaRegistry.from_settings(cfg.registry))
    log("starting the pipeline ...")
    with local_pipeline(cfg, window_s=args.window_s, name="bench") as pipe:
        store = GraphStore.from_spec(pipe.spec, pipe.settings.cassandra)
        apps = {a.name: a for a in pipe.supervisor.status()}
        bs = pipe.settings.kafka
        t0 = int(time.time() * 1000)
        half_rate = args.half_rate

        if "processor" in only:
            # --- processor vs raw consumer, same messages of member.playback
            run = uuid.uuid4().hex[:6]
            evs = [e for e in make_events(run, int(args.events * 1.2), t0) if e[0] == "member.playback"][:args.events]
            start = watermarks(bs, "member.playback")
            port = apps["member_playback-processor"].metrics_port or 0
            waiter: dict[str, Any] = {}
            th = threading.Thread(target=lambda: waiter.update(
                r=wait_metric(port, "rdg_records_in_total", len(evs), 600)))
            th.start()
            log(f"producing {len(evs)} playback events ...")
            produce_events(bs, serde, evs)
            th.join()
            first, done = waiter["r"]
            proc_rate = len(evs) / max(1e-6, done - first)
            end = watermarks(bs, "member.playback")
            raw = raw_consume_rate(bs, "member.playback", start, end)
            rows.append(("processor: events/s per process vs raw confluent-kafka consume", f"{proc_rate / raw:.3f}",
                         "≥ 0.25", f"{proc_rate:.0f}/s vs {raw:.0f}/s ({len(evs)} events)"))
            # like for like: the same consume plus the processor's own Avro decode, in a plain loop
            decode = topic_decoder(AvroSerde(SchemaRegistry.from_settings(cfg.registry), timestamps="millis"),
                                   "member.playback")
            raw_dec = raw_consume_rate(bs, "member.playback", start, end, decode)
            rows.append(("processor vs raw consume + the same Avro decode (plain loop)", f"{proc_rate / raw_dec:.3f}",
                         "report", f"{proc_rate:.0f}/s vs {raw_dec:.0f}/s"))
            noop = quix_noop_rate(bs, "member.playback", start, end, str(pipe.settings.state_dir / "bench-noop"))
            rows.append(("Quix Streams no-op app vs raw consume (per-message framework ceiling)", f"{noop / raw:.3f}",
                         "report", f"{noop:.0f}/s; processor = {proc_rate / noop:.2f} of it"))

        if "dedup-live" in only:
            # --- dedup live: the generator's default workload at its default rate (as fast as possible)
            from rdg_platform.generator.journeys import GeneratorConfig, generate_events
            from rdg_platform.generator.producer import make_producer
            from rdg_platform.generator.producer import produce_events as gen_produce
            from rdg_platform.model import map_event
            from rdg_platform.streaming.supervisor import scrape_metrics

            procs_ports = [a.metrics_port or 0 for n, a in apps.items() if n.endswith("-processor")]

            def proc_sum(name: str) -> float:
                return sum(scrape_metrics(p).get(name, 0.0) for p in procs_ports)

            # The previous step's records are still in the processors' windows: wait until they are
            # emitted, or their output would be counted against this workload's input.
            deadline = time.monotonic() + 5 * args.window_s
            while proc_sum("rdg_dedup_buffered") > 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            m0, o0 = proc_sum("rdg_records_mapped_total"), proc_sum("rdg_records_out_total")
            gcfg = GeneratorConfig(id_prefix=f"bench{uuid.uuid4().hex[:6]}-", start_ms=int(time.time() * 1000))
            log("dedup live: producing the generator's default workload ...")
            gen_prod, tracker = make_producer(bs)
            gen_produce(generate_events(gcfg), gen_prod, tracker, serde)
            prev = -1.0
            while True:  # until every processor has flushed its buffer (outputs stop moving)
                time.sleep(args.window_s + 2)
                cur = proc_sum("rdg_records_out_total")
                if cur == prev:
                    break
                prev = cur
            m1, o1 = proc_sum("rdg_records_mapped_total"), proc_sum("rdg_records_out_total")
            live = 1 - (o1 - o0) / max(1.0, m1 - m0)
            # the stricter reading, for reference: suppressed / redundant, where an update is redundant
            # unless it is the first of its node/edge in its processor (distinct keys per source topic)
            keys = {(ev.topic, r.dedup_key) for ev in generate_events(gcfg) if ev.bad is None and ev.value is not None
                    for r in map_event(pipe.spec, ev.topic, ev.value, None)}
            redundant = (m1 - m0) - len(keys)
            rows.append((f"dedup live: updates suppressed, generator default workload at default rate, "
                         f"{args.window_s:.0f} s window", f"{live:.3f}", "≥ 0.9",
                         f"{m1 - m0:.0f} mapped → {o1 - o0:.0f} emitted (processor metrics); suppressed / redundant "
                         f"(beyond the first per key) = {(m1 - m0 - (o1 - o0)) / max(1.0, redundant):.4f}"))

        if "e2e" in only:
            # --- max sustained end to end: a burst, until all of it is in Cassandra
            run = uuid.uuid4().hex[:6]
            burst = make_events(run, args.events, t0)
            exp = expected_graph(burst)
            log(f"e2e burst of {len(burst)} events ...")
            t = time.perf_counter()
            produce_events(bs, serde, burst)
            problems = wait_graph(store, exp, 600)
            e2e = len(burst) / (time.perf_counter() - t - args.window_s)
            half_rate = max(10.0, e2e / 2)
            rows.append(("max sustained end-to-end events/s (burst → all in Cassandra, minus one window)",
                         f"{e2e:.0f}", "report", "complete" if not problems else f"INCOMPLETE: {len(problems)} missing"))

        if "freshness" in only:
            # --- freshness: single event into an idle pipeline, and under load at half the max rate
            def freshness(rate: float | None, samples: int) -> list[float]:
                lat: list[float] = []
                for _ in range(samples):
                    r = uuid.uuid4().hex[:6]
                    ev = make_events(r, 1, int(time.time() * 1000))  # one login: account, device, edge
                    ex = expected_graph(ev)
                    sent = time.perf_counter()
                    produce_events(bs, serde, ev)
                    if wait_graph(store, ex, args.window_s + 30, poll_s=0.1):
                        lat.append(float("inf"))
                    else:
                        lat.append(time.perf_counter() - sent)
                return lat

            log("freshness, idle ...")
            idle = freshness(None, args.freshness_samples)
            rows.append(("freshness p99, single event into an idle pipeline (s)", f"{pct(idle, 0.99):.2f}",
                         "≤ 2", f"n={len(idle)}, median {statistics.median(idle):.2f}"))
            half = half_rate
            log(f"freshness under load at {half:.0f} ev/s ...")
            run = uuid.uuid4().hex[:6]
            load = make_events(run, int(half * (args.freshness_samples * 1.5 + 10)), int(time.time() * 1000))
            bg = threading.Thread(target=produce_events, args=(bs, serde, load, half), daemon=True)
            bg.start()
            time.sleep(2)
            loaded = freshness(half, args.freshness_samples)
            bg.join()
            rows.append((f"freshness p99 at half max rate ({half:.0f} ev/s) (s)", f"{pct(loaded, 0.99):.2f}",
                         "≤ 2", f"n={len(loaded)}, median {statistics.median(loaded):.2f}"))

        if "soak" in only:
            # --- RSS soak of the processors
            log(f"soak {args.soak_s:.0f}s at {args.soak_rate:.0f} ev/s ...")
            pids = {n: pipe.supervisor.pid(n) for n in apps if n.endswith("-processor")}
            procs = {n: psutil.Process(p) for n, p in pids.items() if p}
            run = uuid.uuid4().hex[:6]
            soak = make_events(run, int(args.soak_rate * args.soak_s), int(time.time() * 1000))
            bg = threading.Thread(target=produce_events, args=(bs, serde, soak, args.soak_rate), daemon=True)
            first_rss: dict[str, float] = {}
            last_rss: dict[str, float] = {}
            bg.start()
            t_end = time.monotonic() + args.soak_s
            time.sleep(min(10.0, args.soak_s / 4))
            first_rss = {n: p.memory_info().rss / 2**20 for n, p in procs.items()}
            while time.monotonic() < t_end and bg.is_alive():
                time.sleep(2)
            last_rss = {n: p.memory_info().rss / 2**20 for n, p in procs.items()}
            bg.join()
            worst = max((last_rss[n] / first_rss[n] - 1 for n in procs), default=0.0)
            rows.append((f"processor RSS growth through a {args.soak_s:.0f} s soak", f"{worst * 100:+.1f}%", "≤ +10%",
                         ", ".join(f"{n.split('-')[0]} {first_rss[n]:.0f}→{last_rss[n]:.0f} MiB" for n in procs)))
        store.close()

    print_rows(rows)
    return 0


def print_rows(rows: list[tuple[str, str, str, str]]) -> None:
    print("| metric | value | target | detail |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    sys.exit(main())
