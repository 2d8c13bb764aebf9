"""History benchmark: derivation choice and the latency of a 1-hop as-of read over a month of history.

1. Choice of source (measured on the same events): deriving history rows from the source archive
   through the compiled mapping (what :func:`rdg_platform.history.tables.derive_rows` runs) against
   what archiving the ``graph.*`` topics would have to do per source event (decode the JSON graph
   records the processors produce, ~7 per event) and the bytes each would keep.
2. A month of history: ``--days`` days of archived events (``--members`` accounts, ``--events``
   events per account per day; the same accounts every day) archived into a private local catalog,
   derived into the history tables in one pass (one sorted file per day), then ``--reads`` 1-hop
   as-of reads (``logged_in_from`` out of random accounts at random times of the month, and a
   ``has_profile`` + node read) with :class:`rdg_platform.history.reader.HistoryReader`. Reports p50
   / p95 / max latency. Also times compaction of days that received extra writes.

No services needed (a local SQLite catalog in a temp dir). Example:
``python benchmarks/bench_history.py --days 30 --members 2000 --events 6``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from pyiceberg.catalog import Catalog

from rdg_platform.history.reader import HistoryReader
from rdg_platform.history.tables import DeriveResult, compact, derive_rows, derive_window, ensure_tables
from rdg_platform.lakehouse.archive import archive_records, read_archive
from rdg_platform.lakehouse.backfill import build_lookup
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.kafka_window import WindowRecord
from rdg_platform.model.mapping import TimeGuard, compile_mapping
from rdg_platform.model.spec import GraphSpec, default_spec
from tests.support.lakehouse import generate_events

DAY_MS = 86_400_000


def _archive_day(cat: Catalog, spec: GraphSpec, day_start: int, members: int, events: int, seed: int) -> int:
    """Archive one hour of generated events (starting at ``day_start``) as the day's archive window."""
    evs = generate_events(day_start, members, events, seed=seed, prefix="bh")
    by_topic: dict[str, list[WindowRecord]] = {}
    for i, e in enumerate(evs):
        by_topic.setdefault(e.topic, []).append(
            WindowRecord(i % 4, seed * 10_000_000 + i, e.timestamp_ms, e.key.encode(), json.dumps(e.value).encode()))
    for topic, recs in by_topic.items():
        archive_records(cat, topic, spec.sources[topic].schema, lambda b: (1, json.loads(b)),
                        [recs], day_start, day_start + 3_600_000)
    return len(evs)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--events", type=int, default=6, help="events per account per day")
    ap.add_argument("--reads", type=int, default=40)
    args = ap.parse_args()
    spec = default_spec()
    end = (int(time.time() * 1000) // DAY_MS) * DAY_MS
    start = end - args.days * DAY_MS
    with tempfile.TemporaryDirectory(prefix="rdg-bench-history-") as tmp:
        cat = CatalogConfig.local(Path(tmp)).load()
        t0 = time.perf_counter()
        n_events = sum(_archive_day(cat, spec, start + d * DAY_MS, args.members, args.events, d + 1)
                       for d in range(args.days))
        t_archive = time.perf_counter() - t0
        print(f"archived {n_events:,} events over {args.days} days in {t_archive:.1f} s", file=sys.stderr)

        # 1. derive from the source archive vs decode graph-topic records, on the first day's events
        day = [(t, read_archive(cat, t, start, start + DAY_MS)) for t in spec.mappings]
        day = [(t, d) for t, d in day if d.num_rows]
        lookup = build_lookup(cat, spec, start + DAY_MS)
        res = DeriveResult(start, start + DAY_MS)
        t0 = time.perf_counter()
        derive_rows(spec, day, lookup, TimeGuard(), res)
        t_derive = time.perf_counter() - t0
        day_events = sum(d.num_rows for _, d in day)
        graph_msgs: list[bytes] = []
        for topic, d in day:
            mapper = compile_mapping(spec, topic)
            cols = [c for c in d.column_names if not c.startswith("kafka_") and c != "schema_id"]
            data = {c: d.column(c).to_pylist() for c in cols}
            for i in range(d.num_rows):
                for rec in mapper.map({c: data[c][i] for c in cols}, lookup):
                    graph_msgs.append(orjson.dumps(rec.to_dict()))
        t0 = time.perf_counter()
        for m in graph_msgs:
            orjson.loads(m)
        t_decode = time.perf_counter() - t0
        src_bytes = sum(len(json.dumps(r, default=str)) for _, d in day for r in d.to_pylist())
        graph_bytes = sum(len(m) for m in graph_msgs)

        # 2. the month, derived in one pass, then as-of reads
        t0 = time.perf_counter()
        full = derive_window(cat, spec, start, end, namespace="history")
        t_full = time.perf_counter() - t0
        rows = sum(full.rows.values())
        tables = ensure_tables(cat, spec, "history")
        files = sum(len(list(t.scan().plan_files())) for t in tables.values())
        reader = HistoryReader(cat, spec, "history", cache_s=3600)
        rnd = random.Random(1)
        lat_edges: list[float] = []
        lat_trav: list[float] = []
        found = Counter[str]()
        for _ in range(args.reads):
            acc = f"bh-a{rnd.randrange(args.members)}"
            t = rnd.randrange(start + DAY_MS, end)
            t0 = time.perf_counter()
            got = reader.adjacency("logged_in_from", [acc], "out", t)[acc]
            lat_edges.append(time.perf_counter() - t0)
            found["edges"] += len(got)
            t0 = time.perf_counter()
            profiles = reader.adjacency("has_profile", [acc], "out", t)[acc]
            nodes = reader.nodes("profile", [p[0] for p in profiles], t)
            lat_trav.append(time.perf_counter() - t0)
            found["nodes"] += len(nodes)
        # compaction: two more writes into three days, then compact those days back to one file each
        for d in range(3):
            late = start + d * DAY_MS + 5 * 3_600_000
            _archive_day(cat, spec, late, args.members // 10, args.events, 1000 + d)
            derive_window(cat, spec, late, late + 3_600_000, namespace="history")
        t0 = time.perf_counter()
        comp = compact(tables[("edge", "logged_in_from")])
        t_compact = time.perf_counter() - t0

    print("| measure | value |\n|---|---|")
    print(f"| month of history | {args.days} days, {n_events:,} source events, {rows:,} history rows, {files} files |")
    print(f"| derive from the source archive (map + rows), one day | {day_events:,} events in {t_derive:.2f} s "
          f"({day_events / t_derive:,.0f} events/s) |")
    print(f"| graph-topic archive would decode, one day | {len(graph_msgs):,} JSON records "
          f"({len(graph_msgs) / max(day_events, 1):.1f} per event) in {t_decode:.2f} s |")
    print(f"| bytes: source events vs graph records, one day | {src_bytes:,} vs {graph_bytes:,} |")
    print(f"| derive the month in one pass (11 tables, one sorted file per day) | {t_full:.1f} s |")
    print(f"| 1-hop as-of read (logged_in_from out), {args.reads} reads | p50 {statistics.median(lat_edges) * 1000:.0f} ms, "
          f"p95 {_pct(lat_edges, 0.95) * 1000:.0f} ms, max {max(lat_edges) * 1000:.0f} ms ({found['edges']} edges) |")
    print(f"| has_profile + profile nodes as of T | p50 {statistics.median(lat_trav) * 1000:.0f} ms, "
          f"p95 {_pct(lat_trav, 0.95) * 1000:.0f} ms ({found['nodes']} nodes) |")
    print(f"| compaction of logged_in_from ({comp.days} days rewritten) | {comp.files_before} -> {comp.files_after} "
          f"files in {t_compact:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
