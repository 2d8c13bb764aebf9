"""``as_of`` and ``include_expired`` through the HTTP API, against answers the live graph gave at the time.

The oracle is the live API itself: while a member logs in from three devices (each login written
through the stream's mapping and the sink's ``GraphStore.write`` into an isolated keyspace whose
``logged_in_from`` TTL is 20 s, and produced to a private Kafka topic), the node, its edge list and a
traversal are recorded at T1, T2 and T3. The topic is archived (the real archive writer), Kafka then
loses the records (``DeleteRecords``, what retention does), and the history is derived from the archive.
Asked later ``as_of`` T1..T3, the API must give the recorded answers: first while the live store is
still exact for T3, then after every edge has expired from the live store. ``include_expired`` returns
the expired edges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from rdg_platform.avro import AvroSerde
from rdg_platform.history.tables import derive_window, ensure_tables, window_counts
from rdg_platform.kafka_client import client_config, security_config
from rdg_platform.kv import GraphStore
from rdg_platform.lakehouse.archive import archive_window, read_archive
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.local_services.credentials import load_or_create
from rdg_platform.model import GraphSpec
from rdg_platform.serving.app import create_app
from rdg_platform.serving.client import GraphClient
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.oracle import updates
from tests.support.serving import serve_in_thread

pytestmark = pytest.mark.integration

TTL_S = 20
ACC = f"hist-{uuid.uuid4().hex[:8]}"
# The member's logins: (device, device type, country). The last one logs in again from d1 elsewhere.
LOGINS = [("d1", "TV", "NL"), ("d2", "PHONE", "US"), ("d3", "TABLET", "NL"), ("d1", "TV", "DE")]
TRAVERSE = {"start": {"type": "account", "id": ACC}, "hops": [{"edge": "logged_in_from"}], "include_nodes": True}


def _login(i: int, device: str, dtype: str, country: str, ts: int) -> dict[str, Any]:
    return {"event_id": f"{ACC}-{i}", "event_time": ts, "account_id": ACC, "profile_id": None,
            "device_id": f"{ACC}-{device}", "device_type": dtype, "country": country, "app_version": "1.0",
            "plan": "basic"}


class World:
    def __init__(self, url: str, token: str, catalog: Any, spec: GraphSpec, topic: str) -> None:
        self.url, self.token, self.catalog, self.spec, self.topic = url, token, catalog, spec, topic
        self.recorded: list[tuple[int, dict[str, Any]]] = []  # (T, answers the live API gave at T)
        self.window = (0, 0)
        self.last_write = 0

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers={"Authorization": f"Bearer {self.token}"},
                         timeout=30)

    def answers(self, as_of: int | None = None) -> dict[str, Any]:
        extra = {} if as_of is None else {"as_of": as_of}
        node = self.get(f"/v1/nodes/account/{ACC}", **extra)
        edges = self.get(f"/v1/edges/logged_in_from/{ACC}", **extra)
        trav = httpx.post(f"{self.url}/v1/traverse", json={**TRAVERSE, **extra}, timeout=30,
                          headers={"Authorization": f"Bearer {self.token}"})
        for r in (node, edges, trav):
            assert r.status_code == 200, r.text
        return {"node": node.json(), "edges": edges.json(), "traverse": trav.json()}


def _strip(ans: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The answers without their ``source`` fields, and the sources."""
    out, sources = {}, set()
    for k, v in ans.items():
        v = dict(v)
        if "source" in v:
            sources.add(v.pop("source"))
        out[k] = v
    return out, sources


@pytest.fixture(scope="module")
def world(services: object, cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    spec = isolated_spec(unique_keyspace("rdg_test_hist"), cfg, {"edge.logged_in_from": {"ttl_s": TTL_S}})
    store = GraphStore.from_spec(spec, cfg.cassandra)
    store.ensure_schema()
    cat_dir: Path = tmp_path_factory.mktemp("history")
    cat_cfg = CatalogConfig.local(cat_dir)
    catalog = cat_cfg.load()
    s = cfg.model_copy(update={
        "iceberg": cfg.iceberg.model_copy(update={"catalog_uri": cat_cfg.uri, "warehouse": cat_cfg.warehouse}),
        "history": cfg.history.model_copy(update={"cache_s": 0.0})})
    topic = f"rdgtest.history.{uuid.uuid4().hex[:10]}"
    admin = AdminClient(client_config(cfg.kafka))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    token = load_or_create(cfg.state_dir).api_tokens["reader"]
    app = create_app(spec, store=store, settings=s)
    try:
        with AvroSerde.from_settings(cfg.registry, schemas={topic: spec.sources["member.login"].schema}) as serde, \
                serve_in_thread(app) as url:
            w = World(url, token, catalog, spec, topic)
            prod = Producer(client_config(cfg.kafka))
            start = int(time.time() * 1000) - 1000
            for i, (dev, dtype, country) in enumerate(LOGINS):
                ts = int(time.time() * 1000)
                ev = _login(i, dev, dtype, country, ts)
                store.write(updates([("member.login", ACC, ev)]))  # what the login means (the oracle)
                prod.produce(topic, key=ACC.encode(), value=serde.encode(topic, ev), timestamp=ts)
                w.last_write = ts
                time.sleep(0.3)
                if i >= 1:  # T1 after two logins, T2 after three, T3 after the fourth
                    t = int(time.time() * 1000)
                    w.recorded.append((t, w.answers()))
                    time.sleep(1.2)
            assert prod.flush(30) == 0
            end = int(time.time() * 1000) + 1
            w.window = (start, end)
            res, _ = archive_window(catalog, topic, spec.sources["member.login"].schema, serde,
                                    cfg.kafka.bootstrap_servers, start, end, timeout_s=30,
                                    consumer_config=security_config(cfg.kafka))
            assert res.rows == len(LOGINS)
            # Kafka's retention passes: the records are gone from the topic, the archive keeps them.
            for fut in admin.delete_records([TopicPartition(topic, 0, len(LOGINS))]).values():
                fut.result(30)
            derive_window(catalog, spec, start, end, namespace=s.history.namespace,
                          archived_as={"member.login": topic})
            yield w
    finally:
        admin.delete_topics([topic])[topic].result(30)
        store.kv.drop_keyspaces()
        store.close()


def test_recorded_answers_are_what_the_member_did(world: World) -> None:
    devices = [[e["dst"] for e in ans["edges"]["edges"]] for _t, ans in world.recorded]
    d = [f"{ACC}-{x}" for x in ("d1", "d2", "d3")]
    assert devices == [[d[1], d[0]], [d[2], d[1], d[0]], [d[0], d[2], d[1]]]
    assert [ans["node"]["properties"]["country"] for _t, ans in world.recorded] == ["US", "NL", "DE"]


def test_history_survived_kafka_retention(world: World, cfg: Settings) -> None:
    lo, hi = world.window
    assert read_archive(world.catalog, world.topic, lo, hi).num_rows == len(LOGINS)
    tables = ensure_tables(world.catalog, world.spec, "history")
    rows, sources = window_counts(tables[("edge", "logged_in_from")], lo, hi)
    assert rows == 2 * len(LOGINS) and len(sources) == len(LOGINS)  # each edge stored out and in


def test_as_of_equals_recorded_live_answers(world: World) -> None:
    for i, (t, recorded) in enumerate(world.recorded):
        got, sources = _strip(world.answers(as_of=t))
        assert got == recorded, f"as_of T{i + 1}"
        if i < len(world.recorded) - 1:  # later writes exist: the live store is not exact for T1, T2
            assert "history" in sources, (i, sources)
    _, sources = _strip(world.answers(as_of=world.recorded[-1][0]))
    assert sources == {"live"}  # nothing newer than T3, nothing expired yet


def test_after_ttl_expiry_history_still_answers(world: World) -> None:
    wait = world.last_write / 1000 + TTL_S + 3 - time.time()
    if wait > 0:
        time.sleep(wait)
    now = world.answers()
    assert now["edges"]["edges"] == []  # expired from the live store
    for i, (t, recorded) in enumerate(world.recorded):
        ans = world.answers(as_of=t)
        # edges can only come from the history now; the node (no TTL, unchanged since) may be live
        assert ans["edges"]["source"] == ans["traverse"]["source"] == "history"
        got, _sources = _strip(ans)
        assert got == recorded, f"as_of T{i + 1} after expiry"


def test_include_expired_returns_expired_edges(world: World) -> None:
    wait = world.last_write / 1000 + TTL_S + 3 - time.time()
    if wait > 0:
        time.sleep(wait)
    r = world.get(f"/v1/edges/logged_in_from/{ACC}", include_expired="true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "history"
    d = [f"{ACC}-{x}" for x in ("d1", "d3", "d2")]
    assert [e["dst"] for e in body["edges"]] == d  # newest first: d1 (again), d3, d2
    assert body["edges"][0]["properties"]["country"] == "DE"
    r = world.get(f"/v1/edges/logged_in_from/{ACC}", include_expired="true", direction="in")
    assert r.status_code == 200 and r.json()["edges"] == []  # an account has no in-edges of this type


def test_client_and_cli_as_of(world: World) -> None:
    t, recorded = world.recorded[0]
    with GraphClient(world.url, world.token) as c:
        page = c.edges("logged_in_from", ACC, as_of=t)
        node = c.node("account", ACC, as_of=t)
        trav = c.traverse("account", ACC, TRAVERSE["hops"], True, as_of=t)  # type: ignore[arg-type]
    assert page.pop("source") == "history" and page == recorded["edges"]
    assert node is not None and node.pop("source") in ("live", "history") and node == recorded["node"]
    assert trav.pop("source") == "history" and trav == recorded["traverse"]
    env = {**os.environ, "RDG_API_TOKEN": world.token}
    rdg = str(Path(sys.executable).with_name("rdg"))
    out = subprocess.run([rdg, "query", "edges", "logged_in_from", ACC,
                          "--as-of", str(t), "--url", world.url], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body.pop("source") == "history" and body == recorded["edges"]
