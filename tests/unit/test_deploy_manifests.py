"""deploy/values/*: every environment renders with the one renderer (rdg_platform.launcher.manifests),
every object validates against the Kubernetes 1.34 OpenAPI schema (kubernetes-validate's strict JSON
schemas: the control plane's version), and the rendered objects keep the platform's rules: settings
only from the ConfigMap or Secret references, probes on the health endpoints, requests and limits,
replicas within partitions, no Secret access, a ClusterIP-only Dagster webserver."""

from __future__ import annotations

import copy
import functools
import importlib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from rdg_platform.launcher.manifests import (
    CREDENTIAL_SETTINGS,
    DeployValues,
    ManifestError,
    dagster_instance,
    load_values,
    render,
)
from rdg_platform.settings import setting_names

ROOT = Path(__file__).resolve().parents[2]
ENVS = ("local", "staging", "prod")
K8S_VERSION = "1.34.0"


@functools.cache
def _rendered(env: str) -> list[dict[str, Any]]:
    return render(load_values(ROOT / "deploy" / "values" / f"{env}.yaml"))


def _objects(env: str) -> list[dict[str, Any]]:
    return copy.deepcopy(_rendered(env))


def _containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(o["metadata"]["name"], c) for o in objs if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"]["containers"]]


@pytest.mark.parametrize("env", ENVS)
def test_every_object_validates(env: str) -> None:
    objs = _objects(env)
    for o in objs:
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for expected in [("Deployment", "rdg-api"), ("Service", "rdg-api"), ("PodDisruptionBudget", "rdg-api"),
                     ("Deployment", "rdg-dagster-webserver"), ("Deployment", "rdg-dagster-daemon"),
                     ("Service", "rdg-dagster-webserver"), ("Role", "rdg-dagster"), ("NetworkPolicy", "rdg-default-deny")]:
        assert expected in kinds


def test_invalid_object_is_rejected_by_the_validator() -> None:
    dep = next(o for o in _objects("local") if o["kind"] == "Deployment")
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


@pytest.mark.parametrize("env", ENVS)
def test_every_setting_comes_from_the_config_map_or_a_secret_reference(env: str) -> None:
    objs = _objects(env)
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "rdg-platform-settings")
    data = cm["data"]
    assert not set(data) & CREDENTIAL_SETTINGS, "a credential in the ConfigMap"
    assert data["RDG_ENV"] == "prod" and data["RDG_STREAMING_METRICS_BIND_HOST"] == "0.0.0.0"
    assert data["RDG_API_BIND_HOST"] == "0.0.0.0"
    # Settings not in the ConfigMap are unset optional values (derived or absent), never defaults of a laptop.
    assert not {k for k, v in data.items() if "/root" in v or "/home/" in v}
    for name, c in _containers(objs):
        assert {"configMapRef": {"name": "rdg-platform-settings"}} in c["envFrom"], name
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
        assert CREDENTIAL_SETTINGS <= set(refs), name
        assert all(r["key"] == n for n, r in refs.items() if n.startswith("RDG_"))
        covered = set(data) | set(refs)
        assert covered <= set(setting_names()) | {"DAGSTER_PG_PASSWORD"}
    # Each component reads its own Secret (apps, API and Dagster act as different roles).
    secrets = {name: {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"]
                      if e["name"] == "RDG_CASSANDRA_PASSWORD"} for name, c in _containers(objs)}
    assert secrets["rdg-api"] == {"rdg-api-credentials"}
    assert secrets["rdg-dagster-daemon"] == {"rdg-dagster-credentials"}
    assert secrets["rdg-sink-nodes"] == {"rdg-app-credentials"}


def test_values_errors_name_the_setting() -> None:
    raw = yaml.safe_load((ROOT / "deploy" / "values" / "local.yaml").read_text())
    for bad, msg in [({"RDG_CASSANDRA_PASSWORD": "x"}, "RDG_CASSANDRA_PASSWORD is a credential"),
                     ({"RDG_KAFKA_BOOTSTRAPS": "x"}, "unknown setting 'RDG_KAFKA_BOOTSTRAPS'"),
                     ({"RDG_API_PORT": "eighty"}, "RDG_API_PORT"),
                     ({"RDG_K8S_NAMESPACE": "other"}, "contradicts")]:
        v = DeployValues.parse({**raw, "platformEnv": {**raw["platformEnv"], **bad}})
        with pytest.raises(ManifestError, match=msg):
            render(v)
    v = DeployValues.parse({**raw, "platformEnv": {k: x for k, x in raw["platformEnv"].items() if k != "RDG_KAFKA_BOOTSTRAP"}})
    with pytest.raises(ManifestError, match="RDG_KAFKA_BOOTSTRAP"):
        render(v)


@pytest.mark.parametrize("env", ENVS)
def test_probes_ports_resources_and_scrape_annotations(env: str) -> None:
    objs = _objects(env)
    for name, c in _containers(objs):
        res = c["resources"]
        assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["cpu"] and res["limits"]["memory"]
        assert "livenessProbe" in c, name
        if name != "rdg-dagster-daemon":
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert "readinessProbe" in c, name
            probe = c["readinessProbe"]["httpGet"]
            assert probe["port"] in ports
    for o in objs:
        if o["kind"] != "Deployment" or "rdg.io/app" not in o["metadata"]["labels"]:
            continue
        c = o["spec"]["template"]["spec"]["containers"][0]
        port = c["ports"][0]["containerPort"]
        assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        ann = o["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(port)
        assert c["command"] == ["python", "-m", "rdg_platform.streaming", "run", o["metadata"]["labels"]["rdg.io/app"]]
    api = next(c for n, c in _containers(objs) if n == "rdg-api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("env", ENVS)
def test_app_replicas_within_partitions(env: str) -> None:
    for o in _objects(env):
        if o["kind"] == "Deployment" and "rdg.io/app" in o["metadata"]["labels"]:
            assert 1 <= o["spec"]["replicas"] <= int(o["metadata"]["annotations"]["rdg.io/max-replicas"])


def test_prod_per_app_resources_and_partition_cap() -> None:
    deps = {o["metadata"]["name"]: o for o in _objects("prod") if o["kind"] == "Deployment"}
    playback = deps["rdg-member-playback-processor"]
    assert playback["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2"
    gaming = deps["rdg-member-gaming-processor"]  # 64 asked, member.gaming has 2 partitions
    assert gaming["spec"]["replicas"] == 2


@pytest.mark.parametrize("env", ENVS)
def test_access_no_secrets_and_internal_webserver(env: str) -> None:
    objs = _objects(env)
    role = next(o for o in objs if o["kind"] == "Role")
    for rule in role["rules"]:
        assert "secrets" not in rule["resources"]
        if "configmaps" in rule["resources"]:
            assert rule["resourceNames"], "config maps only by name"
    svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "rdg-dagster-webserver")
    assert svc["spec"]["type"] == "ClusterIP"
    assert not any(o["kind"] == "Ingress" for o in objs)
    sas = {o["metadata"]["name"]: o["automountServiceAccountToken"] for o in objs if o["kind"] == "ServiceAccount"}
    assert sas == {"rdg-dagster": True, "rdg-streaming": False, "rdg-api": False}
    policies = {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "NetworkPolicy"}
    assert policies["rdg-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    web = policies["rdg-dagster-webserver"]["ingress"]
    assert web == [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 3000}]}]


def test_dagster_instance_classes_import_and_accept_their_config() -> None:
    """The module/class pairs of the rendered instance exist in the installed Dagster (1.13) and accept
    their config; tests/integration/test_k8s_deploy.py loads the whole instance against Postgres."""
    from dagster._config import process_config

    inst = dagster_instance(load_values(ROOT / "deploy" / "values" / "prod.yaml"))
    for key in ("run_launcher", "run_coordinator"):
        cls = getattr(importlib.import_module(inst[key]["module"]), inst[key]["class"])
        result = process_config(cls.config_type(), inst[key]["config"])
        assert result.success, (key, result.errors)
    assert inst["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
