"""Lakehouse benchmark: archive writer vs raw pyiceberg append; Spark rebuild vs GraphStore.write.

1. Archive rows/s: exactly what the hourly archive asset runs (``archive_window``: the hour's
   Kafka records read from a real topic, Confluent-framed Avro decoded in bulk by the project's
   AvroSerde against the real schema registry, Arrow built column-wise, the hour replaced in Iceberg),
   against a raw ``table.append`` of the very same Arrow data into a fresh table, in the same run and
   catalog. Target ratio >= 0.5. Both the first archive of an hour and its re-archive (which also
   drops the hour's previous files) are timed; components are timed separately for the record.
2. Spark rebuild records/s for one namespace (map + LWW reduce + write + validate, Spark already
   started) against ``GraphStore.write`` of the same graph records (the streaming sink's write path),
   on the real Cassandra.

Needs ``rdg services up`` (Kafka + registry for part 1, Cassandra for part 2). Prints a markdown
table. Example: ``python benchmarks/bench_lakehouse.py --rows 50000``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rdg_platform.kafka_client import client_config
from rdg_platform.settings import KafkaSettings, Settings, load_settings


def _produce(kafka: KafkaSettings, topic: str, partitions: int, records: list[tuple[bytes, bytes, int]]) -> None:
    """Create the benchmark's own topic (not a platform topic, so not topology's) and fill it."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(kafka))
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
    prod = Producer(client_config(kafka, **{"linger.ms": 20, "compression.type": "lz4", "batch.num.messages": 10000}))
    for i, (key, value, ts) in enumerate(records):
        while True:
            try:
                prod.produce(topic, value=value, key=key, timestamp=ts, partition=i % partitions)
                break
            except BufferError:
                prod.poll(0.05)
    if prod.flush(60):
        raise RuntimeError("benchmark records not delivered")


def _delete_topic(kafka: KafkaSettings, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(kafka))  # must outlive the futures
    for fut in admin.delete_topics([topic]).values():
        fut.result(30)


def bench_archive(s: Settings, rows: int, reps: int, workdir: Path) -> list[tuple[str, str, str]]:
    from rdg_platform.avro import AvroSerde
    from rdg_platform.avro.bulk import AvroTopicDecoder
    from rdg_platform.kafka_client import security_config
    from rdg_platform.lakehouse.archive import archive_records, archive_window, read_archive
    from rdg_platform.lakehouse.catalog import CatalogConfig
    from rdg_platform.lakehouse.kafka_window import WindowBatch, read_window
    from rdg_platform.lakehouse.schema import archive_schema, hour_partition_spec
    from tests.support.lakehouse import generate_events

    bootstrap = s.kafka.bootstrap_servers
    security = security_config(s.kafka)
    schema = dict(s.load_spec().sources["member.playback"].schema)
    topic = f"bench.archive.{uuid.uuid4().hex[:8]}"  # member.playback's schema, registered under this topic
    h, prev = 1577854800000, 1577854800000 - 3_600_000
    members = max(1, rows // 20)
    evs = [e for e in generate_events(h, members, 45, prefix="bench") if e.topic == "member.playback"][:rows]
    warm = [e for e in generate_events(prev, 10, 45, prefix="warm") if e.topic == "member.playback"][:100]
    serde = AvroSerde.from_settings(s.registry, schemas={topic: schema})
    _produce(s.kafka, topic, 4, [(e.key.encode(), serde.encode(topic, e.value), e.timestamp_ms) for e in warm + evs])
    cat = CatalogConfig.local(workdir / "bench-archive").load()
    table_schema = archive_schema(schema)
    first: list[float] = []
    again: list[float] = []
    memory: list[float] = []
    raw: list[float] = []
    try:
        in_memory = list(read_window(bootstrap, topic, h, h + 3_600_000, consumer_config=security))
        for i in range(reps):
            # Every timed write goes to a table already holding another hour (so both sides time the
            # steady state, not table creation); the sides alternate so they share the machine's noise.
            ns_k, ns_m = f"kafka{i}", f"memory{i}"
            archive_window(cat, topic, schema, serde, bootstrap, prev, h, namespace=ns_k, consumer_config=security)
            archive_window(cat, topic, schema, serde, bootstrap, prev, h, namespace=ns_m, consumer_config=security)
            t0 = time.perf_counter()
            res, _ = archive_window(cat, topic, schema, serde, bootstrap, h, h + 3_600_000, namespace=ns_k,
                                    consumer_config=security)
            first.append(time.perf_counter() - t0)
            assert res.rows == len(evs), (res.rows, len(evs))
            t0 = time.perf_counter()
            res2, _ = archive_window(cat, topic, schema, serde, bootstrap, h, h + 3_600_000, namespace=ns_k,
                                    consumer_config=security)
            again.append(time.perf_counter() - t0)
            assert res2.rows == len(evs)
            t0 = time.perf_counter()
            archive_records(cat, topic, schema, AvroTopicDecoder(serde, topic), in_memory, h, h + 3_600_000,
                            namespace=ns_m)
            memory.append(time.perf_counter() - t0)
            data = read_archive(cat, topic, h, h + 3_600_000, namespace=ns_k)
            assert data.num_rows == len(evs)
            cat.create_namespace_if_not_exists("raw")
            tbl = cat.create_table(f"raw.playback{i}", schema=table_schema, partition_spec=hour_partition_spec(table_schema))
            tbl.append(read_archive(cat, topic, prev, h, namespace=ns_k))
            t0 = time.perf_counter()
            tbl.append(data)
            raw.append(time.perf_counter() - t0)
        # Components, for the record (not part of the ratio).
        t0 = time.perf_counter()
        batches = list(read_window(bootstrap, topic, h, h + 3_600_000, consumer_config=security))
        t_read = time.perf_counter() - t0
        values = [v for b in batches for v in b.values if v is not None]
        t0 = time.perf_counter()
        AvroTopicDecoder(serde, topic).decode_values(values)
        t_bulk = time.perf_counter() - t0
        t0 = time.perf_counter()
        for v in values:
            serde.decode_for_topic(topic, v)
        t_rec = time.perf_counter() - t0
    finally:
        serde.close()
        _delete_topic(s.kafka, topic)
    n = len(evs)
    a, a2, am, r = (n / statistics.median(x) for x in (first, again, memory, raw))
    assert all(isinstance(b, WindowBatch) for b in in_memory)
    return [(f"archive hour from Kafka, as the asset runs (read+decode+Arrow+overwrite), median of {reps}",
             f"{n}", f"{a:,.0f} rows/s"),
            ("archive same hour again (also drops its previous files)", f"{n}", f"{a2:,.0f} rows/s"),
            ("archive of the same records already in memory (decode+Arrow+overwrite)", f"{n}", f"{am:,.0f} rows/s"),
            ("  Kafka window read alone", f"{n}", f"{n / t_read:,.0f} rows/s"),
            ("  bulk Avro decode alone (AvroTopicDecoder, columnar)", f"{n}", f"{n / t_bulk:,.0f} rows/s"),
            ("  per-record Avro decode (AvroSerde.decode_for_topic), for comparison", f"{n}",
             f"{n / t_rec:,.0f} rows/s"),
            (f"raw pyiceberg append, same Arrow, median of {reps}", f"{n}", f"{r:,.0f} rows/s"),
            ("ratio archive from Kafka/raw (target >= 0.5)", "", f"{a / r:.2f}"),
            ("ratio re-archive from Kafka/raw", "", f"{a2 / r:.2f}"),
            ("ratio in-memory archive/raw", "", f"{am / r:.2f}")]


def bench_rebuild(s: Settings, members: int, namespace: str, master: str,
                  workdir: Path) -> list[tuple[str, str, str]]:
    import json

    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.lakehouse.archive import archive_records
    from rdg_platform.lakehouse.backfill import build_lookup
    from rdg_platform.lakehouse.catalog import CatalogConfig
    from rdg_platform.lakehouse.kafka_window import WindowRecord
    from rdg_platform.lakehouse.spark import (
        SparkConfig,
        build_spark_session,
        ensure_spark_jars,
        rebuild_namespace,
    )
    from rdg_platform.model import map_event
    from tests.support.kv import isolated_spec, unique_keyspace
    from tests.support.lakehouse import generate_events

    h = 1577854800000
    cc = CatalogConfig.local(workdir / "bench-rebuild")
    cat = cc.load()
    spec = isolated_spec(unique_keyspace("rdg_bench_lk"), s)
    evs = generate_events(h, members, 20, prefix="bench")
    by_topic: dict[str, list[WindowRecord]] = {}
    for i, e in enumerate(evs):
        by_topic.setdefault(e.topic, []).append(WindowRecord(0, i, e.timestamp_ms, None, json.dumps(e.value).encode()))
    for t, recs in by_topic.items():
        archive_records(cat, t, spec.sources[t].schema, lambda b: (1, json.loads(b)), [recs], h, h + 3_600_000)
    lookup = build_lookup(cat, spec)
    ns = spec.namespaces[namespace]
    records = [r for e in evs for r in map_event(spec, e.topic, e.value, lookup) if r.kind == ns.kind and r.type == ns.type]
    store = GraphStore.from_spec(spec, s.cassandra)
    store.ensure_schema()
    try:
        t0 = time.perf_counter()
        for i in range(0, len(records), 500):
            store.write(records[i:i + 500])
        t_sink = time.perf_counter() - t0
        c = s.cassandra
        spark = build_spark_session(
            SparkConfig(master=master, shuffle_partitions=2, cassandra_host=c.hosts[0], cassandra_port=c.port,
                        cassandra_username=c.username,
                        cassandra_password=c.password.get_secret_value() if c.password else None),
            cc, ensure_spark_jars(s.cache_dir / "jars" / "spark"))
        res = rebuild_namespace(spark, cc, spec, namespace, lookup, cassandra=c)
        spark.stop()
        t_rebuild = res.seconds
        wr = res.timings.get("write_s", 0.0)
        return [(f"GraphStore.write ({namespace})", f"{len(records)}", f"{len(records) / t_sink:,.0f} records/s"),
                (f"Spark rebuild {master} (map+reduce+write+validate)", f"{len(records)} -> {res.keys} keys",
                 f"{len(records) / t_rebuild:,.0f} records/s"),
                ("  of which Spark write step", f"{res.keys} keys", f"{res.keys / wr:,.0f} keys/s" if wr else "n/a"),
                ("ratio rebuild/sink", "", f"{(len(records) / t_rebuild) / (len(records) / t_sink):.2f}")]
    finally:
        store.kv.drop_keyspaces()
        store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000, help="archive rows (member.playback events)")
    ap.add_argument("--members", type=int, default=1000, help="members for the rebuild data (20 events each)")
    ap.add_argument("--namespace", default="edge.started_watching", help="namespace to rebuild")
    ap.add_argument("--reps", type=int, default=5, help="archive/append repetitions (medians are reported)")
    ap.add_argument("--spark-master", default=None, help="default RDG_SPARK_MASTER")
    ap.add_argument("--skip-rebuild", action="store_true", help="archive part only (no Cassandra/Spark)")
    args = ap.parse_args(argv)
    s = load_settings()  # the benchmark is an entry point
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        rows += bench_archive(s, args.rows, args.reps, Path(d))
        if not args.skip_rebuild:
            rows += bench_rebuild(s, args.members, args.namespace, args.spark_master or s.spark.master, Path(d))
    print("| lakehouse benchmark | n | rate |\n|---|---|---|")
    for name, n, rate in rows:
        print(f"| {name} | {n} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
