"""Settings for the test session: non-default ports and state directory, so a default wired in
anywhere (a port, 127.0.0.1:9092, ~/.rdg) shows up as a failure instead of passing by accident."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from rdg_platform.local_services.base import free_ports
from rdg_platform.local_services.credentials import Role, local_role_settings, switch_role
from rdg_platform.settings import Settings, load_settings

# Fixed (not random) so a developer's next run reuses the session's services; all differ from the
# defaults (9092/9093/9042/7000/7199/8081/8000/3000/9300).
TEST_SESSION_ENV: dict[str, str] = {
    "RDG_KAFKA_PORT": "19092",
    "RDG_KAFKA_CONTROLLER_PORT": "19093",
    "RDG_CASSANDRA_PORT": "19042",
    "RDG_CASSANDRA_STORAGE_PORT": "17000",
    "RDG_CASSANDRA_JMX_PORT": "17199",
    "RDG_REGISTRY_PORT": "18081",
    "RDG_API_PORT": "18000",
    "RDG_DAGSTER_PORT": "13000",
    "RDG_STREAMING_METRICS_BASE_PORT": "19300",
    "RDG_CASSANDRA_KEYSPACE": "rdg_test",
    "RDG_S3_PORT": "18333",
    "RDG_SPARK_MASTER_PORT": "17077",
    "RDG_SPARK_MASTER_WEBUI_PORT": "18480",
    "RDG_SPARK_WORKER_PORT": "17078",
    "RDG_SPARK_WORKER_WEBUI_PORT": "18481",
    "RDG_K8S_APISERVER_PORT": "26443",
    "RDG_K8S_ETCD_PORT": "22379",
    "RDG_K8S_ETCD_PEER_PORT": "22380",
    "RDG_K8S_CONTROLLER_MANAGER_PORT": "20357",
    "RDG_K8S_SCHEDULER_PORT": "20359",
    "RDG_K8S_KWOK_PORT": "20347",
}

# The local services' port settings (what an isolated instance must move).
SERVICE_PORT_SETTINGS: tuple[str, ...] = (
    "RDG_KAFKA_PORT", "RDG_KAFKA_CONTROLLER_PORT", "RDG_CASSANDRA_PORT", "RDG_CASSANDRA_STORAGE_PORT",
    "RDG_CASSANDRA_JMX_PORT", "RDG_REGISTRY_PORT",
)


def session_settings(environ: Mapping[str, str] | None = None, role: Role = "admin") -> Settings:
    """The test session's settings acting as ``role`` (default admin: fixtures provision topics and
    tables; tests of least privilege ask for other roles). The caller's environment wins (CI sets
    RDG_STATE_DIR), then the test ports above, then a test state directory distinct from ``~/.rdg``."""
    env = dict(os.environ if environ is None else environ)
    merged = {**TEST_SESSION_ENV, "RDG_STATE_DIR": str(Path.home() / ".rdg-test"), **env}
    return local_role_settings(load_settings(merged), role)


def as_role(settings: Settings, role: Role) -> Settings:
    """The same services and ports, acting as another role (credentials from the state dir)."""
    return switch_role(settings, role)


def isolated_settings(state_dir: Path, base: Settings | None = None) -> Settings:
    """Settings for a private instance of the services: own state dir, fresh free ports."""
    env = {k: v for k, v in (base or session_settings()).child_env().items()
           if k not in ("RDG_KAFKA_SASL_USERNAME", "RDG_KAFKA_SASL_PASSWORD", "RDG_CASSANDRA_USERNAME",
                        "RDG_CASSANDRA_PASSWORD", "RDG_API_TOKEN")}
    env["RDG_STATE_DIR"] = str(state_dir)
    env.update(zip(SERVICE_PORT_SETTINGS, map(str, free_ports(len(SERVICE_PORT_SETTINGS))), strict=True))
    return local_role_settings(load_settings(env), "admin")
