"""``rdg serve``: run the graph query service with uvicorn (registered by the lead via
``app.command("serve")(serve)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(host: Annotated[str | None, typer.Option(help="Bind address (default RDG_API_BIND_HOST)")] = None,
          port: Annotated[int | None, typer.Option(help="Port (default RDG_API_PORT, 8000)")] = None,
          spec: Annotated[Path | None, typer.Option(help="Graph model spec YAML (default: RDG_SPEC or the packaged one)")] = None,
          log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
          access_log: Annotated[bool, typer.Option(help="Log every request")] = False) -> None:
    """Serve the graph query HTTP API (nodes, edges, traversals, /metrics, OpenAPI at /docs).

    The tables must exist (``rdg setup``/``rdg demo`` create them); until they do, reads answer 503."""
    import uvicorn

    from rdg_platform.model import load_spec
    from rdg_platform.serving.app import create_app
    from rdg_platform.settings import load_settings

    s = load_settings()
    app = create_app(load_spec(spec, s.spec_defaults()) if spec else s.load_spec(), settings=s)
    loop = "uvloop"
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    uvicorn.run(app, host=host or s.api.bind_host, port=port or s.api.port, log_level=log_level,
                access_log=access_log, loop=loop, http="auto")
