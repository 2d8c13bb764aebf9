"""Bearer-token authentication and scope checks of the graph query service.

Tokens are configured hashed (``settings.api.tokens``: SHA-256 hex of a token -> its scopes), so the
server never holds a usable token; a presented token is hashed and compared with every configured
hash in constant time (:func:`hmac.compare_digest`, no early exit), so response timing says nothing
about how close a guess came. Scopes: ``read`` (nodes, edges, counts, traversals, ``/metrics``) and
``admin`` (erasure and other admin routes; an admin token also carries ``read``).

Two pieces, so that authentication happens before anything else looks at a request:

- :class:`BearerAuthMiddleware` (pure ASGI, cheap) answers 401 JSON with ``WWW-Authenticate: Bearer``
  to any request to a protected path (``/v1/*`` and ``/metrics``) without a valid token, and 403 JSON
  to a token without the ``read`` scope (every route needs it), before routing, body parsing or
  validation; it records the token's scopes in the request state;
- :func:`require_scope` is the FastAPI dependency a route declares for more (``admin``): 403 JSON
  when the token lacks the scope. It also declares the bearer scheme in the OpenAPI document.

The read routes rely on the middleware alone (no per-route dependency to resolve, which costs more
than the hash), so the token check adds a few microseconds to a read.

Open without a token: ``/healthz`` (probes), ``/docs`` and ``/openapi.json`` (the contract is public;
it names the graph's types, never its data).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any

import orjson
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

SCOPES = ("read", "admin")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
STATE_KEY = "rdg_scopes"

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                           description="Authorization: Bearer <token>; scopes read, admin")

# Declares the scheme in the OpenAPI document (the middleware or the check below does the work).
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


class AuthError(HTTPException):
    """401 (no or bad token, with ``WWW-Authenticate: Bearer``) or 403 (token lacks a scope)."""

    def __init__(self, status_code: int, detail: str) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="rdg"'} if status_code == 401 else None
        super().__init__(status_code=status_code, detail=detail, headers=headers)


class TokenVerifier:
    """The configured token hashes and their scopes; :meth:`scopes` checks a presented token."""

    def __init__(self, tokens: Mapping[str, Iterable[str]]) -> None:
        entries: list[tuple[bytes, frozenset[str]]] = []
        for h, scopes in tokens.items():
            if not _HEX64.match(h):
                raise ValueError(f"api.tokens: {h[:12]!r}... is not a lowercase SHA-256 hex digest of a token")
            sc = frozenset(scopes)
            unknown = sc - set(SCOPES)
            if unknown:
                raise ValueError(f"api.tokens: unknown scopes {sorted(unknown)} (known: {list(SCOPES)})")
            entries.append((bytes.fromhex(h), sc))
        if not entries:
            raise ValueError("api.tokens is empty: no client could ever be authorised")
        self._entries = entries

    def scopes(self, token: str) -> frozenset[str] | None:
        """The token's scopes, or None when it matches no configured hash."""
        digest = hashlib.sha256(token.encode()).digest()
        found: frozenset[str] | None = None
        for h, sc in self._entries:  # every entry, no early exit: constant time in the match
            if hmac.compare_digest(h, digest):
                found = sc
        return found

    def authenticate(self, authorization: str | None) -> frozenset[str]:
        """Scopes of an ``Authorization`` header's bearer token; :class:`AuthError` 401 otherwise."""
        if not authorization:
            raise AuthError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "the Authorization header is not 'Bearer <token>'")
        found = self.scopes(token)
        if found is None:
            raise AuthError(401, "invalid bearer token")
        return found


def is_protected(path: str) -> bool:
    """Paths that need a token: the API (``/v1/...``) and the metrics."""
    return path.startswith("/v1/") or path == "/v1" or path == "/metrics"


class BearerAuthMiddleware:
    """401 JSON for a protected path without a valid token, 403 JSON for one without ``scope``,
    before anything else runs; otherwise the token's scopes go into the request state for
    :func:`require_scope`."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, scope: str = "read") -> None:
        self.app = app
        self.verifier = verifier
        self.scope = scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and is_protected(scope["path"]):
            header: str | None = None
            for k, v in scope["headers"]:
                if k == b"authorization":
                    header = v.decode("latin-1")
                    break
            try:
                scopes = self.verifier.authenticate(header)
                if self.scope not in scopes:
                    raise AuthError(403, f"this token lacks the {self.scope!r} scope needed here")
            except AuthError as exc:
                await _send_error(send, exc)
                return
            scope.setdefault("state", {})[STATE_KEY] = scopes
        await self.app(scope, receive, send)


async def _send_error(send: Send, exc: AuthError) -> None:
    body = orjson.dumps({"error": exc.detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def require_scope(scope: str) -> Callable[..., Awaitable[None]]:
    """FastAPI dependency: the request's bearer token must carry ``scope`` (403 JSON otherwise; 401
    when there is no valid token). Use as ``dependencies=[Depends(require_scope("admin"))]``.
    Works behind :class:`BearerAuthMiddleware` (reuses its result) and without it (checks the
    token itself against ``app.state.token_verifier``)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r} (known: {list(SCOPES)})")

    async def check(request: Request, _credentials: BearerCredentials) -> None:
        scopes: Any = request.scope.get("state", {}).get(STATE_KEY)
        if scopes is None:
            verifier: TokenVerifier = request.app.state.token_verifier
            scopes = verifier.authenticate(request.headers.get("authorization"))
        if scope not in scopes:
            raise AuthError(403, f"this token lacks the {scope!r} scope needed here")

    check.__name__ = f"require_{scope}"
    return check
