"""Traversal correctness on a hand-built member journey, through the HTTP API on real Cassandra."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rdg_platform.kv import GraphStore
from rdg_platform.model import GraphRecord
from rdg_platform.serving.app import create_app
from rdg_platform.serving.client import GraphClient
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.serving import serve_in_thread

pytestmark = pytest.mark.integration

# The session's admin token, sent with every raw HTTP call (set by the ``url`` fixture).
AUTH: dict[str, str] = {}

NOW = int(time.time() * 1000)
H = 3_600_000
D = 24 * H


@pytest.fixture(scope="module")
def url(services: object, cfg: Settings) -> Iterator[str]:
    spec = isolated_spec(unique_keyspace("rdg_test_trav"), cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra)
    store.ensure_schema()
    n = lambda t, i, p: GraphRecord("node", t, i, None, p, NOW - D)  # noqa: E731
    e = lambda t, s, d, p, ts: GraphRecord("edge", t, s, d, p, ts)  # noqa: E731
    store.write([
        n("account", "acc1", {"country": "US", "plan": "premium"}),
        n("profile", "p1", {"account_id": "acc1"}), n("profile", "p2", {"account_id": "acc1"}),
        n("device", "dev1", {"device_type": "tv"}), n("device", "dev2", {"device_type": "phone"}),
        n("device", "dev3", {"device_type": "tablet"}),
        n("title", "t1", {"name": "One", "runtime_min": 100, "genres": ["drama"]}),
        n("title", "t2", {"name": "Two"}), n("title", "t3", {"name": "Three"}),
        e("logged_in_from", "acc1", "dev1", {"device_type": "tv"}, NOW - 1 * H),
        e("logged_in_from", "acc1", "dev2", {"device_type": "phone"}, NOW - 2 * D),
        e("logged_in_from", "acc1", "dev3", {"device_type": "tablet"}, NOW - 40 * D),
        e("has_profile", "acc1", "p1", {}, NOW - 5 * H),
        e("has_profile", "acc1", "p2", {}, NOW - 6 * H),
        e("started_watching", "p1", "t1", {"position_ms": 10}, NOW - 1 * H),
        e("started_watching", "p1", "t2", {"position_ms": 20}, NOW - 3 * D),
        e("started_watching", "p2", "t3", {"position_ms": 30}, NOW - 2 * H),
        e("started_watching", "p2", "t1", {"position_ms": 40}, NOW - 10 * D),
    ])
    app = create_app(spec, store=store, settings=cfg)
    assert cfg.api.token is not None
    AUTH["Authorization"] = f"Bearer {cfg.api.token.get_secret_value()}"
    with serve_in_thread(app) as base:
        yield base
    store.kv.drop_keyspaces()
    store.close()


def trav(url: str, start: tuple[str, str], hops: list[dict[str, Any]], include_nodes: bool = False) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/traverse", json={"start": {"type": start[0], "id": start[1]}, "hops": hops,
                                                "include_nodes": include_nodes}, headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def dsts(level: dict[str, Any]) -> list[str]:
    return [e["dst"] for e in level["edges"]]


def test_devices_with_lookback_limit_and_order(url: str) -> None:
    all3 = trav(url, ("account", "acc1"), [{"edge": "logged_in_from"}])
    assert dsts(all3["levels"][0]) == ["dev1", "dev2", "dev3"]  # LATEST, 100-day lookback
    last30 = trav(url, ("account", "acc1"), [{"edge": "logged_in_from", "lookback": "30d"}])
    assert dsts(last30["levels"][0]) == ["dev1", "dev2"]
    day = trav(url, ("account", "acc1"), [{"edge": "logged_in_from", "lookback": 3 * H}])
    assert dsts(day["levels"][0]) == ["dev1"]
    top1 = trav(url, ("account", "acc1"), [{"edge": "logged_in_from", "limit": 1, "order": "latest"}])
    assert dsts(top1["levels"][0]) == ["dev1"]
    any2 = trav(url, ("account", "acc1"), [{"edge": "logged_in_from", "limit": 2, "order": "ANY"}])
    assert sorted(dsts(any2["levels"][0])) == dsts(any2["levels"][0]) and len(any2["levels"][0]["edges"]) == 2
    e = all3["levels"][0]["edges"][0]
    assert e["type"] == "logged_in_from" and e["src"] == "acc1" and e["properties"] == {"device_type": "tv"}
    assert e["updated_at"] == NOW - H


def test_profiles_then_titles_with_nodes(url: str) -> None:
    body = trav(url, ("account", "acc1"), [{"edge": "has_profile"}, {"edge": "started_watching", "limit": 3}],
                include_nodes=True)
    l1, l2 = body["levels"]
    assert l1["hop"] == 1 and dsts(l1) == ["p1", "p2"]
    assert [(e["src"], e["dst"]) for e in l2["edges"]] == [("p1", "t1"), ("p2", "t3"), ("p1", "t2")]
    assert [n["id"] for n in l1["nodes"]] == ["p1", "p2"]
    assert [n["id"] for n in l2["nodes"]] == ["t1", "t3", "t2"]
    assert l2["nodes"][0]["properties"] == {"name": "One", "runtime_min": 100, "genres": ["drama"]}
    week = trav(url, ("account", "acc1"), [{"edge": "has_profile"}, {"edge": "started_watching", "lookback": "7d"}])
    assert [(e["src"], e["dst"]) for e in week["levels"][1]["edges"]] == [("p1", "t1"), ("p2", "t3"), ("p1", "t2")]
    two = trav(url, ("account", "acc1"), [{"edge": "has_profile"}, {"edge": "started_watching", "lookback": "1d"}])
    assert [(e["src"], e["dst"]) for e in two["levels"][1]["edges"]] == [("p1", "t1"), ("p2", "t3")]


def test_in_direction_and_three_hops(url: str) -> None:
    body = trav(url, ("title", "t1"), [{"edge": "started_watching", "direction": "in"},
                                       {"edge": "has_profile", "direction": "IN"}])
    assert [e["src"] for e in body["levels"][0]["edges"]] == ["p1", "p2"]
    assert [(e["src"], e["dst"]) for e in body["levels"][1]["edges"]] == [("acc1", "p1"), ("acc1", "p2")]
    three = trav(url, ("account", "acc1"), [{"edge": "has_profile"}, {"edge": "started_watching"},
                                            {"edge": "started_watching", "direction": "in"}], include_nodes=True)
    l3 = three["levels"][2]
    assert sorted({e["src"] for e in l3["edges"]}) == ["p1", "p2"]
    assert len(l3["edges"]) == 4  # t1<-p1, t1<-p2, t3<-p2, t2<-p1
    assert {n["id"] for n in l3["nodes"]} == {"p1", "p2"}


def test_dead_ends_and_missing_start(url: str) -> None:
    body = trav(url, ("account", "nobody"), [{"edge": "has_profile"}, {"edge": "started_watching"}], True)
    assert [(lv["hop"], lv["edges"], lv["nodes"], lv["truncated"], lv["truncated_by"]) for lv in body["levels"]] == [
        (1, [], [], False, []), (2, [], [], False, [])]


def test_python_client_and_cli(url: str, cfg: Settings) -> None:
    from typer.testing import CliRunner

    from rdg_platform.cli.query import query_app

    token = AUTH["Authorization"].removeprefix("Bearer ")
    with GraphClient(url, token) as c:
        assert c.health()["status"] == "ok"
        assert c.node("account", "acc1")["properties"]["plan"] == "premium"  # type: ignore[index]
        assert c.node("account", "nobody") is None
        assert [e["dst"] for e in c.edges("logged_in_from", "acc1", limit=2)["edges"]] == ["dev1", "dev2"]
        assert [e["dst"] for e in c.iter_edges("logged_in_from", "acc1", page_size=1)] == ["dev1", "dev2", "dev3"]
        t = c.traverse("account", "acc1", [{"edge": "has_profile", "limit": 1}])
        assert dsts(t["levels"][0]) == ["p1"]
    runner = CliRunner(env=cfg.child_env())  # rdg query sends the session's (admin) token
    res = runner.invoke(query_app, ["node", "account", "acc1", "--url", url])
    assert res.exit_code == 0 and '"premium"' in res.output
    res = runner.invoke(query_app, ["edges", "logged_in_from", "acc1", "--limit", "1", "--all", "--url", url])
    assert res.exit_code == 0 and res.output.count('"dst"') == 3
    res = runner.invoke(query_app, ["traverse", "account", "acc1", "--hop", "has_profile",
                                    "--hop", "started_watching:out:2:30d:latest", "--include-nodes", "--url", url])
    assert res.exit_code == 0, res.output
    assert '"t1"' in res.output and '"t2"' not in res.output.split('"hop": 2')[1].split('"edges"')[0]
    res = runner.invoke(query_app, ["node", "nope", "x", "--url", url])
    assert res.exit_code == 2 and "unknown node type" in res.output
