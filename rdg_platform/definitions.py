"""THE Dagster entry point (``workspace.yaml`` loads ``rdg_platform.definitions:defs``).

Wires every domain's module-level lists (``assets``, ``asset_checks``, ``jobs``, ``schedules``,
``sensors``) and the resources. The environment is chosen here, once, from ``RDG_ENV``
(``local`` by default, or ``prod``); no other module reads it, so importing a domain never depends on
where it will run. Production resources take their endpoints and every secret from ``EnvVar``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any, Literal

from dagster import Definitions, EnvVar

Env = Literal["local", "prod"]

# Order = how the UI lists them; each is rdg_platform.assets.<domain>.
DOMAINS: tuple[str, ...] = ("archive", "backfill", "rebuild", "maintenance", "streaming_control", "quality", "dbt")
_LISTS = ("assets", "asset_checks", "jobs", "schedules", "sensors")


def current_env() -> Env:
    env = os.environ.get("RDG_ENV", "local").strip().lower() or "local"
    if env not in ("local", "prod"):
        raise ValueError(f"RDG_ENV must be 'local' or 'prod', not {env!r}")
    return env  # type: ignore[return-value]


def domain_lists(domains: Sequence[str] = DOMAINS) -> dict[str, list[Any]]:
    """Concatenate the domains' lists (a domain missing one of them contributes nothing to it)."""
    out: dict[str, list[Any]] = {k: [] for k in _LISTS}
    for d in domains:
        mod = importlib.import_module(f"rdg_platform.assets.{d}")
        for k in _LISTS:
            out[k].extend(getattr(mod, k, []) or [])
    return out


def build_resources(env: Env) -> dict[str, Any]:
    """Every resource key the domains use, configured for ``env``."""
    from rdg_platform.assets.dbt import dbt_resource
    from rdg_platform.assets.quality.checks import QualityResource
    from rdg_platform.assets.streaming_control.resource import StreamingLauncherResource
    from rdg_platform.resources import local_resources, prod_resources

    if env == "local":
        res = local_resources()
        res["streaming_launcher"] = StreamingLauncherResource(kind="local")
        res["quality"] = QualityResource()
    else:
        res = prod_resources()
        res["streaming_launcher"] = StreamingLauncherResource(
            kind="kubernetes", namespace=EnvVar("RDG_K8S_NAMESPACE"), image=EnvVar("RDG_IMAGE"),
            bootstrap_servers=EnvVar("RDG_KAFKA_BOOTSTRAP"), env_secret="rdg-platform-secrets",
            service_account="rdg-streaming", lag_alert_threshold=500_000, lag_timeout_s=5.0)
        # Production is bigger and busier: longer windows, larger samples, a tighter freshness bound.
        res["quality"] = QualityResource(lookback_hours=6, max_rows=1_000_000, sample_size=10_000,
                                         duplicate_event_id_rate=0.001, freshness_max_lag_s=900)
    res["dbt"] = dbt_resource()
    return res


def build_definitions(env: Env | None = None, domains: Sequence[str] = DOMAINS) -> Definitions:
    e = env or current_env()
    lists = domain_lists(domains)
    return Definitions(assets=lists["assets"], asset_checks=lists["asset_checks"], jobs=lists["jobs"],
                       schedules=lists["schedules"], sensors=lists["sensors"], resources=build_resources(e))


defs = build_definitions()
