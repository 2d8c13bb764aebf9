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
from rdg_platform.local_services.spark_cluster import SparkCluster

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


spark_app = typer.Typer(
    help="A Spark standalone master and worker from the pyspark wheel, on loopback "
    "(run the rebuild on it with RDG_SPARK_MASTER=spark://127.0.0.1:7077).",
    no_args_is_help=True,
)
services_app.add_typer(spark_app, name="spark")


def _spark_cluster() -> SparkCluster:
    return SparkCluster(settings(), echo=typer.echo)


@spark_app.command("up")
def spark_up(
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the worker to register with the master.")
    ] = 120.0,
) -> None:
    """Start the master and a worker (2 cores, 2g) and wait until the master lists the worker ALIVE."""
    try:
        statuses = _spark_cluster().up(timeout=timeout)
    except ServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(format_table(statuses))


@spark_app.command("down")
def spark_down() -> None:
    """Stop the worker (with its executors) and the master started for this state directory."""
    _spark_cluster().down()


@spark_app.command("status")
def spark_status() -> None:
    """Show the master and worker; exit 1 unless both run and the worker is registered."""
    statuses = _spark_cluster().status()
    typer.echo(format_table(statuses))
    if not all(st.healthy for st in statuses.values()):
        raise typer.Exit(1)
