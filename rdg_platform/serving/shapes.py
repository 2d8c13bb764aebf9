"""The API's shapes of what the store returns: node and edge JSON objects, and opaque page tokens.

The store (:mod:`rdg_platform.kv.graph_store`) speaks in typed values (``Node``, adjacency rows,
``EdgeCursor``); this module is where they become the JSON of ``DESIGN.md``'s HTTP contract:
``{"type","id","properties","updated_at"}`` for a node and ``{"type","src","dst","properties",
"updated_at"}`` for an edge, with ``src``/``dst`` set by the direction the list was read in.

A page token is the cursor, base64url-encoded JSON, tagged with the order it was issued for (``o``) so
a token of one order (or a foreign string) is rejected with a readable 400 instead of silently
returning the wrong page.
"""

from __future__ import annotations

import base64
import binascii
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


def encode_token(payload: Mapping[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, expect_kind: str) -> dict[str, Any]:
    """Decode a token produced by :func:`encode_token`; ``expect_kind`` guards against token reuse
    across different orders/APIs. Raises :class:`BadPageTokenError` with a readable reason."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadPageTokenError("page_token is not a token issued by this service") from None
    if not isinstance(payload, dict) or payload.get("o") != expect_kind:
        raise BadPageTokenError(f"page_token was not issued for order={expect_kind}")
    return payload


def page_token(cursor: EdgeCursor | None, order: Order) -> str | None:
    """The token a client sends back to get the page after ``cursor`` (None: no more pages)."""
    if cursor is None:
        return None
    if order == "any":
        return encode_token({"o": "any", "k": cursor.key})
    return encode_token({"o": "latest", "t": cursor.updated_at, "k": cursor.key})


def page_cursor(token: str | None, order: Order) -> EdgeCursor | None:
    """The cursor a client's ``page_token`` stands for (None for no token)."""
    if not token:
        return None
    payload = decode_token(token, order)
    key = payload.get("k")
    if not isinstance(key, str):
        raise BadPageTokenError("page_token is not a token issued by this service")
    if order == "any":
        return EdgeCursor(key)
    ts = payload.get("t")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise BadPageTokenError("page_token is not a token issued by this service")
    return EdgeCursor(key, ts)


def parse_order(order: str) -> Order:
    """``latest``/``any`` in any case; anything else is a ValueError naming the allowed values."""
    o = order.lower()
    if o not in ("latest", "any"):
        raise ValueError(f"order must be latest or any, not {order!r}")
    return o  # type: ignore[return-value]
