"""``rdg serve``: run the graph query service with uvicorn (registered by the lead via
``app.command("serve")(serve)``).

Workers (``--workers`` / ``RDG_API_WORKERS``): a pre-fork. The parent builds the app (settings, spec,
an unconnected store: the driver connects lazily, so no threads exist yet), binds the listening
socket, and forks the workers; each runs its own uvicorn server and event loop on the shared socket
(the kernel hands each new connection to one of them), connects to Cassandra on its first request,
freezes its own startup heap (the app's lifespan) and keeps its own node cache. The parent only
forwards SIGINT/SIGTERM and replaces a worker that dies. One worker is one event loop on one core;
more help only while the service, not Cassandra, is the bottleneck (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import uvicorn


def serve(host: Annotated[str | None, typer.Option(help="Bind address (default RDG_API_BIND_HOST)")] = None,
          port: Annotated[int | None, typer.Option(help="Port (default RDG_API_PORT, 8000)")] = None,
          spec: Annotated[Path | None, typer.Option(help="Graph model spec YAML (default: RDG_SPEC or the packaged one)")] = None,
          workers: Annotated[int | None, typer.Option(help="Worker processes, one event loop each "
                                                           "(default RDG_API_WORKERS, 1)", min=1, max=64)] = None,
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
    n = workers or s.api.workers
    bind_host, bind_port = host or s.api.bind_host, port or s.api.port
    if n <= 1:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level=log_level, access_log=access_log,
                    loop=loop, http="auto")
        return
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, loop=loop, http="auto")
    prefork(config, bind_host, bind_port, n)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _run_worker(config: uvicorn.Config, sock: socket.socket) -> None:
    import uvicorn

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except BaseException:  # noqa: BLE001 - a worker reports and exits, the parent decides
        code = 1
    finally:
        os._exit(code)


def prefork(config: uvicorn.Config, host: str, port: int, workers: int) -> None:
    """Bind ``host:port`` once and serve ``config``'s app from ``workers`` forked processes until
    SIGINT/SIGTERM (forwarded to every worker); a worker that dies is replaced."""
    sock = _bind(host, port)
    children: dict[int, int] = {}  # pid -> slot
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            _run_worker(config, sock)
        children[pid] = slot

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"rdg serve: {workers} workers on http://{host}:{port}", file=sys.stderr, flush=True)
    for i in range(workers):
        spawn(i)
    last_restart = 0.0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries os.wait
            continue
        if pid not in children or stopping:
            children.pop(pid, None)
            continue
        slot = children.pop(pid)
        print(f"rdg serve: worker {pid} exited ({status}); starting another", file=sys.stderr, flush=True)
        if time.monotonic() - last_restart < 1.0:  # do not spin when workers die at once
            time.sleep(1.0)
        last_restart = time.monotonic()
        spawn(slot)
    sock.close()
