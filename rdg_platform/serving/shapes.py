"""The API's shapes of what the store returns: node and edge JSON objects, and opaque page tokens.

The store (:mod:`rdg_platform.kv.graph_store`) speaks in typed values (``Node``, adjacency rows,
``EdgeCursor``); this module is where they become the JSON of ``DESIGN.md``'s HTTP contract:
``{"type","id","properties","updated_at"}`` for a node and ``{"type","src","dst","properties",
"updated_at"}`` for an edge, with ``src``/``dst`` set by the direction the list was read in.

A page token is the cursor, base64url-encoded JSON tagged with the order it was issued for (``o``),
signed with HMAC (:class:`PageTokens`) over the list it pages through, so a forged, tampered or
foreign token is rejected with a readable 400 instead of being read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from rdg_platform.kv.graph_store import AdjacencyRow, EdgeCursor, Node

Order = Literal["latest", "any"]
Direction = Literal["out", "in"]


class BadPageTokenError(ValueError):
    """A page token that this service did not issue (or that was issued for another query)."""


def node_json(node: Node) -> dict[str, Any]:
    return {"type": node.type, "id": node.id, "properties": node.properties, "updated_at": node.updated_at}


def _same(raw: Any) -> Any:
    return raw


def edges_json(edge_type: str, node_id: str, direction: Direction, rows: Sequence[AdjacencyRow],
               decode: Callable[[Any], Any] = _same) -> list[dict[str, Any]]:
    """Adjacency rows of ``node_id`` -> edge objects; ``decode`` turns the stored properties into a
    dict (identity when they already are one)."""
    if direction == "out":
        return [{"type": edge_type, "src": node_id, "dst": k, "properties": decode(p), "updated_at": u}
                for k, u, p in rows]
    return [{"type": edge_type, "src": k, "dst": node_id, "properties": decode(p), "updated_at": u}
            for k, u, p in rows]


class PageTokens:
    """Issues and checks page tokens, signed with HMAC-SHA256 under ``key``.

    A token is ``<payload>.<mac>``: the cursor (base64url JSON, tagged with its order ``o``) and the
    first 16 bytes of HMAC-SHA256(key, context + payload), where the context is the list the token
    pages through (edge type, node id, direction). A token that was forged, altered, or issued for
    another list fails the MAC check (compared in constant time) and is a 400; the cursor itself is
    still plain data, so it is read only after its MAC holds."""

    MAC_BYTES = 16

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the page-token key must be at least 16 bytes")
        self._key = key

    def _mac(self, context: str, payload: str) -> str:
        digest = hmac.new(self._key, f"{context}\n{payload}".encode(), hashlib.sha256).digest()
        return _b64(digest[:self.MAC_BYTES])

    def encode(self, payload: Mapping[str, Any], context: str) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._mac(context, body)}"

    def decode(self, token: str, expect_kind: str, context: str) -> dict[str, Any]:
        """The payload of a token this service issued for ``context``; ``expect_kind`` guards against
        reuse across orders. Raises :class:`BadPageTokenError` with a readable reason."""
        body, dot, mac = token.partition(".")
        if not dot or not hmac.compare_digest(mac.encode(), self._mac(context, body).encode()):
            raise BadPageTokenError("page_token is not a token issued by this service for this list "
                                    "(bad signature)")
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError):  # pragma: no cover - signed by us
            raise BadPageTokenError("page_token is not a token issued by this service") from None
        if not isinstance(payload, dict) or payload.get("o") != expect_kind:
            raise BadPageTokenError(f"page_token was not issued for order={expect_kind}")
        return payload

    def page_token(self, cursor: EdgeCursor | None, order: Order, context: str) -> str | None:
        """The token a client sends back to get the page after ``cursor`` (None: no more pages)."""
        if cursor is None:
            return None
        if order == "any":
            return self.encode({"o": "any", "k": cursor.key}, context)
        return self.encode({"o": "latest", "t": cursor.updated_at, "k": cursor.key}, context)

    def page_cursor(self, token: str | None, order: Order, context: str) -> EdgeCursor | None:
        """The cursor a client's ``page_token`` stands for (None for no token)."""
        if not token:
            return None
        payload = self.decode(token, order, context)
        key = payload.get("k")
        if not isinstance(key, str):
            raise BadPageTokenError("page_token is not a token issued by this service")
        if order == "any":
            return EdgeCursor(key)
        ts = payload.get("t")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise BadPageTokenError("page_token is not a token issued by this service")
        return EdgeCursor(key, ts)


def list_context(edge_type: str, node_id: str, direction: Direction) -> str:
    """What a page token is bound to: one adjacency list."""
    return json.dumps([edge_type, node_id, direction])


# Where a list starts, as a cursor (item keys are never empty; no event time reaches 2**62): the
# token of a first page cut before anything was read.
START = {"any": EdgeCursor(""), "latest": EdgeCursor("", 2**62)}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_order(order: str) -> Order:
    """``latest``/``any`` in any case; anything else is a ValueError naming the allowed values."""
    o = order.lower()
    if o not in ("latest", "any"):
        raise ValueError(f"order must be latest or any, not {order!r}")
    return o  # type: ignore[return-value]
