"""The query service's node cache on the real store: hits within the TTL, never an answer past it,
bounded size (LRU), and its hit ratio in /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rdg_platform.kv import GraphStore, Node, ensure_schema
from rdg_platform.model import GraphRecord
from rdg_platform.serving.cache import MISSING, NodeCache
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def store(services: object, cfg: Settings) -> Iterator[GraphStore]:
    ks = unique_keyspace("rdg_test_ncache")
    spec = isolated_spec(ks, cfg)
    gs = GraphStore.from_spec(spec, cfg.cassandra)
    ensure_schema(gs.kv, spec)
    yield gs
    gs.kv.drop_keyspaces()
    gs.close()


def account(i: str, plan: str, ts: int) -> GraphRecord:
    return GraphRecord("node", "account", i, None, {"country": "FR", "plan": plan, "last_seen_ts": ts}, ts)


def test_cache_serves_within_ttl_and_never_after(store: GraphStore) -> None:
    clock = Clock()
    reg = CollectorRegistry()
    cache = NodeCache(100, 1.0, clock, registry=reg)
    store.write([account("c1", "basic", 10)])

    async def get(i: str) -> Node | None:
        return await cache.get(store, "account", i)

    n1 = asyncio.run(get("c1"))
    assert n1 is not None and n1.properties["plan"] == "basic"
    store.write([account("c1", "premium", 20)])  # Cassandra changes; the entry is 0 s old
    clock.t += 0.999
    assert asyncio.run(get("c1")) == n1  # within the TTL: the cached answer (stale by design)
    clock.t += 0.001  # exactly ttl_s after it was stored: expired, never served
    n2 = asyncio.run(get("c1"))
    assert n2 is not None and n2.properties["plan"] == "premium" and n2.updated_at == 20
    # "not found" is cached the same way, and expires the same way
    assert asyncio.run(get("c2")) is None
    store.write([account("c2", "std", 30)])
    assert asyncio.run(get("c2")) is None
    clock.t += 1.0
    assert asyncio.run(get("c2")) is not None
    assert (cache.hits, cache.misses) == (2, 4)
    text = generate_latest(reg).decode()
    assert "rdg_api_node_cache_hits_total 2.0" in text and "rdg_api_node_cache_misses_total 4.0" in text
    assert "rdg_api_node_cache_hit_ratio 0.333" in text


def test_cache_is_bounded_lru(store: GraphStore) -> None:
    clock = Clock()
    cache = NodeCache(3, 60.0, clock)
    store.write([account(f"lru{i}", "p", 1) for i in range(5)])

    async def run() -> None:
        for i in (0, 1, 2):
            await cache.get(store, "account", f"lru{i}")
        await cache.get(store, "account", "lru0")  # touch lru0: lru1 is now the least recent
        await cache.get(store, "account", "lru3")  # evicts lru1
        assert len(cache) == 3
        assert cache.lookup("account", "lru1") is MISSING and cache.lookup("account", "lru0") is not MISSING
        hits = cache.hits
        got = await cache.get_many(store, "account", ["lru0", "lru2", "lru3", "lru1"])
        assert list(got) == ["lru0", "lru2", "lru3", "lru1"]
        assert cache.hits - hits == 3  # lru1 was read again

    asyncio.run(run())


def test_disabled_cache_reads_through(store: GraphStore) -> None:
    cache = NodeCache(0, 1.0)
    store.write([account("off1", "p", 1)])
    assert asyncio.run(cache.get(store, "account", "off1")) is not None
    assert len(cache) == 0 and cache.hits == 0


def test_metrics_route_reports_the_cache(store: GraphStore, cfg: Settings) -> None:
    from rdg_platform.serving.app import create_app

    app = create_app(store=store, settings=cfg)
    assert cfg.api.token is not None
    token = cfg.api.token.get_secret_value()
    store.write([account("m1", "p", 1)])

    async def run() -> str:
        tr = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=tr, base_url="http://t",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(3):
                assert (await c.get("/v1/nodes/account/m1")).status_code == 200
            return (await c.get("/metrics")).text

    text = asyncio.run(run())
    assert "rdg_api_node_cache_hits_total 2.0" in text and "rdg_api_node_cache_misses_total 1.0" in text
