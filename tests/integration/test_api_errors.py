"""Every API error case gets a 4xx (or 503) JSON ``{"error": ...}`` naming the problem; never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rdg_platform.kv import GraphStore, ensure_schema
from rdg_platform.model import GraphRecord
from rdg_platform.model.spec import GraphSpec
from rdg_platform.serving.app import create_app
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.serving import free_port, serve_in_thread

pytestmark = pytest.mark.integration
# Every request of this module carries the session's admin token (set by the autouse fixture); the
# refusals without one are test_api_auth's.
api = httpx.Client(timeout=30)


@pytest.fixture(autouse=True)
def _token(cfg: Settings) -> None:
    assert cfg.api.token is not None
    api.headers["Authorization"] = f"Bearer {cfg.api.token.get_secret_value()}"


@pytest.fixture(scope="module")
def seeded(services: object, cfg: Settings) -> Iterator[GraphStore]:
    spec = isolated_spec(unique_keyspace("rdg_test_api"), cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra)
    ensure_schema(store.kv, spec)
    store.write([GraphRecord("node", "account", "a1", None, {"plan": "p"}, 1),
                 *(GraphRecord("edge", "logged_in_from", "a1", f"d{i}", {}, 10 + i) for i in range(3)),
                 *(GraphRecord("node", "account", i, None, {"plan": i}, 2) for i in ODD_IDS),
                 *(GraphRecord("edge", "logged_in_from", i, "d/0", {}, 20) for i in ODD_IDS)])
    yield store
    store.kv.drop_keyspaces()
    store.close()


@pytest.fixture(scope="module")
def url(seeded: GraphStore, cfg: Settings) -> Iterator[str]:
    with serve_in_thread(create_app(seeded.spec, store=seeded, settings=cfg)) as base:
        yield base


def test_app_built_from_settings_owns_its_store(seeded: GraphStore, cfg: Settings) -> None:
    """The entry-point path: the app builds its own store from the settings (and closes it)."""
    spec: GraphSpec = seeded.spec
    with serve_in_thread(create_app(spec, settings=cfg, freeze_heap=False)) as base:
        assert api.get(f"{base}/healthz").json() == {"status": "ok", "storage": "ok"}
        r = api.get(f"{base}/v1/nodes/account/a1")
        assert r.status_code == 200 and r.json() == {"type": "account", "id": "a1", "properties": {"plan": "p"},
                                                     "updated_at": 1}


# Ids are any 1-256 printable characters: these must round-trip through the URL path.
ODD_IDS = ["acc/1", "a/b/c", "q?x=1", "100%", "sp ace", "h#sh", "ünï", "/lead", "trail/"]


@pytest.mark.parametrize("node_id", ODD_IDS)
def test_ids_with_url_characters_are_served(url: str, node_id: str, cfg: Settings) -> None:
    from urllib.parse import quote

    from rdg_platform.serving.client import GraphClient

    seg = quote(node_id, safe="")
    r = api.get(f"{url}/v1/nodes/account/{seg}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == node_id and r.json()["properties"] == {"plan": node_id}
    r = api.get(f"{url}/v1/edges/logged_in_from/{seg}")
    assert r.status_code == 200, r.text
    assert [(e["src"], e["dst"]) for e in r.json()["edges"]] == [(node_id, "d/0")]
    r = api.get(f"{url}/v1/edges/logged_in_from/d%2F0", params={"direction": "in", "limit": 1000})
    assert node_id in {e["src"] for e in r.json()["edges"]}
    assert cfg.api.token is not None
    with GraphClient(url, cfg.api.token.get_secret_value()) as client:
        node = client.node("account", node_id)
        assert node is not None and node["id"] == node_id


def expect(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    for w in words:
        assert w in body["error"], (w, body["error"])
    assert "Traceback" not in body["error"]


GET_CASES = [
    ("/v1/nodes/martian/a1", 400, ("unknown node type", "martian")),
    ("/v1/nodes/account/missing", 404, ("not found",)),
    ("/v1/nodes/account/%01bad", 422, ("id",)),
    ("/v1/nodes/account/" + "x" * 300, 422, ("id",)),
    ("/v1/edges/teleported_to/a1", 400, ("unknown edge type", "teleported_to")),
    ("/v1/edges/logged_in_from/a1?limit=0", 422, ("limit",)),
    ("/v1/edges/logged_in_from/a1?limit=5000", 422, ("limit",)),
    ("/v1/edges/logged_in_from/a1?limit=ten", 422, ("limit",)),
    ("/v1/edges/logged_in_from/a1?direction=sideways", 422, ("direction",)),
    ("/v1/edges/logged_in_from/a1?order=random", 422, ("order",)),
    ("/v1/edges/logged_in_from/a1?since=-5", 422, ("since",)),
    ("/v1/edges/logged_in_from/a1?since=yesterday", 422, ("since",)),
    ("/v1/edges/logged_in_from/a1?page_token=not-a-token", 400, ("page_token",)),
    ("/v1/edges/teleported_to/a1/count", 400, ("unknown edge type", "teleported_to")),
    ("/v1/edges/logged_in_from/a1/count?direction=up", 422, ("direction",)),
    ("/v1/nowhere", 404, ("Not Found",)),
]


@pytest.mark.parametrize(("path", "status", "words"), GET_CASES, ids=[c[0][:50] for c in GET_CASES])
def test_get_errors(url: str, path: str, status: int, words: tuple[str, ...]) -> None:
    expect(api.get(url + path), status, *words)


def test_pages_follow_their_tokens(url: str) -> None:
    for order, want in (("latest", ["d2", "d1", "d0"]), ("any", ["d0", "d1", "d2"])):
        seen: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"limit": 1, "order": order}
            if token:
                params["page_token"] = token
            body = api.get(f"{url}/v1/edges/logged_in_from/a1", params=params).json()
            assert body["truncated"] is False and body["truncated_by"] == []
            seen += [e["dst"] for e in body["edges"]]
            token = body["next_page_token"]
            if token is None:
                break
        assert seen == want, order


def test_page_token_of_other_order_is_rejected(url: str) -> None:
    r = api.get(f"{url}/v1/edges/logged_in_from/a1", params={"limit": 1, "order": "latest"})
    token = r.json()["next_page_token"]
    assert token
    expect(api.get(f"{url}/v1/edges/logged_in_from/a1", params={"order": "any", "page_token": token}),
           400, "order=any")


def test_wrong_method(url: str) -> None:
    r = api.delete(f"{url}/v1/nodes/account/a1")
    expect(r, 405)
    assert r.headers["allow"] == "GET"


H = {"edge": "logged_in_from"}
START = {"type": "account", "id": "a1"}
POST_CASES: list[tuple[str, Any, int, tuple[str, ...]]] = [
    ("malformed", b'{"start": {"type": "account", "id": "a1"}, "hops": [', 400, ("malformed JSON",)),
    ("not-object", [1, 2], 422, ()),
    ("no-start", {"hops": [H]}, 422, ("start",)),
    ("no-hops", {"start": START, "hops": []}, 422, ("hops",)),
    ("too-many-hops", {"start": START, "hops": [H] * 5}, 422, ("hops",)),
    ("unknown-start-type", {"start": {"type": "alien", "id": "x"}, "hops": [H]}, 400, ("start.type", "alien")),
    ("empty-id", {"start": {"type": "account", "id": ""}, "hops": [H]}, 422, ("start.id",)),
    ("ctrl-id", {"start": {"type": "account", "id": "a\x00"}, "hops": [H]}, 422, ("start.id",)),
    ("unknown-edge", {"start": START, "hops": [{"edge": "warp"}]}, 400, ("hops[0].edge", "warp")),
    ("bad-direction", {"start": START, "hops": [{"edge": "logged_in_from", "direction": "up"}]}, 422, ("direction",)),
    ("limit-0", {"start": START, "hops": [{"edge": "logged_in_from", "limit": 0}]}, 422, ("limit",)),
    ("limit-big", {"start": START, "hops": [{"edge": "logged_in_from", "limit": 100000}]}, 422, ("limit",)),
    ("lookback-bad", {"start": START, "hops": [{"edge": "logged_in_from", "lookback": "soon"}]}, 422, ("lookback",)),
    ("lookback-neg", {"start": START, "hops": [{"edge": "logged_in_from", "lookback": -1}]}, 422, ("lookback",)),
    ("order-bad", {"start": START, "hops": [{"edge": "logged_in_from", "order": "oldest"}]}, 422, ("order",)),
    ("extra-field", {"start": START, "hops": [H], "depth": 3}, 422, ("depth",)),
    ("chain-mismatch", {"start": START, "hops": [H, {"edge": "started_watching"}]}, 400,
     ("hops[1]", "started_watching", "device")),
    ("wrong-start-side", {"start": START, "hops": [{"edge": "logged_in_from", "direction": "in"}]}, 400,
     ("hops[0]", "device")),
    ("include-not-bool", {"start": START, "hops": [H], "include_nodes": "maybe"}, 422, ("include_nodes",)),
]


@pytest.mark.parametrize(("name", "body", "status", "words"), POST_CASES, ids=[c[0] for c in POST_CASES])
def test_traverse_errors(url: str, name: str, body: Any, status: int, words: tuple[str, ...]) -> None:
    if isinstance(body, bytes):
        r = api.post(f"{url}/v1/traverse", content=body, headers={"content-type": "application/json"})
    else:
        r = api.post(f"{url}/v1/traverse", json=body)
    expect(r, status, *words)


def test_openapi_metrics_and_health(url: str) -> None:
    api.get(f"{url}/v1/nodes/account/a1").raise_for_status()
    api.post(f"{url}/v1/traverse", json={"start": START, "hops": [H], "include_nodes": True}).raise_for_status()
    doc = api.get(f"{url}/openapi.json").json()
    assert {"/v1/nodes/{type}/{id}", "/v1/edges/{edge_type}/{id}", "/v1/traverse"} <= set(doc["paths"])
    r = api.get(f"{url}/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for stage in ("validate", "storage", "enrich", "total"):
        assert f'rdg_api_stage_seconds_bucket{{endpoint="traverse",le="0.005",stage="{stage}"}}' in text
    assert 'rdg_api_requests_total{endpoint="node",status="200"}' in text
    assert api.get(f"{url}/healthz").json() == {"status": "ok", "storage": "ok"}


def test_cassandra_down_is_503(cfg: Settings) -> None:
    """A namespace whose cluster is unreachable answers 503 JSON (the real driver, a closed port)."""
    dead = cfg.model_copy(update={"cassandra": cfg.cassandra.model_copy(update={"port": free_port()})})
    spec = isolated_spec("rdg_test_down", dead)
    app = create_app(spec, store=GraphStore.from_spec(spec, dead.cassandra, connect_timeout_s=1.0), settings=cfg)
    with serve_in_thread(app) as base:
        expect(api.get(f"{base}/v1/nodes/account/a1", timeout=30), 503, "storage unavailable")
        expect(api.get(f"{base}/v1/edges/logged_in_from/a1", timeout=30), 503, "storage unavailable")
        expect(api.post(f"{base}/v1/traverse", json={"start": START, "hops": [H]}, timeout=30), 503,
               "storage unavailable")
        expect(api.get(f"{base}/v1/nodes/alien/a1", timeout=30), 400, "alien")  # validation first
        assert api.get(f"{base}/healthz", timeout=30).status_code == 503
