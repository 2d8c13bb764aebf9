"""``rdg serve``: run the graph query service with uvicorn (registered by the lead via
``app.command("serve")(serve)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rdg_platform.config import settings


def serve(host: Annotated[str | None, typer.Option(help="Bind address (default RDG_HOST)")] = None,
          port: Annotated[int | None, typer.Option(help="Port (default RDG_API_PORT, 8000)")] = None,
          spec: Annotated[Path | None, typer.Option(help="Graph model spec YAML (default: packaged)")] = None,
          log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
          access_log: Annotated[bool, typer.Option(help="Log every request")] = False) -> None:
    """Serve the graph query HTTP API (nodes, edges, traversals, /metrics, OpenAPI at /docs)."""
    import uvicorn

    from rdg_platform.model import load_spec
    from rdg_platform.serving.app import create_app

    cfg = settings()
    app = create_app(load_spec(spec, cfg))
    loop = "uvloop"
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    uvicorn.run(app, host=host or cfg.host, port=port or cfg.api_port, log_level=log_level,
                access_log=access_log, loop=loop, http="auto")
