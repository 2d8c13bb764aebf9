"""Member erasure on the real services: Cassandra (graph written through the KV layer) and a real
Iceberg SQL catalog (SQLite + file warehouse). The oracle is the graph the tests write down here: which
nodes and edges a member has, which ones another account shares.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from rdg_platform.erasure import ErasureEngine, archive_catalog
from rdg_platform.erasure.archive import archive_tables, count_rows
from rdg_platform.kv import GraphStore, ensure_schema
from rdg_platform.lakehouse.archive import archive_records, read_archive
from rdg_platform.lakehouse.backfill import replay
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.kafka_window import WindowRecord
from rdg_platform.local_services.credentials import local_api_settings, local_role_settings
from rdg_platform.model import GraphRecord
from rdg_platform.settings import IcebergSettings, Settings
from rdg_platform.topology import check_identifier
from tests.support.kv import unique_keyspace
from tests.support.serving import serve_in_thread

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings(services: object, cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The session's services (admin role) with the graph in a keyspace of its own, the archive in a
    fresh SQLite catalog and a 0 s archive grace period."""
    base = tmp_path_factory.mktemp("erasure_iceberg")
    local = CatalogConfig.local(base)
    return cfg.model_copy(update={
        "cassandra": cfg.cassandra.model_copy(update={"keyspace": unique_keyspace("rdg_test_erase")}),
        "iceberg": IcebergSettings(catalog_uri=local.uri, warehouse=local.warehouse),
        "erasure": cfg.erasure.model_copy(update={"archive_grace_s": 0})})


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[GraphStore]:
    spec = settings.load_spec()
    gs = GraphStore.from_spec(spec, settings.cassandra, erasure=settings.erasure)  # a writer: fenced
    ensure_schema(gs.kv, spec)
    yield gs
    gs.kv.drop_keyspaces()
    gs.close()


@pytest.fixture(scope="module")
def engine(store: GraphStore, settings: Settings) -> ErasureEngine:
    e = ErasureEngine.from_settings(store, settings)
    e.ensure_schema()
    return e


def node(t: str, i: str, props: dict[str, Any], ts: int) -> GraphRecord:
    return GraphRecord("node", t, i, None, props, ts)


def edge(t: str, s: str, d: str, ts: int, props: dict[str, Any] | None = None) -> GraphRecord:
    return GraphRecord("edge", t, s, d, props or {"n": 1}, ts)


@dataclass
class Member:
    """A member written through the KV layer, and what an erasure of it must and must not remove."""

    account: str
    other: str  # another account sharing one device and one title
    profiles: list[str]
    devices: list[str]  # used by this account only
    shared_device: str
    titles: list[str]
    game: str
    other_profile: str

    def gone_nodes(self) -> list[tuple[str, str]]:
        return ([("account", self.account)] + [("profile", p) for p in self.profiles]
                + [("device", d) for d in self.devices])

    def kept_nodes(self) -> list[tuple[str, str]]:
        return ([("account", self.other), ("profile", self.other_profile), ("device", self.shared_device),
                 ("game", self.game)] + [("title", t) for t in self.titles])


def write_member(store: GraphStore, prefix: str, ts: int, n_devices: int = 2) -> Member:
    """Account with 2 profiles, ``n_devices`` exclusive devices (logins; the first also streamed), a
    device shared with another account, profiles watching titles and playing a game."""
    m = Member(f"{prefix}-acc", f"{prefix}-other", [f"{prefix}-p1", f"{prefix}-p2"],
               [f"{prefix}-d{i}" for i in range(n_devices)], f"{prefix}-dshared", [f"{prefix}-t1", f"{prefix}-t2"],
               f"{prefix}-g1", f"{prefix}-op")
    recs = [node("account", m.account, {"country": "NL", "plan": "premium"}, ts),
            node("account", m.other, {"country": "US"}, ts),
            node("profile", m.other_profile, {"account_id": m.other}, ts),
            node("device", m.shared_device, {"device_type": "TV"}, ts),
            node("game", m.game, {"name": "G"}, ts),
            edge("has_profile", m.other, m.other_profile, ts),
            edge("logged_in_from", m.other, m.shared_device, ts),
            edge("logged_in_from", m.account, m.shared_device, ts),
            edge("started_watching", m.other_profile, m.titles[0], ts)]
    recs += [node("title", t, {"name": t}, ts) for t in m.titles]
    for p in m.profiles:
        recs += [node("profile", p, {"account_id": m.account}, ts), edge("has_profile", m.account, p, ts)]
    for d in m.devices:
        recs += [node("device", d, {"device_type": "PHONE"}, ts), edge("logged_in_from", m.account, d, ts)]
    recs += [edge("streamed_from", m.account, m.devices[0], ts),
             edge("started_watching", m.profiles[0], m.titles[0], ts),
             edge("started_watching", m.profiles[1], m.titles[1], ts),
             edge("plays", m.profiles[1], m.game, ts)]
    store.write(recs)
    return m


def expected_counts(m: Member) -> dict[str, int]:
    """What the erasure of ``m`` deletes, counted from what write_member wrote."""
    return {"nodes.account": 1, "nodes.profile": 2, "nodes.device": len(m.devices), "devices_kept": 1,
            "edges.has_profile": 2, "edges.logged_in_from": len(m.devices) + 1, "edges.streamed_from": 1,
            "edges.started_watching": 2, "edges.plays": 1}


def adjacency(store: GraphStore, edge_type: str, node_id: str, direction: str) -> set[str]:
    page = store.edges(edge_type, node_id, direction, limit=1000, order="any")  # type: ignore[arg-type]
    return {e.dst if direction == "out" else e.src for e in page.edges}


def assert_erased(store: GraphStore, m: Member) -> None:
    for t, i in m.gone_nodes():
        assert store.get_node(t, i) is None, f"{t}/{i} survived"
    for t, i in m.kept_nodes():
        assert store.get_node(t, i) is not None, f"{t}/{i} was erased but belongs to someone else"
    for e in ("has_profile", "logged_in_from", "streamed_from"):
        assert adjacency(store, e, m.account, "out") == set()
    for p in m.profiles:
        assert adjacency(store, "has_profile", p, "in") == set()
        assert adjacency(store, "started_watching", p, "out") == set()
        assert adjacency(store, "plays", p, "out") == set()
    for d in m.devices:
        assert adjacency(store, "logged_in_from", d, "in") == set()
        assert adjacency(store, "streamed_from", d, "in") == set()
    # the other account's side is intact, the erased member's half of shared lists is gone
    assert adjacency(store, "logged_in_from", m.shared_device, "in") == {m.other}
    assert adjacency(store, "logged_in_from", m.other, "out") == {m.shared_device}
    assert adjacency(store, "started_watching", m.titles[0], "in") == {m.other_profile}
    assert adjacency(store, "started_watching", m.titles[1], "in") == set()
    assert adjacency(store, "plays", m.game, "in") == set()
    assert adjacency(store, "has_profile", m.other, "out") == {m.other_profile}


def subset(counts: dict[str, int], want: dict[str, int]) -> dict[str, int]:
    return {k: counts.get(k, 0) for k in want}


# ------------------------------------------------------------------------------------------- graph
def test_erasure_removes_in_and_out_edges_and_resists_older_events(store: GraphStore, engine: ErasureEngine) -> None:
    t0 = int(time.time() * 1000) - HOUR_MS
    m = write_member(store, "er1", t0)
    assert store.get_node("account", m.account) is not None

    st = engine.request("account", m.account)
    assert st.status == "pending"
    assert engine.request("account", m.account).erasure_id == st.erasure_id  # requested twice, one erasure
    done = engine.run(st.erasure_id)
    assert done.status == "done" and done.step == "done" and done.error is None
    assert subset(done.counts, expected_counts(m)) == expected_counts(m)
    assert_erased(store, m)
    assert engine.audit.subject(st.erasure_id) is None  # the id is gone with the working state
    assert st.erasure_id not in engine.pending()
    assert engine.run(st.erasure_id).counts == done.counts  # running a finished erasure again: no-op

    # late events older than (or as old as) the erasure, as a straggler, a dedup flush or Kafka would write
    te = done.erasure_time_ms
    for ts in (t0 + 5, te - 1, te):
        store.write([node("account", m.account, {"country": "DE"}, ts), node("profile", m.profiles[0], {}, ts),
                     node("device", m.devices[0], {}, ts), edge("logged_in_from", m.account, m.devices[0], ts),
                     edge("has_profile", m.account, m.profiles[0], ts),
                     edge("started_watching", m.profiles[0], m.titles[0], ts), edge("plays", m.profiles[1], m.game, ts)])
    assert_erased(store, m)

    # activity after the erasure creates the member anew
    store.write([node("account", m.account, {"country": "FR"}, te + 1000),
                 edge("logged_in_from", m.account, m.devices[0], te + 1000)])
    back = store.get_node("account", m.account)
    assert back is not None and back.properties == {"country": "FR"} and back.updated_at == te + 1000
    assert adjacency(store, "logged_in_from", m.account, "out") == {m.devices[0]}
    assert adjacency(store, "logged_in_from", m.devices[0], "in") == {m.account}


def test_late_edge_to_a_new_neighbour_leaves_no_ghost_in_edge(store: GraphStore, engine: ErasureEngine) -> None:
    m = write_member(store, "er6", int(time.time() * 1000) - HOUR_MS)
    done = engine.run(engine.request("account", m.account).erasure_id)
    assert done.status == "done"
    store.write([edge("started_watching", m.profiles[0], m.titles[1], done.erasure_time_ms - 1)])
    assert adjacency(store, "started_watching", m.profiles[0], "out") == set()  # holds
    assert adjacency(store, "started_watching", m.titles[1], "in") == set()
    # the same edge after the erasure is new activity: it lands, in both lists
    store.write([edge("started_watching", m.profiles[0], m.titles[1], done.erasure_time_ms + 1)])
    assert adjacency(store, "started_watching", m.profiles[0], "out") == {m.titles[1]}
    assert adjacency(store, "started_watching", m.titles[1], "in") == {m.profiles[0]}
    assert done.counts["fenced_nodes"] == 1 + len(m.profiles) + len(m.devices)


def test_fence_holds_keyed_hashes_only(store: GraphStore, engine: ErasureEngine, settings: Settings) -> None:
    """The fence names erased nodes by HMAC-SHA-256 under the fence key: neither the id nor its plain
    hash is stored, and another key does not match."""
    m = write_member(store, "er7", int(time.time() * 1000) - HOUR_MS)
    done = engine.run(engine.request("account", m.account).erasure_id)
    assert done.status == "done"
    ns = store.spec.namespace("node", "account")
    session = store.kv.cluster_session(ns.cluster)
    ks = check_identifier(ns.keyspace, "keyspace")
    rows = list(session.execute(f"SELECT bucket, node_type, id_hash, erasure_time_ms, ttl(erasure_time_ms) "  # noqa: S608
                                f"FROM {ks}.erasure_fence"))
    assert settings.erasure.fence_key is not None
    key = settings.erasure.fence_key.get_secret_value().encode()
    want = hmac.new(key, b"account\0" + m.account.encode(), hashlib.sha256).digest()[:16]
    # rows: (bucket, node_type, id_hash, erasure_time_ms, ttl)
    mine = [r for r in rows if r[1] == "account" and bytes(r[2]) == want]
    assert len(mine) == 1 and mine[0][3] == done.erasure_time_ms
    assert 0 < mine[0][4] <= settings.erasure.fence_ttl_s
    hashes = {bytes(r[2]) for r in rows}
    assert m.account.encode() not in b"".join(hashes)
    assert hashlib.sha256(m.account.encode()).digest()[:16] not in hashes
    other = hmac.new(b"another key", b"account\0" + m.account.encode(), hashlib.sha256).digest()[:16]
    assert other not in hashes


# ----------------------------------------------------------------------------------------- archive
def archive_events(cat: Any, spec: Any, hour: int, accounts: list[str]) -> dict[str, int]:
    """Archive one hour of login and playback events of ``accounts`` (JSON values, a real Iceberg
    write); returns the number of rows per account."""
    rows: dict[str, int] = dict.fromkeys(accounts, 0)
    by_topic: dict[str, list[WindowRecord]] = {"member.login": [], "member.playback": []}
    for a_i, acc in enumerate(accounts):
        for j in range(3):
            ts = hour + 1000 * (10 * a_i + j) + 1
            by_topic["member.login"].append(WindowRecord(0, len(by_topic["member.login"]), ts, acc.encode(), json.dumps({
                "event_id": f"{acc}-l{j}", "event_time": ts, "account_id": acc, "profile_id": f"{acc}-p1",
                "device_id": f"{acc}-d0", "device_type": "PHONE", "country": "NL", "app_version": "1",
                "plan": "premium"}).encode()))
            by_topic["member.playback"].append(WindowRecord(0, len(by_topic["member.playback"]), ts + 1, acc.encode(), json.dumps({
                "event_id": f"{acc}-w{j}", "event_time": ts + 1, "account_id": acc, "profile_id": f"{acc}-p1",
                "device_id": f"{acc}-d0", "device_type": "PHONE", "title_id": f"{acc}-t1", "episode_id": None,
                "action": "START", "position_ms": 5, "is_live": False}).encode()))
            rows[acc] += 2
    for topic, recs in by_topic.items():
        archive_records(cat, topic, spec.sources[topic].schema, lambda b: (1, json.loads(b)), [recs], hour,
                        hour + HOUR_MS)
    return rows


def table_files_hold(table: Any, value: str) -> bool:
    """Whether any parquet file under the table's location (referenced or not) holds ``value``."""
    root = Path(table.location().removeprefix("file://")) / "data"
    for f in root.rglob("*.parquet"):
        if value in pq.read_table(f, columns=["account_id"]).column("account_id").to_pylist():
            return True
    return False


def test_archive_replay_cannot_resurrect_and_archive_forgets_after_grace(
        store: GraphStore, settings: Settings) -> None:
    spec = store.spec
    cat = archive_catalog(settings).load()
    hour = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS
    victim, bystander = "er2-acc", "er2-keep"
    rows = archive_events(cat, spec, hour, [victim, bystander])
    replay(cat, spec, hour, hour + HOUR_MS, store.write)
    assert store.get_node("account", victim) is not None and store.get_node("account", bystander) is not None

    # graph only (no catalog): the archive still holds the member, and replaying it changes nothing
    graph_only = ErasureEngine(store, None, 0)
    st = graph_only.run(graph_only.request("account", victim).erasure_id)
    assert st.status == "done" and st.counts["nodes.account"] == 1
    assert store.get_node("account", victim) is None
    replay(cat, spec, hour, hour + HOUR_MS, store.write)
    assert store.get_node("account", victim) is None
    assert store.get_node("device", f"{victim}-d0") is None
    assert adjacency(store, "started_watching", f"{victim}-t1", "in") == set()

    # the full erasure (grace 0): archive rows deleted, snapshots holding them expired, files deleted
    eng = ErasureEngine.from_settings(store, settings)
    st = eng.run(eng.request("account", victim).erasure_id)
    assert st.status == "done", st.error
    assert st.counts["archive_rows.member.login"] == rows[victim] // 2
    assert st.counts["archive_rows.member.playback"] == rows[victim] // 2
    assert st.counts["archive_snapshots_expired"] >= 2 and st.counts["archive_files_deleted"] >= 2
    tables = dict(archive_tables(cat, "account_id"))
    assert set(tables) == {"member.login", "member.playback"}
    for topic, table in tables.items():
        data = read_archive(cat, topic)
        assert victim not in data.column("account_id").to_pylist()
        assert data.column("account_id").to_pylist().count(bystander) == rows[bystander] // 2
        for snap in table.snapshots():  # no time travel reaches the member
            assert count_rows(table, "account_id", victim, snap.snapshot_id) == 0
        assert not table_files_hold(table, victim)
        assert table_files_hold(table, bystander)
    replay(cat, spec, hour, hour + HOUR_MS, store.write)
    assert store.get_node("account", victim) is None
    assert store.get_node("account", bystander) is not None


def test_archive_grace_period_defers_expiry(store: GraphStore, settings: Settings) -> None:
    cat = archive_catalog(settings).load()
    hour = (int(time.time() * 1000) // HOUR_MS - 5) * HOUR_MS
    archive_events(cat, store.spec, hour, ["er3-acc"])
    eng = ErasureEngine(store, archive_catalog(settings), archive_grace_s=2.0)
    st = eng.run(eng.request("account", "er3-acc").erasure_id)
    assert st.status == "running" and st.step == "expire" and st.archive_expire_after_ms
    table = dict(archive_tables(cat, "account_id"))["member.login"]
    assert count_rows(table, "account_id", "er3-acc") == 0  # deleted now...
    assert any(count_rows(table, "account_id", "er3-acc", s.snapshot_id) for s in table.snapshots())  # ...held
    assert st.erasure_id in eng.pending()
    time.sleep(max(0.0, (st.archive_expire_after_ms - time.time() * 1000) / 1000))
    [after] = [s for s in eng.run_pending() if s.erasure_id == st.erasure_id]
    assert after.status == "done" and after.counts["archive_snapshots_expired"] >= 1
    table.refresh()
    assert not any(count_rows(table, "account_id", "er3-acc", s.snapshot_id) for s in table.snapshots())


# ------------------------------------------------------------------------------------------- kill -9
def rdg(settings: Settings, *args: str) -> subprocess.Popen[str]:
    """``rdg <args>`` as a child process with ``settings`` as its whole configuration."""
    return subprocess.Popen([str(Path(sys.executable).parent / "rdg"), *args], env=settings.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def test_cli_killed_mid_erasure_resumes(store: GraphStore, engine: ErasureEngine, settings: Settings) -> None:
    m = write_member(store, "er4", int(time.time() * 1000) - HOUR_MS, n_devices=30)
    proc = rdg(settings, "erase", "account", m.account, "--throttle-ms", "300")
    try:
        deadline = time.monotonic() + 60
        eid = None
        while time.monotonic() < deadline:
            ids = [i for i in engine.pending() if engine.audit.subject(i) == m.account]
            st = engine.status(ids[0]) if ids else None
            if st is not None and st.step == "graph" and st.counts.get("graph_nodes_done", 0) >= 3:
                eid = st.erasure_id
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert eid is not None, "the CLI never got past the plan"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    mid = engine.status(eid)
    assert mid is not None and mid.status == "running" and mid.step == "graph"
    assert 3 <= mid.counts["graph_nodes_done"] < mid.counts["graph_nodes_total"] == 33
    survivors = [d for d in m.devices if store.get_node("device", d) is not None]
    assert survivors, "the kill came too late to leave work undone"

    again = rdg(settings, "erase", "account", m.account, "--json")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    final = json.loads(out)
    assert final["erasure_id"] == eid and final["status"] == "done"
    assert subset(final["counts"], expected_counts(m)) == expected_counts(m)
    assert_erased(store, m)


# --------------------------------------------------------------------------------------------- API
def test_api_erasure_202_progress_and_scopes(store: GraphStore, engine: ErasureEngine, settings: Settings) -> None:
    from rdg_platform.serving.app import create_app

    m = write_member(store, "er5", int(time.time() * 1000) - HOUR_MS)
    api = local_api_settings(settings)
    admin = local_role_settings(settings, "admin").api.token
    reader = local_role_settings(settings.model_copy(update={"api": settings.api.model_copy(update={"token": None})}),
                                 "reader").api.token
    assert admin is not None and reader is not None
    app = create_app(store.spec, store, settings=api, freeze_heap=False)
    body = {"type": "account", "id": m.account}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as c:
        r = c.post("/v1/erasures", json=body, headers={"Authorization": f"Bearer {reader.get_secret_value()}"})
        assert r.status_code == 403 and "admin" in r.json()["error"]
        r = c.post("/v1/erasures", json=body)
        assert r.status_code == 401 and "error" in r.json()
        auth = {"Authorization": f"Bearer {admin.get_secret_value()}"}
        r = c.post("/v1/erasures", json={"type": "title", "id": "x"}, headers=auth)
        assert r.status_code == 422 and "error" in r.json()
        r = c.post("/v1/erasures", json=body, headers=auth)
        assert r.status_code == 202, r.text
        acc = r.json()
        assert acc["status"] in ("pending", "running", "done") and len(acc["erasure_id"]) == 32
        seen = set()
        deadline = time.monotonic() + 60
        while True:
            g = c.get(f"/v1/erasures/{acc['erasure_id']}", headers=auth)
            assert g.status_code == 200, g.text
            seen.add(g.json()["status"])
            if g.json()["status"] in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        final = g.json()
        assert final["status"] == "done", final
        assert subset(final["counts"], expected_counts(m)) == expected_counts(m)
        assert m.account not in json.dumps(final)  # the status (the audit row) holds no personal data
        assert c.get(f"/v1/erasures/{acc['erasure_id']}",
                     headers={"Authorization": f"Bearer {reader.get_secret_value()}"}).status_code == 403
        r = c.get("/v1/erasures/" + "0" * 32, headers=auth)
        assert r.status_code == 404 and "error" in r.json()
        r = c.get("/v1/erasures/not-an-id", headers=auth)
        assert r.status_code == 422 and "error" in r.json()
    assert_erased(store, m)
