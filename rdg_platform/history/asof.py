"""``as_of`` and ``include_expired`` reads: from the live store when it is exact, else from the history.

When the live store's answer equals the graph as of T:

- a node: the live node exists and its ``updated_at <= T`` (no write newer than T; nodes that exist
  now were not expired at T, since nothing older than their latest write decides their expiry);
- an adjacency list: its newest live edge has ``updated_at <= T`` and no edge of the type can have
  expired between T and now, which holds while the oldest update of the type in the history is newer
  than ``now - ttl`` (an edge visible at T but gone now was written before ``now - ttl``).

Otherwise, and always with ``include_expired``, the answer comes from :class:`HistoryReader`, folded
with the same LWW rule. Every answer says which (``"live"`` or ``"history"``).

:class:`AsOfStore` gives a traversal the two reads it needs (``aadjacency_rows``, ``aget_nodes``) with
these rules, so ``POST /v1/traverse`` with ``as_of`` runs the unchanged traversal code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Literal

from rdg_platform.history.reader import HistoryReader, HistoryRow
from rdg_platform.kv.codec import decode_props
from rdg_platform.kv.graph_store import EdgeCursor, GraphStore, Node
from rdg_platform.model.lww import encode_values

Source = Literal["live", "history"]
Direction = Literal["out", "in"]


def now_ms() -> int:
    return int(time.time() * 1000)


class AsOfGraph:
    """The live store and the history behind one API (see the module docstring)."""

    def __init__(self, store: GraphStore, history: HistoryReader) -> None:
        self.store = store
        self.history = history

    def nothing_expired_since(self, edge_type: str, as_of: int, now: int | None = None) -> bool:
        """No edge of ``edge_type`` visible at ``as_of`` can have expired from the live store since."""
        ttl = self.history.ttl_ms("edge", edge_type)
        if not ttl:
            return True
        oldest = self.history.oldest_update(edge_type)
        return oldest is None or oldest > (now if now is not None else now_ms()) - ttl

    async def node(self, node_type: str, node_id: str, as_of: int) -> tuple[Node | None, Source]:
        live = await self.store.aget_node(node_type, node_id)
        if live is not None and live.updated_at <= as_of:
            return live, "live"
        h = await asyncio.to_thread(self.history.node, node_type, node_id, as_of)
        return (None if h is None else Node(h.type, h.id, h.properties, h.updated_at)), "history"

    async def live_exact(self, edge_type: str, node_id: str, direction: Direction, as_of: int) -> bool:
        if not await asyncio.to_thread(self.nothing_expired_since, edge_type, as_of):
            return False
        newest = await self.store.aedge_rows(edge_type, node_id, direction, 1, None, "latest", None, False)
        return not newest.rows or newest.rows[0][1] <= as_of

    async def edges(self, edge_type: str, node_id: str, direction: Direction, limit: int, since: int | None,
                    order: Literal["latest", "any"], after: EdgeCursor | None, as_of: int | None,
                    include_expired: bool) -> tuple[list[tuple[str, int, dict[str, Any]]], EdgeCursor | None, Source]:
        """One page of an adjacency list as of ``as_of`` (None: now), rows with decoded properties."""
        t = as_of if as_of is not None else now_ms()
        if not include_expired and as_of is not None and await self.live_exact(edge_type, node_id, direction, t):
            live = await self.store.aedge_rows(edge_type, node_id, direction, limit, since, order, after)
            return [(k, u, decode_props(p)) for k, u, p in live.rows], live.next_cursor, "live"
        rows = (await asyncio.to_thread(self.history.adjacency, edge_type, [node_id], direction, t,
                                        include_expired))[node_id]
        if include_expired and as_of is None:  # the newest state too: live writes the history has not derived yet
            now = await self.store.aedge_rows(edge_type, node_id, direction, 10_000, None, "latest", None, False)
            rows = _merge_live(rows, [(k, u, decode_props(p)) for k, u, p in now.rows])
        if since is not None:
            rows = [r for r in rows if r[1] >= since]
        page, nxt = _page(rows, limit, order, after)
        return page, nxt, "history"


def _merge_live(hist: list[HistoryRow], live: list[HistoryRow]) -> list[HistoryRow]:
    by_key = {r[0]: r for r in hist}
    for r in live:
        cur = by_key.get(r[0])
        if cur is None or r[1] >= cur[1]:
            by_key[r[0]] = r
    return sorted(by_key.values(), key=lambda r: (-r[1], r[0]))


def _page(rows: list[HistoryRow], limit: int, order: str, after: EdgeCursor | None
          ) -> tuple[list[HistoryRow], EdgeCursor | None]:
    if order == "any":
        rows = sorted(rows, key=lambda r: r[0])
        if after is not None:
            rows = [r for r in rows if r[0] > after.key]
        page = rows[:limit]
        nxt = EdgeCursor(page[-1][0]) if len(rows) > limit else None
        return page, nxt
    if after is not None and after.updated_at is not None:
        cur = (-after.updated_at, after.key)
        rows = [r for r in rows if (-r[1], r[0]) > cur]
    page = rows[:limit]
    nxt = EdgeCursor(page[-1][0], page[-1][1]) if len(rows) > limit else None
    return page, nxt


class AsOfStore:
    """The reads a traversal makes (``aadjacency_rows``, ``aget_nodes``), as of one time. Each
    frontier node is answered by the live store when it is exact, else by the history; ``sources``
    collects which were used."""

    def __init__(self, graph: AsOfGraph, as_of: int) -> None:
        self.graph = graph
        self.as_of = as_of
        self.sources: set[Source] = set()

    async def aadjacency_rows(self, edge_type: str, node_ids: Sequence[str], direction: Direction = "out",
                              limit: int = 100, since_ms: int | None = None, order: str = "latest",
                              sort: bool = True, skipped: set[str] | None = None) -> dict[str, list[Any]]:
        store, t = self.graph.store, self.as_of
        out: dict[str, list[Any]] = {}
        need: list[str] = list(node_ids)
        if await asyncio.to_thread(self.graph.nothing_expired_since, edge_type, t):
            live = await store.aadjacency_rows(edge_type, node_ids, direction, limit, since_ms, "latest", True,
                                               skipped)
            newest = await store.aadjacency_rows(edge_type, node_ids, direction, 1, None, "latest", True)
            need = []
            for nid in node_ids:
                top = newest.get(nid) or []
                if top and top[0][1] > t:
                    need.append(nid)
                else:
                    out[nid] = live.get(nid, [])
            if len(need) < len(node_ids):
                self.sources.add("live")
        if need:
            self.sources.add("history")
            hist = await asyncio.to_thread(self.graph.history.adjacency, edge_type, need, direction, t, False)
            for nid in need:
                rows = hist.get(nid, [])
                if since_ms is not None:
                    kept = [r for r in rows if r[1] >= since_ms]
                    if len(kept) < len(rows) and skipped is not None:
                        skipped.add(nid)
                    rows = kept
                out[nid] = [(k, u, encode_values(p)) for k, u, p in rows[:limit]]
        return out

    async def aget_nodes(self, node_type: str, ids: Sequence[str]) -> dict[str, Node]:
        live = await self.graph.store.aget_nodes(node_type, ids)
        out = {i: n for i, n in live.items() if n.updated_at <= self.as_of}
        need = [i for i in ids if i not in out]
        if need:
            self.sources.add("history")
            hist = await asyncio.to_thread(self.graph.history.nodes, node_type, need, self.as_of)
            for i, h in hist.items():
                out[i] = Node(h.type, h.id, h.properties, h.updated_at)
        return {i: out[i] for i in ids if i in out}
