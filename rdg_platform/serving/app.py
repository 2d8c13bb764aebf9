"""The graph query HTTP service (FastAPI): nodes, adjacency lists and multi-hop traversals.

Error contract: every bad request gets a 4xx with ``{"error": "..."}`` naming the problem — unknown
types, bad ids, out-of-range limits, malformed JSON, invalid hops, foreign page tokens — and a
Cassandra that is down or timing out is a 503 with the same shape, never a 500 or a stack trace.

Latency: responses are serialised with orjson straight into ``Response`` (no response-model
re-validation), reads go through the driver's async API bridged into asyncio, and the first request
connects (and resolves the blue/green tables) off the event loop. The service never creates tables:
provisioning (:func:`rdg_platform.kv.schema.ensure_schema`) is the entry points' job.

:func:`create_app` is an entry point: given no settings it builds them (:func:`load_settings`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
from cassandra import DriverException, OperationTimedOut, RequestExecutionException
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from rdg_platform.gcpause import freeze_startup_heap
from rdg_platform.kv.codec import decode_props
from rdg_platform.kv.graph_store import GraphStore, UnknownTypeError
from rdg_platform.model.spec import GraphSpec
from rdg_platform.serving import shapes
from rdg_platform.serving.metrics import Metrics
from rdg_platform.serving.shapes import BadPageTokenError, edges_json, node_json, page_cursor, parse_order
from rdg_platform.serving.traversal import (
    ID_PATTERN,
    RequestError,
    TraversalStats,
    TraverseRequest,
    plan,
    traverse,
)
from rdg_platform.settings import Settings, load_settings

log = logging.getLogger(__name__)
STORAGE_ERRORS = (NoHostAvailable, OperationTimedOut, RequestExecutionException, DriverException,
                  ConnectionException, OSError)
MAX_EDGE_PAGE = 1000


# Module level: FastAPI resolves these string annotations (PEP 563) against module globals.
IdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Node id (1-256 printable characters)")]
TypePath = Annotated[str, Path(min_length=1, max_length=64, description="Node or edge type")]
Dir = Literal["out", "in", "OUT", "IN"]
OrderQ = Literal["latest", "any", "LATEST", "ANY"]


class ErrorBody(BaseModel):
    error: str


class NodeBody(BaseModel):
    type: str
    id: str
    properties: dict[str, Any]
    updated_at: int


class EdgeBody(BaseModel):
    type: str
    src: str
    dst: str
    properties: dict[str, Any]
    updated_at: int


class EdgesBody(BaseModel):
    edges: list[EdgeBody]
    next_page_token: str | None


class LevelBody(BaseModel):
    hop: int
    edges: list[EdgeBody]
    nodes: list[NodeBody] | None = None


class TraverseBody(BaseModel):
    levels: list[LevelBody]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad request (unknown type, bad hop, bad page token, malformed JSON)"},
    404: {"model": ErrorBody, "description": "Not found"},
    422: {"model": ErrorBody, "description": "Parameter or body out of range / wrong type"},
    503: {"model": ErrorBody, "description": "Storage unavailable"},
}


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _err(status: int, msg: str) -> Response:
    return _json({"error": msg}, status)


def _describe_validation(exc: RequestValidationError) -> tuple[int, str]:
    errs = exc.errors()
    for e in errs:
        if e.get("type") == "json_invalid":
            ctx = e.get("ctx") or {}
            return 400, f"malformed JSON body: {ctx.get('error', 'invalid JSON')}"
    parts = []
    for e in errs[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        msg = e.get("msg", "invalid")
        if loc.endswith("id") and e.get("type") == "string_pattern_mismatch":
            # The regex itself tells a client nothing; say what an id may be.
            msg = "an id is 1-256 printable characters (none given, too long, or a control character)"
        parts.append(f"{loc}: {msg}")
    return 422, "; ".join(parts) or "invalid request"


class _StoreHolder:
    """Connects lazily (in a worker thread, once) so the app starts even with Cassandra down and
    answers 503 until it is reachable; afterwards the driver reconnects on its own."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store
        self.ready = False
        self._lock = asyncio.Lock()

    def _connect(self) -> None:
        self.store.ping()  # opens every cluster's session and proves it answers
        if self.store.version_refresh_s is not None:  # resolve blue/green tables off the event loop
            self.store.refresh_versions()

    async def get(self) -> GraphStore:
        if self.ready:
            return self.store
        async with self._lock:
            if not self.ready:
                await asyncio.to_thread(self._connect)
                self.ready = True
        return self.store


def create_app(spec: GraphSpec | None = None, store: GraphStore | None = None, *,
               settings: Settings | None = None, freeze_heap: bool | None = None) -> FastAPI:
    """Build the app. Pass ``store`` to share one (tests, benchmarks); otherwise the app builds its
    own from ``settings`` (default: :func:`load_settings`) and ``spec`` (default: the settings'
    spec), and closes it on shutdown.

    ``freeze_heap`` (default: when the app owns its store, i.e. it is the process's server, and
    ``RDG_API_GC_FREEZE`` allows it) moves every object alive at startup out of the cyclic GC's
    reach (``gc.freeze``); an app embedded in a process that keeps creating and dropping other
    objects (tests) should not."""
    owned = store is None
    if store is None:
        s = settings or load_settings()
        spec = spec or s.load_spec()
        store = GraphStore.from_spec(spec, s.cassandra)
        if freeze_heap is None:
            freeze_heap = s.api.gc_freeze
    spec = spec or store.spec
    freeze = bool(freeze_heap)
    gstore = store
    holder = _StoreHolder(gstore)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything alive now (modules, the spec, the driver's metadata) lives as long as the
        # server; frozen, the cyclic GC's full collections, which a traversal's thousands of rows
        # trigger, stop walking it.
        freeze_startup_heap(freeze)
        try:
            yield
        finally:
            if owned:
                await asyncio.to_thread(gstore.close)

    app = FastAPI(title="rdg graph query service", version="1", lifespan=lifespan,
                  description="Nodes, adjacency lists and multi-hop traversals over the real-time graph.")
    app.state.metrics = metrics
    app.state.store = gstore

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        status, msg = _describe_validation(exc)
        return _err(status, msg)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return _err(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:  # last resort: still JSON
        if isinstance(exc, STORAGE_ERRORS):
            return _err(503, f"storage unavailable: {type(exc).__name__}")
        log.exception("unhandled error")
        return _err(500, f"internal error: {type(exc).__name__}")

    async def guarded(endpoint: str, fn: Callable[[], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        try:
            resp = await fn()
        except (RequestError, UnknownTypeError, BadPageTokenError) as exc:
            resp = _err(400, str(exc))
        except ValueError as exc:
            resp = _err(400, str(exc))
        except STORAGE_ERRORS as exc:
            log.warning("storage error on %s: %s", endpoint, exc)
            resp = _err(503, f"storage unavailable: {type(exc).__name__}: {str(exc)[:200]}")
        metrics.observe(endpoint, "total", time.perf_counter() - t0)
        metrics.requests.labels(endpoint, str(resp.status_code)).inc()
        return resp

    @app.get("/v1/nodes/{type}/{id:path}", response_model=NodeBody, responses=ERRORS, summary="Get a node")
    async def get_node(type: TypePath, id: IdPath) -> Response:
        async def run() -> Response:
            t0 = time.perf_counter()
            if type not in spec.nodes:
                raise RequestError(f"unknown node type {type!r} (known: {sorted(spec.nodes)})")
            metrics.observe("node", "validate", time.perf_counter() - t0)
            s = await holder.get()
            t1 = time.perf_counter()
            node = await s.aget_node(type, id)
            metrics.observe("node", "storage", time.perf_counter() - t1)
            if node is None:
                return _err(404, f"node {type}/{id} not found")
            return _json(node_json(node))
        return await guarded("node", run)

    @app.get("/v1/edges/{edge_type}/{id:path}", response_model=EdgesBody, responses=ERRORS,
             summary="List a node's out- or in-edges of one type")
    async def get_edges(
        edge_type: TypePath,
        id: IdPath,
        direction: Annotated[Dir, Query(description="out or in")] = "out",
        limit: Annotated[int, Query(ge=1, le=MAX_EDGE_PAGE)] = 100,
        since: Annotated[int | None, Query(ge=0, le=2**53, description="Only edges updated at/after (epoch ms)")] = None,
        order: Annotated[OrderQ, Query(description="latest (newest first) or any")] = "latest",
        page_token: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> Response:
        async def run() -> Response:
            t0 = time.perf_counter()
            if edge_type not in spec.edges:
                raise RequestError(f"unknown edge type {edge_type!r} (known: {sorted(spec.edges)})")
            d: Literal["out", "in"] = "out" if direction.lower() == "out" else "in"
            o = parse_order(order)
            after = page_cursor(page_token, o)
            metrics.observe("edges", "validate", time.perf_counter() - t0)
            s = await holder.get()
            t1 = time.perf_counter()
            page = await s.aedge_rows(edge_type, id, d, limit, since, o, after)
            metrics.observe("edges", "storage", time.perf_counter() - t1)
            return _json({"edges": edges_json(edge_type, id, d, page.rows, decode_props),
                          "next_page_token": shapes.page_token(page.next_cursor, o)})
        return await guarded("edges", run)

    @app.post("/v1/traverse", response_model=TraverseBody, responses=ERRORS, summary="Multi-hop traversal")
    async def post_traverse(req: TraverseRequest) -> Response:
        async def run() -> Response:
            t0 = time.perf_counter()
            hops = plan(spec, req)
            metrics.observe("traverse", "validate", time.perf_counter() - t0)
            s = await holder.get()
            stats = TraversalStats()
            body = await traverse(s, req.start.id, hops, req.include_nodes, stats)
            metrics.observe("traverse", "storage", stats.storage_s)
            if req.include_nodes:
                metrics.observe("traverse", "enrich", stats.enrich_s)
            metrics.storage_reads.labels("traverse").inc(stats.reads)
            return _json(body)
        return await guarded("traverse", run)

    @app.get("/healthz", summary="Liveness and storage reachability")
    async def healthz() -> Response:
        try:
            s = await holder.get()
            await asyncio.to_thread(s.ping)
        except STORAGE_ERRORS as exc:
            return _json({"status": "degraded", "storage": f"unavailable: {type(exc).__name__}"}, 503)
        return _json({"status": "ok", "storage": "ok"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prom() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app
