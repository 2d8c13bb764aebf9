"""``rdg services up|down|status``: the local Kafka, Cassandra and schema registry.

Exit codes: 0 on success; 1 when a service fails to start or (for ``status``) when any selected
service is not running and healthy, so scripts and CI can gate on ``rdg services status``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rdg_platform.cli.context import settings
from rdg_platform.local_services.manager import (
    DEFAULT_TIMEOUT_S,
    SERVICE_NAMES,
    ServiceError,
    ServiceManager,
    format_table,
)

services_app = typer.Typer(
    help="Run the local real services (Kafka KRaft, Cassandra 5.0, Apicurio schema registry) as JVM processes.",
    no_args_is_help=True,
)

OnlyOption = Annotated[
    str | None,
    typer.Option("--only", help=f"Comma-separated subset of: {', '.join(SERVICE_NAMES)}."),
]


def _selection(only: str | None) -> list[str] | None:
    return None if not only else [part.strip() for part in only.split(",") if part.strip()]


def _manager() -> ServiceManager:
    return ServiceManager(settings(), echo=typer.echo)


@services_app.command()
def up(
    only: OnlyOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for every service to answer real requests.")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Start the services (fetching jars with mvn on first use) and wait until they are healthy.

    Already-healthy services are left alone, so running it twice is harmless. Processes keep running
    after this command exits; stop them with `rdg services down`.
    """
    try:
        statuses = _manager().up(_selection(only), timeout=timeout)
    except (ServiceError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(format_table(statuses))


@services_app.command()
def down(
    only: OnlyOption = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the services' data directories.")
    ] = False,
) -> None:
    """Stop the services this state directory started (SIGTERM, then SIGKILL after a grace period).

    Only processes recorded in our pid files and verified to still be ours are signalled.
    """
    try:
        _manager().down(_selection(only), purge=purge)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@services_app.command()
def status(only: OnlyOption = None) -> None:
    """Show pid, port, version and health of each service; exit 1 if any is not healthy."""
    try:
        statuses = _manager().status(_selection(only))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(format_table(statuses))
    if not all(st.healthy for st in statuses.values()):
        raise typer.Exit(1)
