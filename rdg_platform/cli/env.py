"""``rdg env --role <role>``: one role's settings as ``export`` lines, for ``eval`` in a shell.

This is the only command that prints credentials (``rdg config show`` masks them). The credentials
are those of the local services in ``$RDG_STATE_DIR`` (generated on first use); values already set in
the environment or ``RDG_CONFIG`` are printed as they are.
"""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from rdg_platform.cli.context import settings
from rdg_platform.local_services.credentials import ROLES, Role, local_role_settings

# What a client acting as a role needs: where the services are, and who it is.
CLIENT_SETTINGS: tuple[str, ...] = (
    "RDG_STATE_DIR", "RDG_KAFKA_BOOTSTRAP", "RDG_KAFKA_SECURITY_PROTOCOL", "RDG_KAFKA_SASL_MECHANISM",
    "RDG_KAFKA_SASL_USERNAME", "RDG_KAFKA_SASL_PASSWORD", "RDG_KAFKA_SSL_CA", "RDG_REGISTRY_URL",
    "RDG_REGISTRY_USERNAME", "RDG_REGISTRY_PASSWORD", "RDG_CASSANDRA_CONTACT_POINTS", "RDG_CASSANDRA_PORT",
    "RDG_CASSANDRA_LOCAL_DC", "RDG_CASSANDRA_USERNAME", "RDG_CASSANDRA_PASSWORD", "RDG_CASSANDRA_SSL_CA",
    "RDG_CASSANDRA_KEYSPACE", "RDG_API_URL", "RDG_API_TOKEN", "RDG_ERASURE_FENCE_KEY",
)
DERIVED = {"RDG_KAFKA_BOOTSTRAP": lambda s: s.kafka.bootstrap_servers,
           "RDG_REGISTRY_URL": lambda s: s.registry.base_url,
           "RDG_CASSANDRA_CONTACT_POINTS": lambda s: ",".join(s.cassandra.hosts),
           "RDG_API_URL": lambda s: s.api.base_url}


def env(
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
) -> None:
    """Print `export RDG_...=...` lines that make a shell act as ROLE against the local services.

    Example: eval "$(rdg env --role reader)" && rdg query node account a-1
    """
    if role not in ROLES:
        typer.echo(f"error: --role must be one of {', '.join(ROLES)}, not {role!r}", err=True)
        raise typer.Exit(2)
    r: Role = role  # type: ignore[assignment]
    s = local_role_settings(settings(), r)
    values = dict((name, value) for name, value, _f in s.items(reveal=True))
    for name in CLIENT_SETTINGS:
        value = values.get(name) or (DERIVED[name](s) if name in DERIVED else None)
        if value:
            typer.echo(f"export {name}={shlex.quote(value)}")
