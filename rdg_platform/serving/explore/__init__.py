"""The graph explorer page at ``/explore``: a static page that draws a node's neighbourhood with Cytoscape.js.

The page itself is open (it holds no data); it asks for a bearer token, keeps it in ``sessionStorage``
and sends it as ``Authorization: Bearer`` on every ``/v1`` call it makes, so the data is protected
exactly like the API. Cytoscape.js is vendored into ``vendor/`` at install time by
``scripts/vendor_js.sh`` (``npm pack`` of a pinned version, with its licence); nothing is downloaded
at run time, and without the vendored file the page says how to get it.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from rdg_platform.model.spec import GraphSpec

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR = HERE / "vendor"
CYTOSCAPE = VENDOR / "cytoscape.min.js"
_FILES = {"app.js": "text/javascript", "explore.css": "text/css"}


def explore_router(spec: GraphSpec) -> APIRouter:
    """``GET /explore`` (the page), ``/explore/static/<file>``, ``/explore/vendor/cytoscape.min.js`` and
    ``/explore/model.json`` (the node and edge types, with each edge's end types: what the page needs
    to colour nodes and to know which edge lists to ask for; the model, not the data)."""
    router = APIRouter(include_in_schema=False)
    model = orjson.dumps({"nodes": sorted(spec.nodes),
                          "edges": {name: {"src": e.src, "dst": e.dst} for name, e in sorted(spec.edges.items())}})

    @router.get("/explore/model.json")
    async def model_json() -> Response:
        return Response(model, media_type="application/json")

    @router.get("/explore")
    async def page() -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @router.get("/explore/")
    async def page_slash() -> Response:
        return RedirectResponse("/explore")

    @router.get("/explore/static/{name}")
    async def static(name: str) -> Response:
        if name not in _FILES:
            return Response(b'{"error": "no such file"}', status_code=404, media_type="application/json")
        return FileResponse(STATIC / name, media_type=_FILES[name])

    @router.get("/explore/vendor/cytoscape.min.js")
    async def cytoscape() -> Response:
        if not CYTOSCAPE.is_file():
            return Response(b"document.body.dataset.vendorMissing = '1';", media_type="text/javascript")
        return FileResponse(CYTOSCAPE, media_type="text/javascript")

    return router
