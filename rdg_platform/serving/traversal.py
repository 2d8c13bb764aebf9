"""Traversal requests and the breadth-first traversal engine.

Contract (Netflix's serving layer): a start node and 1..4 hops; each hop names an edge type, a
direction, a limit (default 300, the cap on edges returned for that hop's level), a lookback (default
100 days, on the edge's ``updated_at``) and an order: LATEST (newest first) or ANY (first found,
cheaper). Levels run one at a time; a level's frontier is read with a few multi-partition requests
grouped by replica set (:meth:`GraphStore.aadjacency_rows`), not one request per node. With ANY the
frontier is read in waves and the level stops as soon as ``limit`` edges are in hand; with LATEST each
frontier node contributes its newest ``limit`` edges and the level keeps the newest ``limit`` overall.
Node enrichment (``include_nodes``) is batched once at the end over all levels, de-duplicated, the
same way.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rdg_platform.kv.codec import decode_props
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.model.spec import GraphSpec
from rdg_platform.serving.shapes import edges_json, node_json

MAX_HOPS = 4
DEFAULT_HOP_LIMIT = 300
MAX_HOP_LIMIT = 1000
DEFAULT_LOOKBACK = "100d"
MAX_LOOKBACK_MS = 3650 * 86_400_000
ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,256}$"
_DURATION = re.compile(r"^\s*(\d{1,12})\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
WAVE = 256  # frontier nodes read per round with order=ANY (the level stops once it has its limit)


class RequestError(ValueError):
    """A semantically invalid request (HTTP 400); the message names the problem."""


def parse_lookback(value: int | str) -> int:
    """A lookback as milliseconds: an int is milliseconds; a string is ``<n>[ms|s|m|h|d]``."""
    if isinstance(value, bool):
        raise ValueError("lookback must be a duration like '30d' or milliseconds, not a boolean")
    if isinstance(value, int):
        ms = value
    else:
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"lookback {value!r} is not a duration like '100d', '12h', '30m', '45s' or '500ms'")
        ms = int(m.group(1)) * _UNIT_MS[m.group(2) or "ms"]
    if not 1 <= ms <= MAX_LOOKBACK_MS:
        raise ValueError(f"lookback must be between 1 ms and 3650 days, got {ms} ms")
    return ms


class NodeRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=64, description="Node type from the graph model")
    id: str = Field(pattern=ID_PATTERN, description="Node id (1-256 printable characters)")


class Hop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edge: str = Field(min_length=1, max_length=64, description="Edge type")
    direction: Literal["out", "in", "OUT", "IN"] = Field(default="out", description="Follow out-edges or in-edges")
    limit: int = Field(default=DEFAULT_HOP_LIMIT, ge=1, le=MAX_HOP_LIMIT, description="Max edges for this hop's level")
    lookback: int | str = Field(default=DEFAULT_LOOKBACK, description="'100d', '12h', '30m', '45s', '500ms' or milliseconds")
    order: Literal["LATEST", "ANY", "latest", "any"] = Field(default="LATEST", description="LATEST (newest first) or ANY")

    @field_validator("lookback")
    @classmethod
    def _check_lookback(cls, v: int | str) -> int | str:
        parse_lookback(v)
        return v


class TraverseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: NodeRef
    hops: list[Hop] = Field(min_length=1, max_length=MAX_HOPS)
    include_nodes: bool = False


@dataclass(frozen=True)
class PlannedHop:
    edge: str
    direction: Literal["out", "in"]
    limit: int
    since_ms: int
    order: Literal["latest", "any"]
    to_type: str


def plan(spec: GraphSpec, req: TraverseRequest, now_ms: int | None = None) -> list[PlannedHop]:
    """Check types and that each hop starts where the previous one ended; resolve lookbacks."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if req.start.type not in spec.nodes:
        raise RequestError(f"start.type: unknown node type {req.start.type!r} (known: {sorted(spec.nodes)})")
    cur = req.start.type
    out: list[PlannedHop] = []
    for i, h in enumerate(req.hops, 1):
        e = spec.edges.get(h.edge)
        if e is None:
            raise RequestError(f"hops[{i - 1}].edge: unknown edge type {h.edge!r} (known: {sorted(spec.edges)})")
        direction: Literal["out", "in"] = "out" if h.direction.lower() == "out" else "in"
        frm, to = (e.src, e.dst) if direction == "out" else (e.dst, e.src)
        if frm != cur:
            raise RequestError(f"hops[{i - 1}]: edge {h.edge!r} ({e.src} -> {e.dst}) followed {direction} starts "
                               f"from {frm!r} nodes, but hop {i} starts from {cur!r} nodes")
        order: Literal["latest", "any"] = "latest" if h.order.lower() == "latest" else "any"
        out.append(PlannedHop(h.edge, direction, h.limit, now - parse_lookback(h.lookback), order, to))
        cur = to
    return out


@dataclass
class TraversalStats:
    storage_s: float = 0.0
    enrich_s: float = 0.0
    reads: int = 0


async def traverse(store: GraphStore, start_id: str, hops: list[PlannedHop], include_nodes: bool,
                   stats: TraversalStats | None = None) -> dict[str, Any]:
    """Run a planned traversal; returns ``{"levels": [{"hop", "edges", "nodes"?}, ...]}``."""
    st = stats or TraversalStats()
    frontier = [start_id]
    levels: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for n, hop in enumerate(hops, 1):
        edges: list[dict[str, Any]] = []
        if frontier:
            if hop.order == "any":
                # Read the frontier in waves; stop once the level's limit is met.
                for i in range(0, len(frontier), WAVE):
                    wave = frontier[i:i + WAVE]
                    got = await store.aadjacency_rows(hop.edge, wave, hop.direction, hop.limit, hop.since_ms, "any")
                    st.reads += len(wave)
                    for nid in wave:
                        edges.extend(edges_json(hop.edge, nid, hop.direction, got[nid]))
                        if len(edges) >= hop.limit:
                            break
                    if len(edges) >= hop.limit:
                        break
                del edges[hop.limit:]
            else:
                got = await store.aadjacency_rows(hop.edge, frontier, hop.direction, hop.limit, hop.since_ms,
                                              "latest", sort=False)
                st.reads += len(frontier)
                # Newest first over the whole level; ties by frontier position, then neighbour id
                # (the order one node's own LATEST read gives).
                ranked = [(-u, i, k, p) for i, nid in enumerate(frontier) for k, u, p in got[nid]]
                ranked.sort()
                del ranked[hop.limit:]
                out = hop.direction == "out"
                edges = [{"type": hop.edge, "src": frontier[i] if out else k, "dst": k if out else frontier[i],
                          "properties": p, "updated_at": -nu} for nu, i, k, p in ranked]
        for e in edges:  # decode only the edges the level keeps
            e["properties"] = decode_props(e["properties"])
        end = "dst" if hop.direction == "out" else "src"
        frontier = list(dict.fromkeys(e[end] for e in edges))
        levels.append({"hop": n, "edges": edges, "_next": (hop.to_type, frontier)})
    st.storage_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    if include_nodes:
        wanted: dict[str, list[str]] = {}
        for lv in levels:
            typ, ids = lv["_next"]
            wanted.setdefault(typ, []).extend(ids)
        types = list(wanted)
        results = await asyncio.gather(*(store.aget_nodes(typ, list(dict.fromkeys(wanted[typ]))) for typ in types))
        found = dict(zip(types, results, strict=True))
        st.reads += sum(len(set(ids)) for ids in wanted.values())
        for lv in levels:
            typ, ids = lv["_next"]
            lv["nodes"] = [node_json(found[typ][i]) for i in ids if i in found[typ]]
    for lv in levels:
        del lv["_next"]
    st.enrich_s = time.perf_counter() - t1
    return {"levels": levels}
