"""KV layer and graph store on the real Cassandra: schema, LWW, TTL, paging, reverse edges, routing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rdg_platform.kv import (
    NODE_ITEM,
    Edge,
    EdgeCursor,
    GraphStore,
    KVItem,
    Node,
    UnknownTypeError,
    ensure_schema,
)
from rdg_platform.kv.versions import META_TABLE
from rdg_platform.model import GraphRecord
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keyspaces() -> tuple[str, str]:
    return unique_keyspace("rdg_test_kv"), unique_keyspace("rdg_test_kv2")


@pytest.fixture(scope="module")
def store(services: object, cfg: Settings, keyspaces: tuple[str, str]) -> Iterator[GraphStore]:
    ks, ks2 = keyspaces
    spec = isolated_spec(ks, cfg, namespaces={"edge.plays": {"keyspace": ks2}, "node.game": {"ttl_s": 2}})
    gs = GraphStore.from_spec(spec, cfg.cassandra)
    ensure_schema(gs.kv, spec)
    ensure_schema(gs.kv, spec)  # idempotent
    yield gs
    gs.kv.drop_keyspaces()
    gs.close()


def node(t: str, i: str, props: dict[str, object], ts: int) -> GraphRecord:
    return GraphRecord("node", t, i, None, props, ts)


def edge(t: str, s: str, d: str, props: dict[str, object], ts: int) -> GraphRecord:
    return GraphRecord("edge", t, s, d, props, ts)


def test_lww_older_event_after_newer_is_ignored(store: GraphStore) -> None:
    store.write([node("account", "lww1", {"country": "FR", "plan": "premium"}, 2_000)])
    store.write([node("account", "lww1", {"country": "US", "plan": "basic"}, 1_000)])  # late, older
    n = store.get_node("account", "lww1")
    assert n is not None
    assert n.properties == {"country": "FR", "plan": "premium"}
    assert n.updated_at == 2_000

    store.write([edge("logged_in_from", "lww1", "dev1", {"device_type": "tv"}, 5_000)])
    store.write([edge("logged_in_from", "lww1", "dev1", {"device_type": "phone"}, 4_000)])
    for page in (store.edges("logged_in_from", "lww1"), store.edges("logged_in_from", "dev1", "in")):
        assert [(e.properties["device_type"], e.updated_at) for e in page.edges] == [("tv", 5_000)]


def test_partial_updates_merge_per_property(store: GraphStore) -> None:
    """A playback event (only last_seen_ts) must not erase the login's country/plan."""
    store.write([node("account", "merge1", {"country": "BR", "plan": "std", "last_seen_ts": 10}, 10)])
    store.write([node("account", "merge1", {"last_seen_ts": 20}, 20)])
    store.write([node("account", "merge1", {"plan": "old"}, 5)])  # older partial: ignored
    n = store.get_node("account", "merge1")
    assert n == Node("account", "merge1", {"country": "BR", "plan": "std", "last_seen_ts": 20}, 20)


def test_replays_converge_regardless_of_order(store: GraphStore) -> None:
    recs = [node("profile", f"rp{i % 3}", {"account_id": f"acc{i}", "last_seen_ts": 100 + i}, 100 + i)
            for i in range(12)]
    store.write(list(reversed(recs)))
    first = store.get_nodes("profile", ["rp0", "rp1", "rp2"])
    store.write(recs)
    store.write(recs[::2])
    assert store.get_nodes("profile", ["rp0", "rp1", "rp2"]) == first
    assert first["rp0"].properties == {"account_id": "acc9", "last_seen_ts": 109}


def test_values_decoded_with_types(store: GraphStore) -> None:
    store.write([node("title", "t-types", {"name": "X", "runtime_min": 42, "genres": ["a", "b"]}, 1)])
    n = store.get_node("title", "t-types")
    assert n is not None and n.properties == {"name": "X", "runtime_min": 42, "genres": ["a", "b"]}
    assert store.get_node("title", "absent") is None
    with pytest.raises(UnknownTypeError):
        store.get_node("nope", "x")


def test_item_ttl_and_namespace_ttl_expire(store: GraphStore) -> None:
    now = int(time.time() * 1000)
    store.kv.put_items("node.device", [KVItem("ttl-dev", NODE_ITEM, {"device_type": "tv"}, None, now, ttl_s=2),
                                       KVItem("keep-dev", NODE_ITEM, {"device_type": "tv"}, None, now)])
    store.write([node("game", "ttl-game", {"name": "g"}, now)])  # namespace ttl_s=2 by config
    assert store.get_node("device", "ttl-dev") is not None
    assert store.get_node("game", "ttl-game") is not None
    time.sleep(3.2)
    assert store.get_node("device", "ttl-dev") is None
    assert store.get_node("game", "ttl-game") is None
    assert store.get_node("device", "keep-dev") is not None


def test_paging_through_10000_item_adjacency_list(store: GraphStore) -> None:
    n = 10_000
    base = 1_700_000_000_000
    store.write([edge("streamed_from", "big", f"d{i:05d}", {"title_id": f"t{i}"}, base + (i * 7919) % n)
                 for i in range(n)])
    # order=any: key order, stable cursor pages
    seen: list[str] = []
    cursor: EdgeCursor | None = None
    pages = 0
    while True:
        page = store.edges("streamed_from", "big", limit=1000, order="any", after=cursor)
        seen.extend(e.dst for e in page.edges)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 10 and len(seen) == n and seen == sorted(seen) and len(set(seen)) == n
    # order=latest: newest first across the whole list, paged without gaps or duplicates
    latest: list[int] = []
    cursor = None
    while True:
        page = store.edges("streamed_from", "big", limit=2500, order="latest", after=cursor)
        latest.extend(e.updated_at for e in page.edges)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(latest) == n and latest == sorted(latest, reverse=True)
    top = store.edges("streamed_from", "big", limit=3, order="latest").edges
    assert [e.updated_at for e in top] == [base + n - 1, base + n - 2, base + n - 3]
    assert all(e.properties["title_id"].startswith("t") for e in top)
    # since filter + any: only the newest 100
    recent = store.edges("streamed_from", "big", limit=1000, order="any", since_ms=base + n - 100).edges
    assert len(recent) == 100
    # the generic KV read pages the same record by size
    items, after, kv_pages = 0, None, 0
    while True:
        ip = store.kv.get_items("edge.streamed_from", "big", page_size=3000, after=after)
        items += len(ip.items)
        kv_pages += 1
        after = ip.next_after
        if after is None:
            break
    assert items == n and kv_pages == 4


def test_reverse_edges_are_one_lookup(store: GraphStore) -> None:
    store.write([edge("started_watching", f"prof{i}", "title-rev", {"position_ms": i}, 1_000 + i) for i in range(5)])
    page = store.edges("started_watching", "title-rev", direction="in", limit=10)
    assert [e.src for e in page.edges] == ["prof4", "prof3", "prof2", "prof1", "prof0"]
    assert all(e.dst == "title-rev" and e.type == "started_watching" for e in page.edges)
    assert page.edges[0] == Edge("started_watching", "prof4", "title-rev", {"position_ms": 4}, 1_004)
    store.delete_edge("started_watching", "prof4", "title-rev", event_time_ms=2_000)
    assert store.edges("started_watching", "prof4").edges == []
    assert len(store.edges("started_watching", "title-rev", direction="in").edges) == 4


def test_namespace_routed_to_second_keyspace(store: GraphStore, keyspaces: tuple[str, str]) -> None:
    ks, ks2 = keyspaces
    store.write([edge("plays", "prof-g", "game-1", {"session_id": "s1"}, 10)])
    assert [e.dst for e in store.edges("plays", "prof-g").edges] == ["game-1"]
    assert [e.src for e in store.edges("plays", "game-1", "in").edges] == ["prof-g"]
    session = store.kv.cluster_session("default")
    q = session.prepare("SELECT keyspace_name, table_name FROM system_schema.tables WHERE keyspace_name IN ?")
    tables = {(r[0], r[1]) for r in session.execute(q, ([ks, ks2],))}
    assert (ks2, "edge_plays") in tables and (ks2, "edge_plays_in") in tables
    assert (ks, "edge_plays") not in tables and (ks, "edge_has_profile") in tables
    assert (ks, META_TABLE) in tables and (ks2, META_TABLE) in tables  # every keyspace has its pointer
    rows = list(session.execute(f"SELECT record_id, item_key FROM {ks2}.edge_plays"))  # noqa: S608
    assert rows == [("prof-g", "game-1")]


def test_kv_get_items_filters_delete_mutate_scan(store: GraphStore) -> None:
    kv = store.kv
    ns = "node.title"
    kv.put_items(ns, [KVItem("rec", k, {"k": k}, k.encode(), 100) for k in ("a1", "a2", "b1", "b2", "c1")])
    keys = lambda p: [i.item_key for i in p.items]  # noqa: E731
    assert keys(kv.get_items(ns, "rec", prefix="b")) == ["b1", "b2"]
    assert keys(kv.get_items(ns, "rec", start="a2", end="c1")) == ["a2", "b1", "b2"]
    assert keys(kv.get_items(ns, "rec", keys=["c1", "a1", "zz"])) == ["a1", "c1"]
    p1 = kv.get_items(ns, "rec", page_size=2)
    p2 = kv.get_items(ns, "rec", page_size=2, after=p1.next_after)
    p3 = kv.get_items(ns, "rec", page_size=2, after=p2.next_after)
    assert keys(p1) + keys(p2) + keys(p3) == ["a1", "a2", "b1", "b2", "c1"] and p3.next_after is None
    assert keys(kv.get_items(ns, "rec", prefix="a", after="a1")) == ["a2"]
    assert kv.get_items(ns, "rec", keys=["a1"]).items[0].value == b"a1"
    kv.delete_items(ns, "rec", ["a1"], event_time_ms=50)  # older than the write: no effect
    assert "a1" in keys(kv.get_items(ns, "rec"))
    kv.delete_items(ns, "rec", ["a1"], event_time_ms=150)
    assert "a1" not in keys(kv.get_items(ns, "rec"))
    kv.mutate(ns, "rec", puts=[KVItem("rec", "d1", {"x": 1}, None, 200)], deletes=["a2"], event_time_ms=200)
    assert keys(kv.get_items(ns, "rec")) == ["b1", "b2", "c1", "d1"]
    scanned = {(i.record_id, i.item_key) for i in kv.scan(ns, splits=8, page_size=2)}
    assert {("rec", "b1"), ("rec", "d1")} <= scanned and ("rec", "a2") not in scanned
    kv.delete_items(ns, "rec", event_time_ms=10_000)
    assert kv.get_items(ns, "rec").items == []


def test_edges_many_matches_per_node_reads(store: GraphStore) -> None:
    """The multi-partition read of a frontier gives each node exactly what its own read gives:
    short lists from the IN response, a list longer than the per-partition page (300 > 128) through
    the exact single-partition fallback, a missing node as an empty list, and ``since`` applied."""
    recs = [edge("started_watching", f"em-p{p}", f"em-t{t:03d}", {"last_watch_ts": 1_000 + 7 * t + p},
                 1_000 + ((7 * t + 13 * p) % 211)) for p in range(4) for t in range(3 + 5 * p)]
    recs += [edge("started_watching", "em-big", f"em-t{t:03d}", {"last_watch_ts": t}, 1_000 + (t * 37) % 997)
             for t in range(300)]
    store.write(recs)
    nodes = [f"em-p{p}" for p in range(4)] + ["em-big", "em-none"]
    for order in ("latest", "any"):
        for limit, since in ((5, None), (10, 1_100), (200, None)):
            got = store.edges_many("started_watching", nodes, "out", limit, since, order)
            assert list(got) == nodes
            for n in nodes:
                want = store.edges("started_watching", n, "out", limit, since, order).edges
                assert got[n] == want, (order, limit, since, n)
    assert len(store.edges_many("started_watching", ["em-big"], limit=200)["em-big"]) == 200
    into = store.edges_many("started_watching", ["em-t000", "em-t002"], "in", limit=10)
    assert [e.src for e in into["em-t000"]] == [e.src for e in store.edges(
        "started_watching", "em-t000", "in", 10).edges]
    assert {e.src for e in into["em-t002"]} == {"em-p0", "em-p1", "em-p2", "em-p3", "em-big"}


def test_get_nodes_batch_keeps_request_order_and_skips_missing(store: GraphStore) -> None:
    store.write([node("profile", f"gn{i}", {"account_id": f"a{i}"}, 10 + i) for i in range(150)])
    ids = [f"gn{i}" for i in range(149, -1, -3)] + ["gn-missing", "gn0"]
    got = store.get_nodes("profile", ids)
    assert list(got) == list(dict.fromkeys(i for i in ids if i != "gn-missing"))
    assert got["gn149"] == Node("profile", "gn149", {"account_id": "a149"}, 159)


def test_ping_reports_every_cluster(store: GraphStore) -> None:
    versions = store.ping()
    assert list(versions) == ["default"] and versions["default"][:1].isdigit()


def test_reads_do_not_create_tables(services: object, cfg: Settings) -> None:
    """Only ensure_schema creates tables: a store on a fresh keyspace fails its reads instead."""
    from cassandra import InvalidRequest

    spec = isolated_spec(unique_keyspace("rdg_test_noschema"), cfg)
    gs = GraphStore.from_spec(spec, cfg.cassandra)
    try:
        with pytest.raises(InvalidRequest):
            gs.get_node("account", "x")
        session = gs.kv.cluster_session("default")
        q = session.prepare("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?")
        assert session.execute(q, (spec.namespaces["node.account"].keyspace,)).one() is None
    finally:
        gs.close()


def test_full_writes_are_one_blob_and_lww_stays_per_property(store: GraphStore) -> None:
    """account's properties are country, plan, last_seen_ts: a record with all three is a full
    write (the blob column), any other a partial one (map cells); LWW holds across the two."""
    store.write([node("account", "blob1", {"country": "FR", "plan": "basic", "last_seen_ts": 10}, 10)])
    t = store.node_table("account")
    row = store.kv.session(t).execute(f"SELECT props, pb FROM {t.fq} WHERE record_id = 'blob1'").one()  # noqa: S608 - spec table name
    assert row[0] is None and row[1] is not None  # one blob, no map cells
    store.write([node("account", "blob1", {"plan": "premium"}, 20)])  # newer partial: wins for plan
    store.write([node("account", "blob1", {"country": "US"}, 5)])  # older partial: shadowed by the blob
    n = store.get_node("account", "blob1")
    assert n == Node("account", "blob1", {"country": "FR", "plan": "premium", "last_seen_ts": 10}, 20)
    # an older full write arriving late changes nothing; a newer one replaces every property
    store.write([node("account", "blob1", {"country": "DE", "plan": "x", "last_seen_ts": 1}, 1)])
    assert store.get_node("account", "blob1") == n
    store.write([node("account", "blob1", {"country": "IT", "plan": "std", "last_seen_ts": 30}, 30)])
    assert store.get_node("account", "blob1") == Node("account", "blob1",
                                                      {"country": "IT", "plan": "std", "last_seen_ts": 30}, 30)
    # a partial write at the same event time as the full one wins for its property
    store.write([node("account", "blob1", {"plan": "tie"}, 30)])
    assert store.get_node("account", "blob1").properties["plan"] == "tie"  # type: ignore[union-attr]


def test_any_write_order_converges(store: GraphStore) -> None:
    import itertools

    recs = [node("account", "conv", {"country": "FR", "plan": "a", "last_seen_ts": 10}, 10),
            node("account", "conv", {"plan": "b"}, 15),
            node("account", "conv", {"country": "US", "plan": "c", "last_seen_ts": 12}, 12),
            node("account", "conv", {"last_seen_ts": 20}, 20)]
    # by hand, per property, the newest event time that carried it: country US@12, plan b@15, last_seen 20@20
    want = {"country": "US", "plan": "b", "last_seen_ts": 20}
    for i, order in enumerate(itertools.permutations(recs)):
        rid = f"conv{i}"
        for r in order:
            store.write([GraphRecord(r.kind, r.type, rid, None, r.properties, r.updated_at)])
        assert store.get_node("account", rid) == Node("account", rid, want, 20), order


def test_version_1_table_is_read_and_upgraded(services: object, cfg: Settings) -> None:
    """A table created with the map-only layout (codec version 1) keeps serving its rows after
    ensure_schema adds the blob column, and new full writes land in the blob."""
    from rdg_platform.kv.versions import table_checksum

    ks = unique_keyspace("rdg_test_kvv1")
    spec = isolated_spec(ks, cfg)
    gs = GraphStore.from_spec(spec, cfg.cassandra)
    try:
        t = gs.node_table("account")
        session = gs.kv.cluster_session(t.cluster)
        session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        session.execute(f"CREATE TABLE {t.fq} (record_id text, item_key text, props map<text, text>, value blob, "
                        "updated_at bigint, PRIMARY KEY ((record_id), item_key))")
        old_upsert = f"UPDATE {t.fq} USING TIMESTAMP 10000 SET props = props + %s, updated_at = 10 WHERE record_id = %s AND item_key = %s"  # noqa: S608,E501
        session.execute(old_upsert, ({"country": '"FR"', "plan": '"basic"'}, "old", NODE_ITEM))
        before = table_checksum(session, ks, t.name)
        ensure_schema(gs.kv, spec)
        assert table_checksum(session, ks, t.name) == before  # same state, same digest
        assert gs.get_node("account", "old") == Node("account", "old", {"country": "FR", "plan": "basic"}, 10)
        gs.write([node("account", "old", {"last_seen_ts": 20}, 20)])
        gs.write([node("account", "new", {"country": "US", "plan": "std", "last_seen_ts": 5}, 5)])
        assert gs.get_node("account", "old") == Node("account", "old",
                                                     {"country": "FR", "plan": "basic", "last_seen_ts": 20}, 20)
        assert gs.get_node("account", "new") == Node("account", "new",
                                                     {"country": "US", "plan": "std", "last_seen_ts": 5}, 5)
    finally:
        gs.kv.drop_keyspaces()
        gs.close()
