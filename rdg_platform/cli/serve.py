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
          access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
          role: Annotated[str, typer.Option(help="Cassandra role of the service: reader (least privilege) or "
                                                 "admin (needed by POST /v1/erasures)")] = "reader") -> None:
    """Serve the graph query HTTP API (nodes, edges, counts, traversals, /metrics, OpenAPI at /docs).

    Every /v1 route and /metrics need a bearer token (RDG_API_TOKENS: token hashes and scopes;
    default: the local credentials' reader and admin tokens, see `rdg env --role reader`).
    The tables must exist (``rdg setup``/``rdg demo`` create them); until they do, reads answer 503."""
    import uvicorn

    from rdg_platform.cli.context import role_settings
    from rdg_platform.model import load_spec
    from rdg_platform.serving.app import api_settings, create_app

    if role not in ("reader", "admin"):
        raise typer.BadParameter(f"--role must be reader or admin, not {role!r}")
    s = api_settings(role_settings("reader" if role == "reader" else "admin"))
    app = create_app(load_spec(spec, s.spec_defaults()) if spec else s.load_spec(), settings=s)
    loop = "uvloop"
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    uvicorn.run(app, host=host or s.api.bind_host, port=port or s.api.port, log_level=log_level,
                access_log=access_log, loop=loop, http="auto")
