"""Runtime settings for the local platform, read from the environment once.

Everything that differs between a laptop, CI and production (ports, hosts, the state directory)
comes from ``RDG_*`` environment variables so the same code runs everywhere; nothing is read at
import time, callers ask for :func:`settings` when they need it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from exc


def _env_str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else raw


@dataclass(frozen=True)
class Settings:
    """Where the platform's services listen and where local state lives.

    Documented in the README ("Ports and state"). Every field has an ``RDG_*`` variable.
    """

    state_dir: Path = field(default_factory=lambda: Path(_env_str("RDG_STATE_DIR", str(Path.home() / ".rdg"))))
    host: str = field(default_factory=lambda: _env_str("RDG_HOST", "127.0.0.1"))
    kafka_port: int = field(default_factory=lambda: _env_int("RDG_KAFKA_PORT", 9092))
    kafka_controller_port: int = field(default_factory=lambda: _env_int("RDG_KAFKA_CONTROLLER_PORT", 9093))
    cassandra_port: int = field(default_factory=lambda: _env_int("RDG_CASSANDRA_PORT", 9042))
    cassandra_storage_port: int = field(default_factory=lambda: _env_int("RDG_CASSANDRA_STORAGE_PORT", 7000))
    cassandra_jmx_port: int = field(default_factory=lambda: _env_int("RDG_CASSANDRA_JMX_PORT", 7199))
    registry_port: int = field(default_factory=lambda: _env_int("RDG_REGISTRY_PORT", 8081))
    api_port: int = field(default_factory=lambda: _env_int("RDG_API_PORT", 8000))
    dagster_port: int = field(default_factory=lambda: _env_int("RDG_DAGSTER_PORT", 3000))
    # Apps' Prometheus endpoints are numbered from this port upwards, one per app.
    metrics_base_port: int = field(default_factory=lambda: _env_int("RDG_METRICS_BASE_PORT", 9300))
    keyspace: str = field(default_factory=lambda: _env_str("RDG_KEYSPACE", "rdg"))

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def registry_url(self) -> str:
        """Base URL of the Confluent-compatible API (Apicurio's ccompat v7 endpoint)."""
        return f"http://{self.host}:{self.registry_port}/apis/ccompat/v7"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def cache_dir(self) -> Path:
        """Downloaded jars and assemblies, kept across runs (default ``~/.cache/rdg-platform``)."""
        return Path(_env_str("RDG_CACHE_DIR", str(Path.home() / ".cache" / "rdg-platform")))


def settings() -> Settings:
    """Read the settings from the current environment."""
    return Settings()
