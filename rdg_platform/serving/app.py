"""The graph query HTTP service (FastAPI): nodes, adjacency lists and multi-hop traversals.

Error contract: every bad request gets a 4xx with ``{"error": "..."}`` naming the problem — no or a
bad token (401, with ``WWW-Authenticate: Bearer``), a token without the route's scope (403), unknown
types, bad ids, out-of-range limits, malformed JSON, invalid hops, forged or tampered page tokens —
and a Cassandra that is down or timing out is a 503 with the same shape, never a 500 or a stack trace.
A 405 carries ``Allow``. The OpenAPI document is exact: node and edge types are enums generated from
the spec, every route lists every status it answers, ``/metrics`` is ``text/plain``.

Security (:mod:`rdg_platform.serving.auth`): bearer tokens on every ``/v1/*`` route and on
``/metrics`` (``read`` scope); ``/healthz``, ``/docs`` and ``/openapi.json`` are open. Page tokens are
HMAC-signed (:class:`~rdg_platform.serving.shapes.PageTokens`). Each request has a budget of edges
read and a deadline (``api.max_edges_per_request``, ``api.request_deadline_ms``); past either, the
answer stops reading and says so (``truncated``/``truncated_by``). CORS is off unless
``api.cors_origins`` names origins.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
from cassandra import DriverException, OperationTimedOut, RequestExecutionException
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rdg_platform.gcpause import freeze_startup_heap
from rdg_platform.history.asof import AsOfGraph, AsOfStore
from rdg_platform.history.reader import HistoryReader
from rdg_platform.kv.codec import decode_props
from rdg_platform.kv.graph_store import GraphStore, UnknownTypeError
from rdg_platform.model.spec import GraphSpec
from rdg_platform.serving.auth import BearerAuthMiddleware, TokenVerifier
from rdg_platform.serving.cache import NodeCache
from rdg_platform.serving.erasures import erasure_router
from rdg_platform.serving.explore import explore_router
from rdg_platform.serving.metrics import Metrics
from rdg_platform.serving.shapes import (
    START,
    BadPageTokenError,
    PageTokens,
    edges_json,
    list_context,
    node_json,
    parse_order,
)
from rdg_platform.serving.traversal import (
    ID_PATTERN,
    Budget,
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


AsOfQ = Annotated[int | None, Query(ge=0, le=2**53, description="The graph as it was at this time (epoch ms): "
                                   "from the live store when exact, else from the Iceberg history")]


class TraverseAsOfRequest(TraverseRequest):
    as_of: int | None = Field(None, ge=0, le=2**53, description="Traverse the graph as it was at this time (epoch "
                                                                "ms); lookbacks count back from it")


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


Reason = Literal["limit", "lookback", "budget", "deadline"]


class EdgesBody(BaseModel):
    edges: list[EdgeBody]
    next_page_token: str | None
    truncated: bool
    truncated_by: list[Literal["budget", "deadline"]]


class LevelBody(BaseModel):
    hop: int
    edges: list[EdgeBody]
    truncated: bool
    truncated_by: list[Reason]
    nodes: list[NodeBody] | None = None


class CountBody(BaseModel):
    count: int
    exact: bool


class TraverseBody(BaseModel):
    levels: list[LevelBody]


_STATUS: dict[int, str] = {
    400: "Bad request (unknown type, hop chain that does not connect, forged or tampered page token, "
         "malformed JSON)",
    401: "No bearer token, or not a valid one (WWW-Authenticate: Bearer)",
    403: "The token lacks the scope this route needs",
    404: "Not found",
    422: "Parameter or body out of range / wrong type",
    503: "Storage unavailable",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses (JSON ``{"error": ...}``); reused by other routers."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _STATUS[code]}
        if code == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                     "description": "Bearer"}}
        out[code] = entry
    return out


AUTH_ERRORS = (401, 403)
BEARER_SCHEME = {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>; scopes read, admin"}
COUNT_BOUND = 100_000  # keys a count reads at most (also bounded by the request's budget and deadline)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _err(status: int, msg: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps({"error": msg}), status_code=status, media_type="application/json",
                    headers=headers)


def api_settings(settings: Settings | None) -> Settings:
    """The server's settings: ``settings`` (default :func:`load_settings`) with the local
    credentials' token hashes and page-token key where it names none (``rdg serve``, demo, tests)."""
    s = settings or load_settings()
    if s.api.tokens is None or s.api.page_token_key is None:
        from rdg_platform.local_services.credentials import local_api_settings

        s = local_api_settings(s)
    return s


def _ref_error(code: int) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _STATUS[code], "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    if code == 401:
        out["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
    return out


def _with_type_enums(schema: dict[str, Any], spec: GraphSpec) -> dict[str, Any]:
    """Node and edge types as enums from the spec, in path parameters and the traverse body; 401
    and 403 documented on every route that needs a token (including routers added by others)."""
    nodes, edges = sorted(spec.nodes), sorted(spec.edges)
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = BEARER_SCHEME
    for path, item in schema.get("paths", {}).items():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            if path.startswith("/v1/") or path == "/metrics":  # behind the middleware's token check
                op["security"] = [{"bearer": []}]
            if any("bearer" in sec for sec in op.get("security", [])):  # every route behind a token
                for code in AUTH_ERRORS:
                    op["responses"].setdefault(str(code), _ref_error(code))
            if "requestBody" in op:  # a body that is not JSON is a 400 (the app's validation handler)
                op["responses"].setdefault("400", _ref_error(400))
            for code, resp in op.get("responses", {}).items():
                if int(code) in _STATUS and set(resp.get("content", {})) != {"application/json"}:
                    resp["content"] = _ref_error(int(code))["content"]  # errors are JSON on text routes too
            for prm in op.get("parameters", []):
                if prm.get("in") == "path" and prm.get("name") == "type":
                    prm["schema"]["enum"] = nodes
                elif prm.get("in") == "path" and prm.get("name") == "edge_type":
                    prm["schema"]["enum"] = edges
    comps = schema.get("components", {}).get("schemas", {})
    if "NodeRef" in comps:
        comps["NodeRef"]["properties"]["type"]["enum"] = nodes
    if "Hop" in comps:
        comps["Hop"]["properties"]["edge"]["enum"] = edges
    return schema


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
               settings: Settings | None = None, freeze_heap: bool | None = None,
               auth: bool = True) -> FastAPI:
    """Build the app. Pass ``store`` to share one (tests, benchmarks); otherwise the app builds its
    own from ``settings`` (default: :func:`load_settings`) and ``spec`` (default: the settings'
    spec), and closes it on shutdown. Tokens, the page-token key, the budget and CORS come from
    ``settings.api`` (see :func:`api_settings`); ``auth=False`` serves without tokens, for the
    benchmark's same-run comparison only.

    ``freeze_heap`` (default: when the app owns its store, i.e. it is the process's server, and
    ``RDG_API_GC_FREEZE`` allows it) moves every object alive at startup out of the cyclic GC's
    reach (``gc.freeze``); an app embedded in a process that keeps creating and dropping other
    objects (tests) should not."""
    owned = store is None
    s = api_settings(settings)
    if store is None:
        spec = spec or s.load_spec()
        store = GraphStore.from_spec(spec, s.cassandra)
        if freeze_heap is None:
            freeze_heap = s.api.gc_freeze
    spec = spec or store.spec
    freeze = bool(freeze_heap)
    gstore = store
    holder = _StoreHolder(gstore)
    asof = AsOfGraph(gstore, HistoryReader.from_settings(s, spec))
    metrics = Metrics()
    node_cache = NodeCache(s.api.node_cache_size, s.api.node_cache_ttl_s, registry=metrics.registry)

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

    api = s.api
    assert api.tokens is not None and api.page_token_key is not None  # filled by api_settings
    verifier = TokenVerifier(api.tokens)
    tokens = PageTokens(api.page_token_key.get_secret_value().encode())
    max_edges, deadline_ms = api.max_edges_per_request, api.request_deadline_ms

    app = FastAPI(title="rdg graph query service", version="1", lifespan=lifespan,
                  description="Nodes, adjacency lists and multi-hop traversals over the real-time graph. "
                              "Every /v1 route and /metrics need 'Authorization: Bearer <token>'.")
    app.state.metrics = metrics
    app.state.store = gstore
    app.state.token_verifier = verifier
    read: list[Any] = []  # the middleware enforces the read scope; the OpenAPI document says so
    if auth:
        app.add_middleware(BearerAuthMiddleware, verifier=verifier, scope="read")
    if api.cors_origins:  # outermost, so preflight requests are answered before authentication
        app.add_middleware(CORSMiddleware, allow_origins=list(api.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        status, msg = _describe_validation(exc)
        return _err(status, msg)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return _err(exc.status_code, str(exc.detail), exc.headers)  # keeps Allow (405), WWW-Authenticate

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

    @app.get("/v1/nodes/{type}/{id:path}", response_model=NodeBody, responses=responses(400, 401, 403, 404, 422, 503),
             summary="Get a node", dependencies=read)
    async def get_node(type: TypePath, id: IdPath, as_of: AsOfQ = None) -> Response:
        async def run() -> Response:
            t0 = time.perf_counter()
            if type not in spec.nodes:
                raise RequestError(f"unknown node type {type!r} (known: {sorted(spec.nodes)})")
            metrics.observe("node", "validate", time.perf_counter() - t0)
            s = await holder.get()
            t1 = time.perf_counter()
            if as_of is not None:  # the graph as of then: live when exact, else the history
                node, source = await asof.node(type, id, as_of)
                if node is None:
                    return _err(404, f"node {type}/{id} not found as of {as_of}")
                return _json({**node_json(node), "source": source})
            node = await node_cache.get(s, type, id)  # at most RDG_API_NODE_CACHE_TTL_S stale
            metrics.observe("node", "storage", time.perf_counter() - t1)
            if node is None:
                return _err(404, f"node {type}/{id} not found")
            return _json(node_json(node))
        return await guarded("node", run)

    # Before the edge list's route: its {id:path} would swallow the "/count".
    @app.get("/v1/edges/{edge_type}/{id:path}/count", response_model=CountBody,
             responses=responses(400, 401, 403, 422, 503), dependencies=read,
             summary="Count a node's out- or in-edges of one type",
             description="Exact (a count of the list's live items: expired and deleted edges are not "
                         "counted, an edge written twice counts once) up to the request's edge budget; "
                         "past it, or past the deadline, an estimate with exact=false.")
    async def count_edges(
        edge_type: TypePath,
        id: IdPath,
        direction: Annotated[Dir, Query(description="out or in")] = "out",
    ) -> Response:
        async def run() -> Response:
            if edge_type not in spec.edges:
                raise RequestError(f"unknown edge type {edge_type!r} (known: {sorted(spec.edges)})")
            d: Literal["out", "in"] = "out" if direction.lower() == "out" else "in"
            budget = Budget.of(max_edges, deadline_ms)
            s = await holder.get()
            t1 = time.perf_counter()
            c = await s.acount_edges(edge_type, id, d, min(COUNT_BOUND, max_edges), budget.deadline)
            metrics.observe("count", "storage", time.perf_counter() - t1)
            return _json({"count": c.count, "exact": c.exact})
        return await guarded("count", run)

    @app.get("/v1/edges/{edge_type}/{id:path}", response_model=EdgesBody, responses=responses(400, 401, 403, 422, 503),
             summary="List a node's out- or in-edges of one type", dependencies=read)
    async def get_edges(
        edge_type: TypePath,
        id: IdPath,
        direction: Annotated[Dir, Query(description="out or in")] = "out",
        limit: Annotated[int, Query(ge=1, le=MAX_EDGE_PAGE)] = 100,
        since: Annotated[int | None, Query(ge=0, le=2**53, description="Only edges updated at/after (epoch ms)")] = None,
        order: Annotated[OrderQ, Query(description="latest (newest first) or any")] = "latest",
        page_token: Annotated[str | None, Query(max_length=2048)] = None,
        as_of: AsOfQ = None,
        include_expired: Annotated[bool, Query(description="Also edges whose TTL has passed (from the history)")] = False,
    ) -> Response:
        async def run() -> Response:
            t0 = time.perf_counter()
            if edge_type not in spec.edges:
                raise RequestError(f"unknown edge type {edge_type!r} (known: {sorted(spec.edges)})")
            d: Literal["out", "in"] = "out" if direction.lower() == "out" else "in"
            o = parse_order(order)
            ctx = list_context(edge_type, id, d)
            if as_of is not None or include_expired:  # a page token binds to its as_of / include_expired
                ctx = f"{ctx}|as_of={as_of}|expired={int(include_expired)}"
            after = tokens.page_cursor(page_token, o, ctx)
            if as_of is not None or include_expired:
                await holder.get()
                rows, nxt, source = await asof.edges(edge_type, id, d, limit, since, o, after, as_of, include_expired)
                return _json({"edges": edges_json(edge_type, id, d, rows), "next_page_token": tokens.page_token(nxt, o, ctx),
                              "truncated": False, "truncated_by": [], "source": source})
            budget = Budget.of(max_edges, deadline_ms)
            metrics.observe("edges", "validate", time.perf_counter() - t0)
            s = await holder.get()
            t1 = time.perf_counter()
            size = min(limit, budget.edges_left)  # the budget cuts the page; the token continues it
            try:
                async with asyncio.timeout(budget.timeout_s()):
                    page = await s.aedge_rows(edge_type, id, d, size, since, o, after)
            except TimeoutError:  # nothing read in time: the same page again, from the same place
                return _json({"edges": [], "next_page_token": tokens.page_token(after or START[o], o, ctx),
                              "truncated": True, "truncated_by": ["deadline"]})
            metrics.observe("edges", "storage", time.perf_counter() - t1)
            cut = size < limit and page.next_cursor is not None
            return _json({"edges": edges_json(edge_type, id, d, page.rows, decode_props),
                          "next_page_token": tokens.page_token(page.next_cursor, o, ctx),
                          "truncated": cut, "truncated_by": ["budget"] if cut else []})
        return await guarded("edges", run)

    @app.post("/v1/traverse", response_model=TraverseBody, responses=responses(400, 401, 403, 422, 503),
              summary="Multi-hop traversal", dependencies=read,
              description="Each level says whether it is complete: truncated_by lists limit (more edges "
                          "than the hop's limit), lookback (older edges skipped), budget / deadline (the "
                          "request ran out of edges to read or time; later levels are empty). A hop chain "
                          "that does not connect (an edge starting from another node type than the "
                          "previous hop reached) is a 400.")
    async def post_traverse(req: TraverseAsOfRequest) -> Response:
        async def run() -> Response:
            t0 = time.perf_counter()
            hops = plan(spec, req, req.as_of)
            metrics.observe("traverse", "validate", time.perf_counter() - t0)
            s = await holder.get()
            stats = TraversalStats()
            if req.as_of is not None:  # the same traversal over the graph as of then
                past = AsOfStore(asof, req.as_of)
                body = await traverse(past, req.start.id, hops, req.include_nodes, stats,  # type: ignore[arg-type]
                                      Budget.of(max_edges, deadline_ms))
                body["source"] = "history" if "history" in past.sources else "live"
                return _json(body)
            body = await traverse(s, req.start.id, hops, req.include_nodes, stats,
                                  Budget.of(max_edges, deadline_ms), node_cache)
            metrics.observe("traverse", "storage", stats.storage_s)
            if req.include_nodes:
                metrics.observe("traverse", "enrich", stats.enrich_s)
            metrics.storage_reads.labels("traverse").inc(stats.reads)
            return _json(body)
        return await guarded("traverse", run)

    @app.get("/healthz", summary="Liveness and storage reachability (open: no token)",
             responses={503: {"description": "Storage unreachable", "content": {"application/json": {}}}})
    async def healthz() -> Response:
        try:
            s = await holder.get()
            await asyncio.to_thread(s.ping)
        except STORAGE_ERRORS as exc:
            return _json({"status": "degraded", "storage": f"unavailable: {type(exc).__name__}"}, 503)
        return _json({"status": "ok", "storage": "ok"})

    @app.get("/metrics", summary="Prometheus metrics (read scope)", response_class=PlainTextResponse,
             dependencies=read, responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                                 "description": "Prometheus text exposition format"},
                                           **responses(*AUTH_ERRORS)})
    async def prom() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    app.include_router(erasure_router(gstore, s))  # admin routes: POST /v1/erasures, GET /v1/erasures/{id}
    app.include_router(explore_router(spec))  # GET /explore: the graph explorer page (its data calls need a token)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_type_enums(
                get_openapi(title=app.title, version=app.version, description=app.description,
                            routes=app.routes), spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
