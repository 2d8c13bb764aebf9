"""Supernodes: order=latest on a list far longer than one page reads its newest-first index, not the
whole partition, and still answers exactly what reading everything would (re-written edges, deleted
edges, since, paging, erasure)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rdg_platform.kv import GraphStore, ensure_schema
from rdg_platform.kv.graph_store import EdgeCursor
from rdg_platform.model import GraphRecord
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace

pytestmark = pytest.mark.integration

TITLE = "t-popular"
N = 3000  # in-edges of the popular title (the first page read is 128)


def watch(profile: str, ts: int) -> GraphRecord:
    return GraphRecord("edge", "started_watching", profile, TITLE,
                       {"last_watch_ts": ts, "device_id": "d", "position_ms": ts, "episode_id": "e",
                        "action": "play", "is_live": False}, ts)


@pytest.fixture(scope="module")
def store(services: object, cfg: Settings) -> Iterator[GraphStore]:
    ks = unique_keyspace("rdg_test_super")
    spec = isolated_spec(ks, cfg)
    gs = GraphStore.from_spec(spec, cfg.cassandra)
    ensure_schema(gs.kv, spec)
    # profile p<i> watched at 1_000_000 + 7 * i (distinct times, not in key order)
    gs.write([watch(f"p{i:05d}", 1_000_000 + 7 * ((i * 7919) % N)) for i in range(N)])
    yield gs
    gs.kv.drop_keyspaces()
    gs.close()


def expected(times: dict[str, int], limit: int, since: int = 0) -> list[tuple[str, int]]:
    """The oracle: every live in-edge, newest first, ties by id, cut to ``limit``."""
    live = sorted(((-ts, p) for p, ts in times.items() if ts >= since))
    return [(p, -neg) for neg, p in live[:limit]]


def state() -> dict[str, int]:
    return {f"p{i:05d}": 1_000_000 + 7 * ((i * 7919) % N) for i in range(N)}


def got(store: GraphStore, limit: int, since: int | None = None, after: EdgeCursor | None = None
        ) -> tuple[list[tuple[str, int]], EdgeCursor | None]:
    page = store.edges("started_watching", TITLE, "in", limit=limit, since_ms=since, after=after)
    return [(e.src, e.updated_at) for e in page.edges], page.next_cursor


def test_latest_reads_the_index_and_matches_the_oracle(store: GraphStore) -> None:
    rev = store.edge_table("started_watching", "in")
    assert store.latest_index(rev) is not None
    times = state()
    edges, cur = got(store, 100)
    assert edges == expected(times, 100) and cur is not None
    # the list is now known to be long: the next read goes straight to the index, same answer
    assert store._is_long_list(rev, TITLE)  # noqa: SLF001
    assert got(store, 100)[0] == expected(times, 100)
    page = store.edges("started_watching", TITLE, "in", limit=3)
    assert page.edges[0].properties == {"last_watch_ts": edges[0][1], "device_id": "d", "position_ms": edges[0][1],
                                        "episode_id": "e", "action": "play", "is_live": False}


def test_rewrites_deletes_since_and_paging(store: GraphStore) -> None:
    times = state()
    # re-write 50 old edges as the newest ones (their older index entries stay behind, stale)
    for i in range(50):
        p = f"p{i:05d}"
        times[p] = 2_000_000 + i
        store.write([watch(p, times[p])])
    # a late, older write of an edge changes nothing
    store.write([watch("p00000", 1)])
    # a newer partial write (position only): the newest index entry holds only that property, so
    # the edge is read from its row: the last full write's properties with the new position
    store.write([GraphRecord("edge", "started_watching", "p00010", TITLE, {"position_ms": 7}, 2_500_000)])
    times["p00010"] = 2_500_000
    # delete the newest edge and one in the middle of the old ones
    store.delete_edge("started_watching", "p00049", TITLE, 3_000_000)
    del times["p00049"]
    mid = expected(times, 200)[150][0]
    store.delete_edge("started_watching", mid, TITLE, 3_000_000)
    del times[mid]
    assert got(store, 100)[0] == expected(times, 100)
    top = store.edges("started_watching", TITLE, "in", limit=1).edges[0]
    assert (top.src, top.updated_at) == ("p00010", 2_500_000)
    assert top.properties == {"last_watch_ts": 2_000_010, "device_id": "d", "position_ms": 7, "episode_id": "e",
                              "action": "play", "is_live": False}
    # page through the first 1000 in pages of 100: exactly the oracle's first 1000, no repeats
    seen: list[tuple[str, int]] = []
    cur = None
    for _ in range(10):
        edges, cur = got(store, 100, after=cur)
        seen.extend(edges)
        assert cur is not None
    assert seen == expected(times, 1000)
    since = sorted(times.values())[-120]  # only the newest 120 are within the lookback
    edges, cur = got(store, 500, since=since)
    assert edges == expected(times, 500, since) and len(edges) == 120 and cur is None


def test_erasing_a_node_removes_its_index_entries(store: GraphStore) -> None:
    """An erased profile's edges leave no trace in the title's index (deletion of its adjacency)."""
    victim = "p01000"
    store.delete_adjacency("started_watching", victim, "out", 4_000_000)
    rev = store.edge_table("started_watching", "in")
    idx = store.latest_index(rev)
    assert idx is not None
    rows = store.kv.session(idx).execute(
        f"SELECT item_key FROM {idx.fq} WHERE record_id = %s AND item_key = %s ALLOW FILTERING",  # noqa: S608
        (TITLE, victim))
    assert list(rows) == []
    assert victim not in {e.src for e in store.edges("started_watching", TITLE, "in", limit=N).edges}


def test_a_long_list_hint_on_a_short_list_changes_no_answer(store: GraphStore) -> None:
    """The long-list hint only saves a read: a list read through the index when it is short (e.g. it
    shrank after the hint) gives exactly its edges, newest first."""
    small = "t-small"
    times = {f"q{i}": 5_000_000 + (i * 37) % 11 * 1000 + i for i in range(10)}
    store.write([GraphRecord("edge", "started_watching", p, small,
                             {"last_watch_ts": ts, "device_id": "d", "position_ms": ts, "episode_id": "e",
                              "action": "play", "is_live": False}, ts) for p, ts in times.items()])
    rev = store.edge_table("started_watching", "in")
    assert not store._is_long_list(rev, small)  # noqa: SLF001
    page = store.edges("started_watching", small, "in", limit=5)
    plain = [(e.src, e.updated_at) for e in page.edges]
    store._mark_long_list(rev, small)  # noqa: SLF001
    page = store.edges("started_watching", small, "in", limit=5)
    assert [(e.src, e.updated_at) for e in page.edges] == plain == expected(times, 5)
    page = store.edges("started_watching", small, "in", limit=50)
    assert [(e.src, e.updated_at) for e in page.edges] == expected(times, 50) and page.next_cursor is None
