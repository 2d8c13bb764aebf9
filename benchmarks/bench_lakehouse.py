"""Lakehouse benchmark: archive writer vs raw pyiceberg append; Spark rebuild vs GraphStore.write.

1. Archive rows/s: the archive path (Confluent-framed Avro decode -> Arrow -> hour overwrite in
   Iceberg) on in-memory Kafka records, against a raw ``table.append`` of the very same Arrow data
   into a fresh table, in the same run and catalog. Target ratio >= 0.5.
2. Spark rebuild records/s for one namespace (map + LWW reduce + write + validate, Spark already
   started) against ``GraphStore.write`` of the same graph records (the streaming sink's write path),
   on the real Cassandra (needs ``rdg services up``).

Prints a markdown table. Example: ``python benchmarks/bench_lakehouse.py --rows 50000``.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fastavro


def _framed(schema: dict[str, Any]) -> tuple[Any, Any]:
    parsed = fastavro.parse_schema(schema)

    def enc(rec: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(b"\0" + struct.pack(">I", 1))
        fastavro.schemaless_writer(buf, parsed, rec)
        return buf.getvalue()

    def dec(data: bytes) -> tuple[int, dict[str, Any]]:
        return struct.unpack(">I", data[1:5])[0], fastavro.schemaless_reader(io.BytesIO(data[5:]), parsed)  # type: ignore[return-value]

    return enc, dec


def bench_archive(rows: int, workdir: Path) -> list[tuple[str, str, str]]:
    from rdg_platform.lakehouse.archive import archive_records, read_archive
    from rdg_platform.lakehouse.catalog import CatalogConfig
    from rdg_platform.lakehouse.kafka_window import WindowRecord
    from rdg_platform.lakehouse.schema import archive_schema, hour_partition_spec
    from rdg_platform.lakehouse.testing import generate_events
    from rdg_platform.model import default_spec

    spec = default_spec()
    topic = "member.playback"
    schema = dict(spec.sources[topic].schema)
    enc, dec = _framed(schema)
    h = 1577854800000
    members = max(1, rows // 20)
    evs = [e for e in generate_events(h, members, 45, prefix="bench") if e.topic == topic][:rows]
    recs = [WindowRecord(i % 4, i, e.timestamp_ms, e.key.encode(), enc(e.value)) for i, e in enumerate(evs)]
    cat = CatalogConfig.local(workdir / "bench-archive").load()
    # Warm-up: create the table (and import paths) with another hour, so both sides time steady state.
    archive_records(cat, topic, schema, dec, [recs[:100]], h - 3_600_000, h)
    t0 = time.perf_counter()
    res = archive_records(cat, topic, schema, dec, [recs], h, h + 3_600_000)
    t_archive = time.perf_counter() - t0
    data = read_archive(cat, topic, h, h + 3_600_000)
    s = archive_schema(schema)
    cat.create_namespace_if_not_exists("raw")
    raw = cat.create_table("raw.playback", schema=s, partition_spec=hour_partition_spec(s))
    raw.append(data.slice(0, 100))
    t0 = time.perf_counter()
    raw.append(data)
    t_raw = time.perf_counter() - t0
    t0 = time.perf_counter()
    for rec in recs:
        dec(rec.value or b"")
    t_decode = time.perf_counter() - t0
    a, r = res.rows / t_archive, data.num_rows / t_raw
    w = res.rows / max(t_archive - t_decode, 1e-9)
    return [("archive (decode+arrow+overwrite)", f"{res.rows}", f"{a:,.0f} rows/s"),
            ("  Avro decode alone (fastavro, per record)", f"{len(recs)}", f"{len(recs) / t_decode:,.0f} rows/s"),
            ("  archive minus decode (rows->Arrow->overwrite)", f"{res.rows}", f"{w:,.0f} rows/s"),
            ("raw pyiceberg append, same Arrow", f"{data.num_rows}", f"{r:,.0f} rows/s"),
            ("ratio archive/raw (target >= 0.5)", "", f"{a / r:.2f}"),
            ("ratio archive-minus-decode/raw", "", f"{w / r:.2f}")]


def bench_rebuild(members: int, namespace: str, master: str, workdir: Path) -> list[tuple[str, str, str]]:
    import json

    from rdg_platform.config import settings
    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.kv.testing import isolated_spec, unique_keyspace
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
    from rdg_platform.lakehouse.testing import generate_events
    from rdg_platform.model import map_event

    h = 1577854800000
    cc = CatalogConfig.local(workdir / "bench-rebuild")
    cat = cc.load()
    spec = isolated_spec(unique_keyspace("rdg_bench_lk"))
    evs = generate_events(h, members, 20, prefix="bench")
    by_topic: dict[str, list[WindowRecord]] = {}
    for i, e in enumerate(evs):
        by_topic.setdefault(e.topic, []).append(WindowRecord(0, i, e.timestamp_ms, None, json.dumps(e.value).encode()))
    for t, recs in by_topic.items():
        archive_records(cat, t, spec.sources[t].schema, lambda b: (1, json.loads(b)), [recs], h, h + 3_600_000)
    lookup = build_lookup(cat, spec)
    ns = spec.namespaces[namespace]
    records = [r for e in evs for r in map_event(spec, e.topic, e.value, lookup) if r.kind == ns.kind and r.type == ns.type]
    store = GraphStore.from_spec(spec)
    store.ensure_schema()
    try:
        t0 = time.perf_counter()
        for i in range(0, len(records), 500):
            store.write(records[i:i + 500])
        t_sink = time.perf_counter() - t0
        spark = build_spark_session(SparkConfig(master=master, shuffle_partitions=2), cc,
                                    ensure_spark_jars(settings().cache_dir / "jars" / "spark"))
        res = rebuild_namespace(spark, cc, spec, namespace, lookup)
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
    ap.add_argument("--spark-master", default="local[2]")
    ap.add_argument("--skip-rebuild", action="store_true", help="archive part only (no Cassandra/Spark)")
    args = ap.parse_args(argv)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        rows += bench_archive(args.rows, Path(d))
        if not args.skip_rebuild:
            rows += bench_rebuild(args.members, args.namespace, args.spark_master, Path(d))
    print("| lakehouse benchmark | n | rate |\n|---|---|---|")
    for name, n, rate in rows:
        print(f"| {name} | {n} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
