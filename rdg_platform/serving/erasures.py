"""The erasure routes of the graph query service (admin scope):

- ``POST /v1/erasures`` ``{"type": "account", "id": ...}`` -> 202 ``{"erasure_id", "status", ...}``: the
  erasure is recorded, then runs in the background in this process (a worker thread); requesting an
  account whose erasure is unfinished returns that erasure instead of starting another.
- ``GET /v1/erasures/{erasure_id}`` -> ``{"status": "pending|running|done|failed", "counts": {...}, ...}``.

Both need a token with the ``admin`` scope (403 JSON otherwise). The service's Cassandra role must be
allowed to modify the graph keyspace, and the erasure tables must exist (``rdg erase setup`` as the
admin role): the service runs no DDL, so without them the routes answer 503 naming the fix. The
archive grace period is not waited for here: an erasure stays ``running`` at step ``expire`` until
``rdg erase resume`` or the Dagster erasure schedule runs after it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, Path
from fastapi.responses import Response
from pydantic import BaseModel, Field

from rdg_platform.erasure import ErasureEngine, ErasureTablesMissing
from rdg_platform.erasure.engine import check_subject
from rdg_platform.kv.fence import FenceKeyMissing
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.serving.auth import require_scope
from rdg_platform.serving.traversal import ID_PATTERN
from rdg_platform.settings import Settings

log = logging.getLogger(__name__)
ErasureIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="An erasure id (32 hex characters)")]


class ErasureRequest(BaseModel):
    """What to erase: an account, by id."""

    type: Literal["account"] = Field(description="the subject's node type (account)")
    id: str = Field(pattern=ID_PATTERN, description="the account id")


class ErasureAccepted(BaseModel):
    erasure_id: str
    status: str
    erasure_time_ms: int


class ErasureStatusBody(BaseModel):
    erasure_id: str
    type: str
    status: str
    step: str
    erasure_time_ms: int
    requested_at_ms: int
    updated_at_ms: int
    finished_at_ms: int | None
    archive_expire_after_ms: int | None
    counts: dict[str, int]
    error: str | None


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class _Erasures:
    """The engine (connected on first use, off the event loop) and the erasures running here."""

    def __init__(self, store: GraphStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._engine: ErasureEngine | None = None
        self._lock = threading.Lock()
        self._running: set[str] = set()

    def engine(self) -> ErasureEngine:
        with self._lock:
            if self._engine is None:
                engine = ErasureEngine.from_settings(self.store, self.settings)
                if not engine.audit.tables_exist():
                    raise ErasureTablesMissing(
                        f"the erasure tables are missing in keyspace {engine.audit.keyspace!r}: run "
                        "`rdg erase setup` as the admin role")
                self._engine = engine
            return self._engine

    def start(self, erasure_id: str) -> bool:
        with self._lock:
            if erasure_id in self._running:
                return False
            self._running.add(erasure_id)
            return True

    def run(self, erasure_id: str) -> None:
        """The background task: run until done (or waiting for the archive grace); a failure is in the
        audit row (status failed, error), where GET reports it."""
        try:
            self.engine().run(erasure_id)
        except Exception:
            log.exception("erasure %s failed", erasure_id)
        finally:
            with self._lock:
                self._running.discard(erasure_id)


def erasure_router(store: GraphStore, settings: Settings) -> APIRouter:
    """The erasure routes on ``store`` (its Cassandra session and role) and ``settings`` (the archive
    catalog and grace period). Include with ``app.include_router(erasure_router(store, settings))``."""
    state = _Erasures(store, settings)
    router = APIRouter(dependencies=[Depends(require_scope("admin"))], tags=["erasure"])
    errors: dict[int | str, dict[str, Any]] = {
        403: {"description": "The token lacks the admin scope"},
        503: {"description": "Storage unavailable, the erasure tables are missing, or the service has no "
                             "erasure fence key"}}

    async def call(fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    @router.post("/v1/erasures", status_code=202, response_model=ErasureAccepted,
                 responses={**errors, 422: {"description": "The subject cannot be erased (type or id)"}},
                 summary="Erase a member (account, profiles, exclusive devices, their edges, archive rows)")
    async def post_erasure(req: ErasureRequest, background: BackgroundTasks) -> Response:
        try:
            check_subject(req.type, req.id)  # the engine's own rule (stricter than the schema's pattern)
        except ValueError as exc:
            return _json({"error": str(exc)}, 422)
        try:
            engine = await call(state.engine)
            st = await call(engine.request, req.type, req.id)
        except (ErasureTablesMissing, FenceKeyMissing) as exc:
            return _json({"error": str(exc)}, 503)
        if st.status != "done" and state.start(st.erasure_id):
            background.add_task(state.run, st.erasure_id)
        return _json({"erasure_id": st.erasure_id, "status": st.status, "erasure_time_ms": st.erasure_time_ms}, 202)

    @router.get("/v1/erasures/{erasure_id}", response_model=ErasureStatusBody,
                responses={**errors, 404: {"description": "No erasure with this id"}},
                summary="An erasure's status and counts")
    async def get_erasure(erasure_id: ErasureIdPath) -> Response:
        try:
            engine = await call(state.engine)
            st = await call(engine.status, erasure_id)
        except (ErasureTablesMissing, FenceKeyMissing) as exc:
            return _json({"error": str(exc)}, 503)
        if st is None:
            return _json({"error": f"no erasure {erasure_id}"}, 404)
        return _json(st.to_json())

    return router
