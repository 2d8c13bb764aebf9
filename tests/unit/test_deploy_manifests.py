"""deploy/: both environments render and every object validates against the Kubernetes OpenAPI schema
(kubernetes-validate's bundled strict JSON schemas); app Deployments follow the launcher's rules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.37.0"


def _render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rdg_deploy_render", ROOT / "deploy" / "render.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


render = _render_module()


def _validate(doc: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("env", ["local", "prod"])
def test_dagster_manifests_validate(env: str) -> None:
    docs = render.render_dagster(render.load_values(env))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "rdg-dagster-webserver") in kinds and ("Deployment", "rdg-dagster-daemon") in kinds
    assert ("ConfigMap", "rdg-dagster-instance") in kinds
    for d in docs:
        _validate(d)
    instance = next(d for d in docs if d["metadata"]["name"] == "rdg-dagster-instance")
    cfg = yaml.safe_load(instance["data"]["dagster.yaml"])
    assert cfg["run_launcher"]["class"] == "K8sRunLauncher"
    assert cfg["run_launcher"]["module"] == "dagster_k8s"


def test_k8s_run_launcher_config_is_accepted_by_dagster_k8s() -> None:
    """The instance's run_launcher config passes dagster-k8s's own config schema."""
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    docs = render.render_dagster(render.load_values("prod"))
    instance = next(d for d in docs if d["metadata"]["name"] == "rdg-dagster-instance")
    cfg = yaml.safe_load(instance["data"]["dagster.yaml"])["run_launcher"]["config"]
    result = process_config(K8sRunLauncher.config_type(), cfg)
    assert result.success, result.errors


@pytest.mark.parametrize("env", ["local", "prod"])
def test_app_deployments_validate_and_respect_partitions(env: str) -> None:
    from kubernetes import client

    docs = render.render_apps(render.load_values(env))
    assert docs, "no streaming apps rendered"
    api = client.ApiClient()
    for d in docs:
        _validate(d)
        max_replicas = int(d["metadata"]["annotations"]["rdg.io/max-replicas"])
        assert 1 <= d["spec"]["replicas"] <= max_replicas
        res = d["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"]["cpu"] and res["limits"]["memory"]
        # The official client's model accepts it too (what KubernetesLauncher sends).
        model = api._ApiClient__deserialize(d, "V1Deployment")
        assert model.spec.replicas == d["spec"]["replicas"]


def test_invalid_manifest_is_rejected() -> None:
    """The validator really validates: a Deployment with a wrong type is refused."""
    import kubernetes_validate

    docs = render.render_dagster(render.load_values("local"))
    dep = next(d for d in docs if d["kind"] == "Deployment")
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(dep)
