"""The CLI's settings: built by each command (the CLI is an entry point) and handed down.

A bad setting stops the command before it does anything, with the message naming the variable.
"""

from __future__ import annotations

import typer

from rdg_platform.local_services.credentials import Role, local_role_settings
from rdg_platform.settings import Settings, SettingsError, load_settings


def settings() -> Settings:
    """This process's settings (environment + ``RDG_CONFIG``); exits 2 naming a bad value."""
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def role_settings(role: Role) -> Settings:
    """The settings acting as ``role``: credentials given in the environment or ``RDG_CONFIG`` win;
    otherwise the local services' credentials for that role (from ``$RDG_STATE_DIR``) are used, so
    every command works against the local services with security on and no setup."""
    return local_role_settings(settings(), role)
