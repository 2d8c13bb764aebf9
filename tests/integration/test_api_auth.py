"""The API's security and its answers about completeness, on the real API and the real Cassandra:
bearer tokens and scopes, signed page tokens, the per-request budget, truncation reports and the
Count API (exact, under overwrite, after TTL expiry, estimated past its bound).

The graph written here and what it means (the oracle):
- account ``hub`` has 10 profiles ``hub-p0..9`` (has_profile), each of which started watching 10
  titles ``t<i>-<j>`` (started_watching): 10 edges at hop 1, 100 at hop 2;
- account ``old`` logged in from ``dev-new`` an hour ago and from ``dev-old`` ten days ago;
- account ``wide`` logged in from 200 devices with random hex ids.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from rdg_platform.kv import GraphStore, ensure_schema
from rdg_platform.kv.store import KVItem
from rdg_platform.local_services.credentials import load_or_create
from rdg_platform.model import GraphRecord
from rdg_platform.serving.app import create_app
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.serving import serve_in_thread

pytestmark = pytest.mark.integration
NOW = int(time.time() * 1000)
HOUR, DAY = 3_600_000, 86_400_000
WIDE = sorted(uuid.uuid4().hex for _ in range(200))


@pytest.fixture(scope="module")
def store(services: object, cfg: Settings) -> Iterator[GraphStore]:
    spec = isolated_spec(unique_keyspace("rdg_test_auth"), cfg)
    st = GraphStore.from_spec(spec, cfg.cassandra)
    ensure_schema(st.kv, spec)
    recs = [GraphRecord("edge", "has_profile", "hub", f"hub-p{i}", {}, NOW - HOUR) for i in range(10)]
    recs += [GraphRecord("edge", "started_watching", f"hub-p{i}", f"t{i}-{j}", {}, NOW - HOUR)
             for i in range(10) for j in range(10)]
    recs += [GraphRecord("edge", "logged_in_from", "old", "dev-new", {}, NOW - HOUR),
             GraphRecord("edge", "logged_in_from", "old", "dev-old", {}, NOW - 10 * DAY)]
    recs += [GraphRecord("edge", "logged_in_from", "wide", d, {}, NOW - HOUR) for d in WIDE]
    st.write(recs)
    yield st
    st.kv.drop_keyspaces()
    st.close()


def _tokens(cfg: Settings) -> dict[str, str]:
    """The session state directory's API tokens by role (what `rdg env --role` hands out)."""
    return load_or_create(cfg.state_dir).api_tokens


@pytest.fixture(scope="module")
def url(store: GraphStore, cfg: Settings) -> Iterator[str]:
    with serve_in_thread(create_app(store.spec, store=store, settings=cfg)) as base:
        yield base


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expect_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    for w in words:
        assert w in body["error"], (w, body)


TRAVERSE = {"start": {"type": "account", "id": "hub"}, "hops": [{"edge": "has_profile"}, {"edge": "started_watching"}]}


def test_no_token_and_bad_token_are_401(url: str) -> None:
    for method, path, body in (("GET", "/v1/nodes/account/hub", None), ("GET", "/v1/edges/has_profile/hub", None),
                               ("GET", "/v1/edges/has_profile/hub/count", None), ("POST", "/v1/traverse", TRAVERSE),
                               ("POST", "/v1/erasures", {"type": "account", "id": "hub"}), ("GET", "/metrics", None)):
        r = httpx.request(method, url + path, json=body)
        expect_error(r, 401, "missing bearer token")
        assert r.headers["www-authenticate"].startswith("Bearer")
        expect_error(httpx.request(method, url + path, json=body, headers=bearer("rdg_not-a-real-token")), 401,
                     "invalid bearer token")
    assert httpx.get(url + "/healthz").status_code == 200  # probes need no token
    assert httpx.get(url + "/openapi.json").status_code == 200


def test_reader_reads_but_cannot_erase(url: str, cfg: Settings) -> None:
    reader = bearer(_tokens(cfg)["reader"])
    r = httpx.get(url + "/v1/edges/has_profile/hub", headers=reader)
    assert r.status_code == 200 and len(r.json()["edges"]) == 10
    expect_error(httpx.post(url + "/v1/erasures", json={"type": "account", "id": "hub"}, headers=reader), 403,
                 "admin")
    # Nothing was erased: the reader's request never ran.
    assert len(httpx.get(url + "/v1/edges/has_profile/hub", headers=reader).json()["edges"]) == 10


def test_tampered_or_foreign_page_token_is_400(url: str, cfg: Settings) -> None:
    h = bearer(_tokens(cfg)["reader"])
    first = httpx.get(url + "/v1/edges/has_profile/hub", params={"limit": 3, "order": "any"}, headers=h).json()
    token = first["next_page_token"]
    assert token and [e["dst"] for e in first["edges"]] == ["hub-p0", "hub-p1", "hub-p2"]
    nxt = httpx.get(url + "/v1/edges/has_profile/hub", params={"limit": 3, "order": "any", "page_token": token},
                    headers=h).json()
    assert [e["dst"] for e in nxt["edges"]] == ["hub-p3", "hub-p4", "hub-p5"]
    body, _, mac = token.partition(".")
    # A cursor moved by hand (skip to after hub-p7) with the old signature.
    import base64
    import json
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["k"] = "hub-p7"
    moved = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()).decode()
    for bad in (f"{moved.rstrip('=')}.{mac}", f"{body}.{mac[::-1]}", body):
        expect_error(httpx.get(url + "/v1/edges/has_profile/hub",
                               params={"limit": 3, "order": "any", "page_token": bad}, headers=h), 400, "page_token")
    # The genuine token, on another node's list.
    expect_error(httpx.get(url + "/v1/edges/has_profile/old", params={"limit": 3, "order": "any", "page_token": token},
                           headers=h), 400, "page_token")


def _traverse(url: str, h: dict[str, str], body: dict[str, Any]) -> list[dict[str, Any]]:
    r = httpx.post(url + "/v1/traverse", json=body, headers=h, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["levels"]  # type: ignore[no-any-return]


def test_complete_traversal_says_so(url: str, cfg: Settings) -> None:
    levels = _traverse(url, bearer(_tokens(cfg)["reader"]), TRAVERSE)
    assert [len(lv["edges"]) for lv in levels] == [10, 100]
    assert [(lv["truncated"], lv["truncated_by"]) for lv in levels] == [(False, []), (False, [])]


def test_traversal_over_budget_is_truncated_by_budget(store: GraphStore, cfg: Settings) -> None:
    tight = cfg.model_copy(update={"api": cfg.api.model_copy(update={"max_edges_per_request": 25})})
    three = {**TRAVERSE, "hops": [*TRAVERSE["hops"], {"edge": "started_watching", "direction": "in"}]}  # type: ignore[list-item]
    with serve_in_thread(create_app(store.spec, store=store, settings=tight)) as base:
        levels = _traverse(base, bearer(_tokens(cfg)["reader"]), three)
    assert levels[0]["truncated"] is False and len(levels[0]["edges"]) == 10
    assert levels[1]["truncated"] is True and levels[1]["truncated_by"] == ["budget"]
    assert 0 < len(levels[1]["edges"]) < 100
    assert levels[2] == {"hop": 3, "edges": [], "truncated": True, "truncated_by": ["budget"]}


def test_traversal_past_its_deadline_is_truncated_by_deadline(store: GraphStore, cfg: Settings) -> None:
    """A 1 ms deadline: three hops over 10 + 100 + 100 edges cannot all be read in time. Once a level
    is cut by the deadline, every later one is empty and says so."""
    rushed = cfg.model_copy(update={"api": cfg.api.model_copy(update={"request_deadline_ms": 1})})
    three = {**TRAVERSE, "hops": [*TRAVERSE["hops"], {"edge": "started_watching", "direction": "in"}]}  # type: ignore[list-item]
    with serve_in_thread(create_app(store.spec, store=store, settings=rushed)) as base:
        levels = _traverse(base, bearer(_tokens(cfg)["reader"]), three)
    cut = [i for i, lv in enumerate(levels) if "deadline" in lv["truncated_by"]]
    assert cut, levels
    assert all(lv["truncated"] and lv["truncated_by"] == ["deadline"] and lv["edges"] == []
               for lv in levels[cut[0] + 1:])
    assert sum(len(lv["edges"]) for lv in levels) < 210


def test_limit_and_lookback_are_reported(url: str, cfg: Settings) -> None:
    h = bearer(_tokens(cfg)["reader"])
    lv = _traverse(url, h, {"start": {"type": "account", "id": "hub"}, "hops": [{"edge": "has_profile", "limit": 4}]})
    assert len(lv[0]["edges"]) == 4 and lv[0]["truncated_by"] == ["limit"]
    lv = _traverse(url, h, {"start": {"type": "account", "id": "old"},
                            "hops": [{"edge": "logged_in_from", "lookback": "1d"}]})
    assert [e["dst"] for e in lv[0]["edges"]] == ["dev-new"] and lv[0]["truncated_by"] == ["lookback"]
    lv = _traverse(url, h, {"start": {"type": "account", "id": "old"},
                            "hops": [{"edge": "logged_in_from", "lookback": "30d", "limit": 2}]})
    assert len(lv[0]["edges"]) == 2 and lv[0]["truncated"] is False


def _count(base: str, h: dict[str, str], edge: str, node: str, direction: str = "out") -> dict[str, Any]:
    r = httpx.get(f"{base}/v1/edges/{edge}/{node}/count", params={"direction": direction}, headers=h)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_count_exact_overwrite_and_ttl(url: str, store: GraphStore, cfg: Settings) -> None:
    h = bearer(_tokens(cfg)["reader"])
    assert _count(url, h, "has_profile", "hub") == {"count": 10, "exact": True}
    assert _count(url, h, "started_watching", "t3-4", "in") == {"count": 1, "exact": True}
    assert _count(url, h, "has_profile", "nobody") == {"count": 0, "exact": True}
    # The same edge written again (a replay, and a later update) is still one edge.
    store.write([GraphRecord("edge", "has_profile", "hub", "hub-p0", {}, NOW - HOUR),
                 GraphRecord("edge", "has_profile", "hub", "hub-p0", {}, NOW)])
    assert _count(url, h, "has_profile", "hub") == {"count": 10, "exact": True}
    # Two edges that expire after 2 s: counted while they live, gone after.
    ns = store.spec.namespace("edge", "logged_in_from").name
    store.kv.put_items(ns, [KVItem("old", f"dev-brief-{i}", updated_at=NOW, ttl_s=2) for i in range(2)])
    assert _count(url, h, "logged_in_from", "old") == {"count": 4, "exact": True}
    time.sleep(3.0)
    assert _count(url, h, "logged_in_from", "old") == {"count": 2, "exact": True}


def test_count_past_its_bound_is_an_estimate(store: GraphStore, cfg: Settings) -> None:
    tight = cfg.model_copy(update={"api": cfg.api.model_copy(update={"max_edges_per_request": 50})})
    h = bearer(_tokens(cfg)["reader"])
    with serve_in_thread(create_app(store.spec, store=store, settings=tight)) as base:
        got = _count(base, h, "logged_in_from", "wide")
        assert got["exact"] is False
        assert 100 <= got["count"] <= 400  # 200 random hex ids, estimated from the first 51
        assert _count(base, h, "has_profile", "hub") == {"count": 10, "exact": True}


def test_rdg_query_acts_as_reader_without_a_token(url: str, cfg: Settings) -> None:
    """`rdg query` with no RDG_API_TOKEN in its settings uses the local reader role's token."""
    from rdg_platform.cli.query import query_app

    env = {k: v for k, v in cfg.child_env().items() if k != "RDG_API_TOKEN"}
    res = CliRunner().invoke(query_app, ["count", "has_profile", "hub", "--url", url], env=env)
    assert res.exit_code == 0, res.output
    assert '"count": 10' in res.output
    res = CliRunner().invoke(query_app, ["count", "has_profile", "hub", "--url", url],
                             env={**env, "RDG_API_TOKEN": "rdg_wrong"})
    assert res.exit_code == 2 and "401" in res.output
