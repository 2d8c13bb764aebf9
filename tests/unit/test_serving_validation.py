"""Request validation and planning of the query service (no storage touched)."""

from __future__ import annotations

import pytest
import typer
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from rdg_platform.cli.query import parse_hop
from rdg_platform.kv import GraphStore
from rdg_platform.model import default_spec
from rdg_platform.serving.app import create_app
from rdg_platform.serving.traversal import Hop, NodeRef, RequestError, TraverseRequest, parse_lookback, plan
from tests.unit.test_serving_auth import ADMIN, AUTH_SETTINGS


def test_parse_lookback() -> None:
    assert parse_lookback("100d") == 100 * 86_400_000
    assert parse_lookback("12h") == 12 * 3_600_000
    assert parse_lookback("30m") == 1_800_000 and parse_lookback("45s") == 45_000
    assert parse_lookback("500ms") == 500 and parse_lookback("7") == 7 and parse_lookback(1000) == 1000
    assert parse_lookback("3650d") == 3650 * 86_400_000
    for bad in ("", "soon", "1w", "-1d", 0, -5, "99999d", "3651d", "007d", " 7 ", True):
        with pytest.raises(ValueError):
            parse_lookback(bad)  # type: ignore[arg-type]


def test_plan_resolves_directions_types_and_since() -> None:
    spec = default_spec()
    req = TraverseRequest(start=NodeRef(type="account", id="a"),
                          hops=[Hop(edge="has_profile"), Hop(edge="started_watching", order="ANY", lookback="1d"),
                                Hop(edge="started_watching", direction="IN", limit=5)])
    hops = plan(spec, req, now_ms=10 * 86_400_000)
    assert [(h.edge, h.direction, h.order, h.to_type) for h in hops] == [
        ("has_profile", "out", "latest", "profile"), ("started_watching", "out", "any", "title"),
        ("started_watching", "in", "latest", "profile")]
    assert hops[1].since_ms == 9 * 86_400_000 and hops[0].limit == 300 and hops[2].limit == 5
    with pytest.raises(RequestError, match="starts from 'profile'"):
        plan(spec, TraverseRequest(start=NodeRef(type="account", id="a"), hops=[Hop(edge="started_watching")]))


def test_parse_hop_cli_syntax() -> None:
    assert parse_hop("has_profile") == {"edge": "has_profile"}
    assert parse_hop("plays:in:10:7d:any") == {"edge": "plays", "direction": "in", "limit": 10, "lookback": "7d",
                                               "order": "any"}
    assert parse_hop("plays::5") == {"edge": "plays", "limit": 5}
    for bad in ("", "a:b:c:d:e:f", "plays:out:many"):
        with pytest.raises(typer.BadParameter):
            parse_hop(bad)


def test_validation_errors_are_json_without_storage() -> None:
    spec = default_spec()
    # never connects: all requests are invalid
    app = create_app(spec, store=GraphStore.from_spec(spec), settings=AUTH_SETTINGS)
    with TestClient(app, raise_server_exceptions=False, headers=ADMIN) as c:
        r = c.post("/v1/traverse", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
        r = c.post("/v1/traverse", json={"start": {"type": "account", "id": "a"}, "hops": [{"edge": "x"}] * 5})
        assert r.status_code == 422 and "hops" in r.json()["error"]
        r = c.get("/v1/edges/plays/a", params={"limit": 0})
        assert r.status_code == 422 and "limit" in r.json()["error"]
        r = c.get("/v1/nodes/alien/a")
        assert r.status_code == 400 and "alien" in r.json()["error"]
        assert c.get("/openapi.json").status_code == 200
        assert "rdg_api_stage_seconds" in c.get("/metrics").text


def test_server_freezes_its_startup_heap_only_when_asked() -> None:
    import gc

    spec = default_spec()
    gc.unfreeze()
    with TestClient(create_app(spec, store=GraphStore.from_spec(spec), settings=AUTH_SETTINGS)):
        assert gc.get_freeze_count() == 0  # embedded (a store was passed): the default leaves the GC alone
    try:
        with TestClient(create_app(spec, store=GraphStore.from_spec(spec), settings=AUTH_SETTINGS, freeze_heap=True)):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_group_by_replicas_keeps_keys_of_one_replica_set_together() -> None:
    from rdg_platform.kv.graph_store import group_by_replicas

    def replicas(key: bytes) -> list[str]:  # a 3-node ring, replication factor 2, by the key's last digit
        n = int(key[-1:]) % 3
        return [f"h{n}", f"h{(n + 1) % 3}"][::-1 if n % 2 else 1]

    ids = [f"k{i}" for i in range(10)]
    groups = group_by_replicas(ids, replicas, per_request=2)
    assert sorted(i for _, g in groups for i in g) == sorted(ids)
    for rk, g in groups:
        assert 1 <= len(g) <= 2
        assert rk is not None and rk.decode() in g
        assert len({tuple(sorted(replicas(i.encode()))) for i in g}) == 1


def test_page_tokens_are_signed_and_checked() -> None:
    import base64

    from rdg_platform.kv import EdgeCursor
    from rdg_platform.serving.shapes import BadPageTokenError, PageTokens, list_context

    tokens = PageTokens(b"k" * 32)
    ctx = list_context("plays", "p1", "out")
    for order, cursor in (("any", EdgeCursor("dev/1 é")), ("latest", EdgeCursor("dev/1 é", 1_700_000_000_123))):
        tok = tokens.page_token(cursor, order, ctx)  # type: ignore[arg-type]
        assert tok is not None and tokens.page_cursor(tok, order, ctx) == cursor  # type: ignore[arg-type]
    assert tokens.page_token(None, "any", ctx) is None and tokens.page_cursor(None, "any", ctx) is None
    assert tokens.page_cursor("", "latest", ctx) is None
    tok = tokens.page_token(EdgeCursor("k"), "any", ctx)
    assert tok is not None
    with pytest.raises(BadPageTokenError, match="order=latest"):
        tokens.page_cursor(tok, "latest", ctx)
    with pytest.raises(BadPageTokenError, match="signature"):  # another list's token
        tokens.page_cursor(tok, "any", list_context("plays", "p2", "out"))
    with pytest.raises(BadPageTokenError, match="signature"):  # another key's token
        PageTokens(b"x" * 32).page_cursor(tok, "any", ctx)
    body, _, mac = tok.partition(".")
    forged = base64.urlsafe_b64encode(b'{"k":"zzz","o":"any"}').decode().rstrip("=")
    for bad in ("!!!", "eyJ4IjoxfQ", f"{forged}.{mac}", f"{body}.{mac[:-1]}A" if mac[-1] != "A" else f"{body}.{mac[:-1]}B",
                f"{body}x.{mac}", body):
        with pytest.raises(BadPageTokenError):
            tokens.page_cursor(bad, "any", ctx)


def test_client_sends_the_bearer_token_it_is_given() -> None:
    """GraphClient against a real HTTP server that echoes the Authorization header it received."""
    from rdg_platform.serving.client import GraphClient
    from tests.support.serving import serve_in_thread

    echo = FastAPI()

    @echo.get("/healthz")
    async def healthz(request: Request) -> dict[str, str | None]:
        return {"authorization": request.headers.get("authorization")}

    with serve_in_thread(echo) as url:
        with GraphClient(url + "/", token="t0ken") as c:
            assert c.health() == {"authorization": "Bearer t0ken"}
        with GraphClient(url) as c:
            assert c.health() == {"authorization": None}
