"""THE Dagster entry point (``workspace.yaml`` loads ``rdg_platform.definitions:defs``).

As an entry point it builds the settings once (:func:`rdg_platform.settings.load_settings`; ``RDG_ENV``
chooses ``local`` or ``prod``), builds the shared resources from them once, and merges the
``Definitions`` each domain owns (``rdg_platform.assets.<domain>.defs(settings, resources)``, its
assets, checks, jobs, schedules, sensors and the resources they use) with ``Definitions.merge``.
Importing a domain module has no side effects and reads no environment.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence

from dagster import Definitions

from rdg_platform.local_services.credentials import local_role_settings
from rdg_platform.resources import PlatformResources, platform_resources
from rdg_platform.settings import Settings, load_settings

# Order = how the UI lists them; each is rdg_platform.assets.<domain>.
DOMAINS: tuple[str, ...] = ("archive", "backfill", "rebuild", "maintenance", "streaming_control", "quality", "dbt", "erasure", "dlq", "history")


def domain_definitions(name: str, settings: Settings, resources: PlatformResources) -> Definitions:
    """One domain's Definitions: its ``defs(settings[, resources])``."""
    mod = importlib.import_module(f"rdg_platform.assets.{name}")
    build = getattr(mod, "defs", None)
    if callable(build):
        takes_resources = len(inspect.signature(build).parameters) > 1
        built = build(settings, resources) if takes_resources else build(settings)
        if not isinstance(built, Definitions):
            raise TypeError(f"rdg_platform.assets.{name}.defs returned {type(built).__name__}, not Definitions")
        return built
    raise TypeError(f"rdg_platform.assets.{name} has no defs(settings) function")


def build_definitions(settings: Settings, domains: Sequence[str] = DOMAINS) -> Definitions:
    """Every domain's Definitions, merged; the shared resources are built once so that each key is one
    object (``Definitions.merge`` rejects two different objects under one key)."""
    shared = platform_resources(settings)
    return Definitions.merge(*(domain_definitions(d, settings, shared) for d in domains))


def entry_settings() -> Settings:
    """This entry point's settings: locally, acting as the ``admin`` role with the local services'
    credentials (unless the environment gives others); in production, exactly what is configured."""
    s = load_settings()
    return s if s.env == "prod" else local_role_settings(s, "admin")


defs = build_definitions(entry_settings())
