"""Bearer tokens, scopes, CORS and the OpenAPI contract of the query service (no storage touched:
every request here is refused or answered before a read)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from rdg_platform.kv import GraphStore
from rdg_platform.model import default_spec
from rdg_platform.serving.app import create_app
from rdg_platform.serving.auth import TokenVerifier, require_scope
from rdg_platform.settings import Settings, load_settings

READER_TOKEN = "reader-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"


def _sha(t: str) -> str:
    return hashlib.sha256(t.encode()).hexdigest()


def auth_settings(**env: str) -> Settings:
    """Settings with two known tokens (their hashes, as an operator configures them) and a key."""
    return load_settings({"RDG_STATE_DIR": str(Path("/nonexistent/rdg-unit")),
                          "RDG_API_TOKENS": json.dumps({_sha(READER_TOKEN): ["read"],
                                                        _sha(ADMIN_TOKEN): ["read", "admin"]}),
                          "RDG_API_PAGE_TOKEN_KEY": "unit-test-page-token-key-0123456789", **env})


AUTH_SETTINGS = auth_settings()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READER = {"Authorization": f"Bearer {READER_TOKEN}"}


def client(settings: Settings = AUTH_SETTINGS) -> TestClient:
    spec = default_spec()
    app = create_app(spec, store=GraphStore.from_spec(spec), settings=settings)

    @app.post("/v1/admin-probe", dependencies=[Depends(require_scope("admin"))])
    async def probe() -> dict[str, bool]:
        return {"ok": True}

    return TestClient(app, raise_server_exceptions=False)


def _json_error(r: object, status: int, *words: str) -> None:
    from httpx import Response

    assert isinstance(r, Response)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    for w in words:
        assert w in body["error"], (w, body)


def test_no_or_bad_token_is_401_json_with_www_authenticate() -> None:
    with client() as c:
        for path in ("/v1/nodes/account/a", "/v1/edges/plays/p", "/v1/edges/plays/p/count", "/metrics",
                     "/v1/nowhere"):
            r = c.get(path)
            _json_error(r, 401, "missing bearer token")
            assert r.headers["www-authenticate"].startswith("Bearer")
            _json_error(c.get(path, headers={"Authorization": "Bearer nope"}), 401, "invalid bearer token")
            _json_error(c.get(path, headers={"Authorization": f"Basic {READER_TOKEN}"}), 401, "Bearer <token>")
        # Authentication comes before body parsing: a malformed body without a token is still a 401.
        _json_error(c.post("/v1/traverse", content=b"{nope", headers={"content-type": "application/json"}), 401)


def test_scopes_reader_cannot_use_admin_routes() -> None:
    with client() as c:
        _json_error(c.post("/v1/admin-probe", headers=READER), 403, "'admin' scope")
        assert c.post("/v1/admin-probe", headers=ADMIN).json() == {"ok": True}
        assert "rdg_api_stage_seconds" in c.get("/metrics", headers=READER).text
        # A reader token reaches validation (no storage involved for an unknown type).
        _json_error(c.get("/v1/nodes/alien/a", headers=READER), 400, "alien")


def test_every_route_needs_the_read_scope() -> None:
    only_admin = "admin-only-token-0123456789"
    settings = auth_settings(RDG_API_TOKENS=json.dumps({_sha(only_admin): ["admin"]}))
    with client(settings) as c:
        _json_error(c.get("/v1/nodes/account/a", headers={"Authorization": f"Bearer {only_admin}"}), 403,
                    "'read' scope")


def test_open_routes_need_no_token() -> None:
    with client() as c:
        assert c.get("/openapi.json").status_code == 200
        assert c.get("/docs").status_code == 200


def test_405_carries_allow() -> None:
    with client() as c:
        r = c.delete("/v1/nodes/account/a", headers=READER)
        _json_error(r, 405)
        assert r.headers["allow"] == "GET"


def test_openapi_contract_enums_security_statuses() -> None:
    spec = default_spec()
    with client() as c:
        api = c.get("/openapi.json").json()
    node = api["paths"]["/v1/nodes/{type}/{id}"]["get"]
    type_param = next(p for p in node["parameters"] if p["name"] == "type")
    assert type_param["schema"]["enum"] == sorted(spec.nodes)
    edges = api["paths"]["/v1/edges/{edge_type}/{id}"]["get"]
    assert next(p for p in edges["parameters"] if p["name"] == "edge_type")["schema"]["enum"] == sorted(spec.edges)
    comps = api["components"]["schemas"]
    assert comps["NodeRef"]["properties"]["type"]["enum"] == sorted(spec.nodes)
    assert comps["Hop"]["properties"]["edge"]["enum"] == sorted(spec.edges)
    for path, item in api["paths"].items():
        for op in item.values():
            if path.startswith("/v1/") or path == "/metrics":
                assert {"401", "403"} <= set(op["responses"]), path
                assert op.get("security") == [{"bearer": []}], path
    assert "401" not in api["paths"]["/healthz"]["get"]["responses"]
    assert set(api["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert {"400", "422", "503"} <= set(api["paths"]["/v1/traverse"]["post"]["responses"])


def test_cors_off_by_default_and_on_for_named_origins() -> None:
    pre = {"Origin": "https://ui.example", "Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "authorization"}
    with client() as c:
        r = c.options("/v1/nodes/account/a", headers=pre)
        assert "access-control-allow-origin" not in r.headers
    with client(auth_settings(RDG_API_CORS_ORIGINS="https://ui.example")) as c:
        r = c.options("/v1/nodes/account/a", headers=pre)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ui.example"
        r = c.options("/v1/nodes/account/a", headers={**pre, "Origin": "https://evil.example"})
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"


def test_token_config_is_checked() -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        TokenVerifier({"abc": ["read"]})
    with pytest.raises(ValueError, match="unknown scopes"):
        TokenVerifier({_sha("x"): ["write"]})
    with pytest.raises(ValueError, match="empty"):
        TokenVerifier({})
    v = TokenVerifier({_sha("x"): ["read"]})
    assert v.scopes("x") == frozenset({"read"}) and v.scopes("y") is None
