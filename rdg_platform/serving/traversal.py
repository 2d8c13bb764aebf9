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

Truncation report: each level says whether it is everything the hop asked for. ``truncated_by``
lists why not, in this order: ``limit`` (a frontier node had more matching edges than the hop's
limit, or the level had more than ``limit`` in all), ``lookback`` (edges older than the lookback were
read and skipped), ``budget`` (the request's edge budget ran out: frontier nodes were left unread),
``deadline`` (the request's deadline passed: likewise). Once the budget or the deadline stops a
level, every later level is empty with the same reason. The budget counts the edges storage
returned to the service; a read is sized to what is left (frontier nodes x the hop's limit), so it
is overshot by at most one node's list.
"""

from __future__ import annotations

import asyncio
import heapq
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rdg_platform.kv.codec import decode_props
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.model.spec import GraphSpec
from rdg_platform.serving.cache import NodeCache
from rdg_platform.serving.shapes import node_json

MAX_HOPS = 4
DEFAULT_HOP_LIMIT = 300
MAX_HOP_LIMIT = 1000
DEFAULT_LOOKBACK = "100d"
MAX_LOOKBACK_MS = 3650 * 86_400_000
ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,256}$"
# A lookback string: a positive number without leading zeros and a unit, no larger than 3650 days
# in any unit. The OpenAPI document declares the same pattern, so the contract and the check agree.
LOOKBACK_PATTERN = (r"^(?:[1-9][0-9]{0,10}(?:ms)?|[1-9][0-9]{0,7}s|[1-9][0-9]{0,5}m|[1-9][0-9]{0,3}h"
                    r"|(?:[1-9][0-9]{0,2}|[12][0-9]{3}|3[0-5][0-9]{2}|36[0-4][0-9]|3650)d)$")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)?$")
_LOOKBACK = re.compile(LOOKBACK_PATTERN)
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
        m = _DURATION.match(value) if _LOOKBACK.match(value) else None
        if not m:
            raise ValueError(f"lookback {value!r} is not a duration like '100d', '12h', '30m', '45s' or '500ms' "
                             "(a number without leading zeros, at most 3650 days)")
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
    lookback: Annotated[int, Field(ge=1, le=MAX_LOOKBACK_MS)] | Annotated[str, Field(pattern=LOOKBACK_PATTERN)] = Field(
        default=DEFAULT_LOOKBACK, description="'100d', '12h', '30m', '45s', '500ms' or milliseconds (at most 3650 days)")
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


REASONS = ("limit", "lookback", "budget", "deadline")


@dataclass
class Budget:
    """What one request may still spend: edges read from storage and time (``time.monotonic()``)."""

    edges_left: int
    deadline: float

    @classmethod
    def of(cls, max_edges: int, deadline_ms: int) -> Budget:
        return cls(max_edges, time.monotonic() + deadline_ms / 1000.0)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def timeout_s(self) -> float | None:
        """Time left for a read (None: no deadline)."""
        return None if self.deadline == float("inf") else max(0.0, self.remaining_s())

    def exhausted(self) -> str | None:
        """``budget`` or ``deadline`` when the request ran out of that, else None."""
        if self.edges_left <= 0:
            return "budget"
        if self.remaining_s() <= 0:
            return "deadline"
        return None


def _newest(row: tuple[str, int, Any]) -> tuple[int, str]:
    return -row[1], row[0]


async def _read_level(store: GraphStore, hop: PlannedHop, frontier: list[str], budget: Budget,
                      reasons: set[str]) -> tuple[list[tuple[int, str, int, Any]], int]:
    """Read one level's adjacency: rows ``(frontier index, neighbour, updated_at, raw props)`` in
    the order the level keeps them, and how many frontier nodes were read. Adds truncation reasons."""
    skipped: set[str] = set()
    kept: list[tuple[int, str, int, Any]] = []
    pos = 0
    while pos < len(frontier):
        why = budget.exhausted()
        if why:
            reasons.add(why)
            break
        # Ask for limit + 1 per node: an extra row says the node had more than the limit.
        afford = max(1, budget.edges_left // (hop.limit + 1))
        size = min(len(frontier) - pos, afford, WAVE if hop.order == "any" else len(frontier))
        chunk = frontier[pos:pos + size]
        try:
            async with asyncio.timeout(budget.timeout_s()):
                got = await store.aadjacency_rows(hop.edge, chunk, hop.direction, hop.limit + 1, hop.since_ms,
                                                  hop.order, sort=False, skipped=skipped)
        except TimeoutError:
            reasons.add("deadline")
            break
        for i, nid in enumerate(chunk, pos):
            rows = got[nid]
            budget.edges_left -= len(rows)
            if len(rows) > hop.limit:
                reasons.add("limit")
                rows = rows[:hop.limit] if hop.order == "any" else heapq.nsmallest(hop.limit, rows, key=_newest)
            kept.extend((i, k, u, p) for k, u, p in rows)
        pos += size
        if hop.order == "any" and len(kept) >= hop.limit:
            if len(kept) > hop.limit or pos < len(frontier):
                reasons.add("limit")  # ANY stops once it has its limit: more may exist
            break
    if skipped:
        reasons.add("lookback")
    if hop.order == "latest":
        # Newest first over the whole level; ties by frontier position, then neighbour id (the
        # order one node's own LATEST read gives).
        kept.sort(key=lambda r: (-r[2], r[0], r[1]))
    if len(kept) > hop.limit:
        reasons.add("limit")
        del kept[hop.limit:]
    return kept, pos


async def traverse(store: GraphStore, start_id: str, hops: list[PlannedHop], include_nodes: bool,
                   stats: TraversalStats | None = None, budget: Budget | None = None,
                   node_cache: NodeCache | None = None) -> dict[str, Any]:
    """Run a planned traversal; returns ``{"levels": [{"hop", "edges", "truncated", "truncated_by",
    "nodes"?}, ...]}``. ``budget`` (default: unbounded) caps the edges read and the time spent;
    ``node_cache`` (the service's) answers ``include_nodes`` reads it holds fresh."""
    st = stats or TraversalStats()
    b = budget or Budget(2**62, float("inf"))
    frontier = [start_id]
    levels: list[dict[str, Any]] = []
    stopped: str | None = None
    t0 = time.perf_counter()
    for n, hop in enumerate(hops, 1):
        reasons: set[str] = set()
        edges: list[dict[str, Any]] = []
        if stopped:
            reasons.add(stopped)
        elif frontier:
            rows, read = await _read_level(store, hop, frontier, b, reasons)
            st.reads += read
            out = hop.direction == "out"
            edges = [{"type": hop.edge, "src": frontier[i] if out else k, "dst": k if out else frontier[i],
                      "properties": decode_props(p), "updated_at": u} for i, k, u, p in rows]
            if "budget" in reasons or "deadline" in reasons:
                stopped = "budget" if "budget" in reasons else "deadline"
        end = "dst" if hop.direction == "out" else "src"
        frontier = list(dict.fromkeys(e[end] for e in edges))
        levels.append({"hop": n, "edges": edges, "truncated": bool(reasons),
                       "truncated_by": [r for r in REASONS if r in reasons], "_next": (hop.to_type, frontier)})
    st.storage_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    if include_nodes:
        wanted: dict[str, list[str]] = {}
        for lv in levels:
            typ, ids = lv["_next"]
            wanted.setdefault(typ, []).extend(ids)
        types = list(wanted)
        if node_cache is not None:
            results = await asyncio.gather(*(node_cache.get_many(store, typ, wanted[typ]) for typ in types))
        else:
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
