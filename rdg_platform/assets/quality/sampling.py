"""Read what the quality suites validate: archive rows via pyiceberg, graph namespace samples via the
KV layer. Bounded by construction (row limits, a sample size, a scan that stops early) so a check
on a large production table costs a fixed amount."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.kv.store import KVStore, token_ranges
from rdg_platform.lakehouse.archive import archive_identifier, ts_range_filter
from rdg_platform.model.spec import GraphSpec, Namespace


class TableMissingError(LookupError):
    """The archive table does not exist yet (nothing archived)."""


def read_archive_frame(catalog: Catalog, topic: str, namespace: str = "archive", lookback_hours: int = 24,
                       max_rows: int = 200_000, now_ms: int | None = None) -> pd.DataFrame:
    """Rows of the topic's archive table whose ``kafka_ts`` is within the last ``lookback_hours``
    (0 = the whole table), at most ``max_rows``, as pandas."""
    ident = archive_identifier(topic, namespace)
    try:
        table = catalog.load_table(ident)
    except NoSuchTableError as exc:
        raise TableMissingError(f"archive table {ident} does not exist") from exc
    if lookback_hours > 0:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        scan = table.scan(row_filter=ts_range_filter(now - lookback_hours * 3_600_000, now + 3_600_000),
                          limit=max_rows)
    else:
        scan = table.scan(limit=max_rows)
    return scan.to_pandas()


def _sample_items(kv: KVStore, ns: Namespace, sample_size: int, splits: int = 8) -> Iterator[tuple[Any, ...]]:
    """Up to ``sample_size`` (record_id, item_key, updated_at, ttl) rows, spread over ``splits`` token
    ranges (equal share from each, so the sample is not just the lowest tokens)."""
    t = kv.table(ns)
    ps = kv.prepare(t, "SELECT record_id, item_key, updated_at, TTL(updated_at) FROM {t} "
                       "WHERE token(record_id) > ? AND token(record_id) <= ? LIMIT ?")
    per = max(1, sample_size // splits)
    session = kv.session(t)
    for lo, hi in token_ranges(splits):
        yield from session.execute(ps, (lo, hi, per))


def table_default_ttl(kv: KVStore, ns: Namespace) -> int | None:
    t = kv.table(ns)
    row = kv.session(t).execute(
        "SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
        (t.keyspace, t.name)).one()
    return None if row is None else int(row[0])


def sample_namespace(store: GraphStore, spec: GraphSpec, ns: Namespace, sample_size: int = 2000) -> pd.DataFrame:
    """A sample of a namespace's items with their remaining TTL and, for edges, whether an endpoint
    node is missing (``orphan``, checked with batched node gets on both ends)."""
    rows = [tuple(r) for r in _sample_items(store.kv, ns, sample_size)]
    df = pd.DataFrame(rows, columns=["record_id", "item_key", "updated_at", "ttl_remaining"])
    if ns.kind == "edge" and len(df):
        et = spec.edges[ns.type]
        srcs = store.get_nodes(et.src, df["record_id"].tolist())
        dsts = store.get_nodes(et.dst, df["item_key"].tolist())
        df["src_exists"] = df["record_id"].map(lambda i: i in srcs)
        df["dst_exists"] = df["item_key"].map(lambda i: i in dsts)
        df["orphan"] = ~(df["src_exists"] & df["dst_exists"])
    elif ns.kind == "edge":
        df["orphan"] = pd.Series(dtype=bool)
    return df
