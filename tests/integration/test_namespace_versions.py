"""Blue/green namespace versions on the real Cassandra: a long-lived GraphStore (reads AND writes)
and the HTTP API follow a pointer switch within the refresh interval, with no restart; rolling
back is one more pointer write."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rdg_platform.kv import GraphStore, ensure_schema, versions
from rdg_platform.kv.versions import META_TABLE, read_pointers
from rdg_platform.model import GraphRecord
from rdg_platform.model.spec import GraphSpec
from rdg_platform.serving.app import create_app
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.poll import seconds_until
from tests.support.serving import serve_in_thread

pytestmark = pytest.mark.integration

REFRESH_S = 1.0
SWITCHED = ("node.account", "edge.logged_in_from")


@pytest.fixture(scope="module")
def base_spec(services: object, cfg: Settings) -> Iterator[GraphSpec]:
    spec = isolated_spec(unique_keyspace("rdg_test_nsver"), cfg)
    admin = GraphStore.from_spec(spec, cfg.cassandra, version_refresh_s=None)
    ensure_schema(admin.kv, spec)
    yield spec
    admin.kv.drop_keyspaces()
    admin.close()


def _v(spec: GraphSpec, version: int) -> GraphSpec:
    """``spec`` with the switched namespaces pointed at ``version`` (a rebuild's target tables)."""
    ns = {name: versions.versioned(n, version) if name in SWITCHED else n for name, n in spec.namespaces.items()}
    return dataclasses.replace(spec, namespaces=ns)


def _wait(probe: Callable[[], Any], want: Any, timeout: float) -> float:
    return seconds_until(probe, want, timeout_s=timeout)


def _plan(store: GraphStore) -> Any:
    n = store.get_node("account", "acc1")
    return None if n is None else n.properties.get("plan")


def _devices(store: GraphStore) -> list[str]:
    return [e.dst for e in store.edges("logged_in_from", "acc1", order="any").edges]


def test_graph_store_and_api_follow_a_version_switch(base_spec: GraphSpec, cfg: Settings) -> None:
    spec = base_spec
    ks = spec.namespace("node", "account").keyspace
    # v1 (the spec's own tables) written through a long-lived store, like a sink
    sink = GraphStore.from_spec(spec, cfg.cassandra, version_refresh_s=REFRESH_S)
    sink.write([GraphRecord("node", "account", "acc1", None, {"plan": "v1"}, 1_000),
                GraphRecord("edge", "logged_in_from", "acc1", "dev1", {"device_type": "TV"}, 1_000)])
    reader = GraphStore.from_spec(spec, cfg.cassandra, version_refresh_s=REFRESH_S)
    api_store = GraphStore.from_spec(spec, cfg.cassandra, version_refresh_s=REFRESH_S)
    static_v0 = GraphStore.from_spec(spec, cfg.cassandra, version_refresh_s=None)
    static_v2 = GraphStore.from_spec(_v(spec, 2), cfg.cassandra, version_refresh_s=None)
    try:
        assert _plan(reader) == "v1" and _devices(reader) == ["dev1"]

        assert cfg.api.token is not None
        auth = {"Authorization": f"Bearer {cfg.api.token.get_secret_value()}"}
        with serve_in_thread(create_app(store=api_store, settings=cfg)) as url, \
                httpx.Client(base_url=url, timeout=10, headers=auth) as http:
            def api_plan() -> Any:
                r = http.get("/v1/nodes/account/acc1")
                return r.json()["properties"]["plan"] if r.status_code == 200 else r.status_code

            def api_devices() -> list[str]:
                r = http.get("/v1/edges/logged_in_from/dev2", params={"direction": "in"})
                return [e["src"] for e in r.json()["edges"]]

            assert api_plan() == "v1" and api_devices() == []

            # the rebuild: v2 tables with different content, then one pointer write per namespace
            ensure_schema(static_v2.kv, static_v2.spec)
            static_v2.write([GraphRecord("node", "account", "acc1", None, {"plan": "v2"}, 500),
                             GraphRecord("edge", "logged_in_from", "acc1", "dev2", {"device_type": "PC"}, 500)])
            time.sleep(REFRESH_S * 1.5)  # every store has checked the pointer at least once meanwhile
            assert _plan(reader) == "v1" and api_plan() == "v1"  # not switched yet: still v1
            session = reader.kv.cluster_session(spec.namespace("node", "account").cluster)
            for name in SWITCHED:
                versions.switch_version(session, spec.namespaces[name], 2, rows=1, checksum="test")
            v2_table = versions.versioned(spec.namespaces["node.account"], 2).table
            assert read_pointers(session, ks)["node.account"].table == v2_table
            switched_at = time.monotonic()

            # a long-lived store and the API serve v2 within the refresh interval (+ one read's slack)
            budget = REFRESH_S + 1.5
            assert _wait(lambda: _plan(reader), "v2", budget) <= budget
            assert _devices(reader) == ["dev2"]
            assert [e.src for e in reader.edges("logged_in_from", "dev2", "in").edges] == ["acc1"]
            assert _wait(api_plan, "v2", budget) <= budget
            assert api_devices() == ["acc1"]
            assert time.monotonic() - switched_at <= 2 * budget

            # the sink follows too: its next writes land in v2 only
            _wait(lambda: sink.active_namespaces()["node.account"].table, v2_table, budget)
            sink.write([GraphRecord("node", "account", "acc2", None, {"plan": "new"}, 2_000)])
            assert static_v2.get_node("account", "acc2") is not None
            assert static_v0.get_node("account", "acc2") is None
            # untouched namespaces keep their tables
            assert reader.active_namespaces()["node.device"] == spec.namespaces["node.device"]

            # rollback = one more pointer write
            for name in SWITCHED:
                versions.switch_version(session, versions.versioned(spec.namespaces[name], 2), 0, rows=1,
                                        checksum="test")
            assert _wait(lambda: _plan(reader), "v1", budget) <= budget
            assert _wait(api_plan, "v1", budget) <= budget
            pinned = GraphStore.from_spec(_v(spec, 2), cfg.cassandra, version_refresh_s=REFRESH_S)  # e.g. a rebuild's writer
            try:
                assert _plan(pinned) == "v2"  # a spec naming a version never follows the pointer
            finally:
                pinned.close()
            rows = list(session.execute(f"SELECT namespace, version FROM {ks}.{META_TABLE}"))  # noqa: S608
            assert sorted((r[0], r[1]) for r in rows) == [("edge.logged_in_from", 0), ("node.account", 0)]
    finally:
        for s in (sink, reader, api_store, static_v0, static_v2):
            s.close()


def test_pointer_reads_tolerate_a_missing_keyspace(services: object, cfg: Settings) -> None:
    """A store whose keyspace does not exist yet serves the spec's tables (no switch happened)."""
    spec = isolated_spec(unique_keyspace("rdg_test_nsver_none"), cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra, version_refresh_s=REFRESH_S)
    try:
        assert store.refresh_versions() is False
        assert store.active_namespaces() == spec.namespaces
    finally:
        store.close()


def test_pointer_rows_are_revalidated(base_spec: GraphSpec, cfg: Settings) -> None:
    """A pointer row naming something that is not a plain identifier is refused, never used in CQL;
    a long-lived store keeps serving its current tables meanwhile."""
    spec = base_spec
    ns = spec.namespaces["node.device"]
    store = GraphStore.from_spec(spec, cfg.cassandra, version_refresh_s=None)
    try:
        session = store.kv.cluster_session(ns.cluster)
        insert = session.prepare(f"INSERT INTO {ns.keyspace}.{META_TABLE} (namespace, version, table_name) "  # noqa: S608
                                 "VALUES (?, ?, ?)")
        session.execute(insert, (ns.name, 9, "node_device; DROP KEYSPACE x"))
        try:
            with pytest.raises(ValueError, match="not a safe identifier"):
                read_pointers(session, ns.keyspace)
            with pytest.raises(ValueError, match="not a safe identifier"):
                versions.active_version(session, ns)
            with pytest.raises(ValueError, match="not a safe identifier"):
                store.refresh_versions()
            assert store.active_namespaces()["node.device"] == ns
        finally:
            session.execute(session.prepare(f"DELETE FROM {ns.keyspace}.{META_TABLE} WHERE namespace = ?"),  # noqa: S608
                            (ns.name,))
    finally:
        store.close()


def test_versioned_table_names() -> None:
    from rdg_platform.model import default_spec

    spec = default_spec()
    plays = spec.namespaces["edge.plays"]
    v3 = versions.versioned(plays, 3)
    assert (v3.table, v3.reverse_table) == ("edge_plays_v3", "edge_plays_v3_in")
    assert versions.base_table(v3) == "edge_plays" and versions.versioned(v3, 0) == plays
    account = versions.versioned(spec.namespaces["node.account"], 1)
    assert (account.table, account.reverse_table) == ("node_account_v1", None)
    with pytest.raises(ValueError):
        versions.versioned(plays, -1)
