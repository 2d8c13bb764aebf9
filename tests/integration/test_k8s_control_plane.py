"""The local Kubernetes control plane is a real cluster: authenticated, scheduling, and running
Deployments to Ready through the kwok node.

The control plane comes from the session fixture ``k8s_control_plane`` (tests/integration/conftest.py),
which starts it once per session (building the binaries first, once per machine, before any test
runs); if it cannot start, these tests fail, never skip.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Callable, Iterator

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from rdg_platform.cli.k8s import k8s_app
from rdg_platform.local_services.k8s import COMPONENTS, NODE_NAME, K8sControlPlane
from rdg_platform.settings import Settings
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    poll_until(check, what=what, timeout_s=timeout, interval_s=0.5)


@pytest.fixture(scope="module")
def api(k8s_control_plane: K8sControlPlane) -> Iterator[k8s.ApiClient]:
    """A `kubernetes` client configured only from the kubeconfig the control plane wrote."""
    api_client = k8s_config.new_client_from_config(config_file=str(k8s_control_plane.kubeconfig_path))
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(api: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller removes its objects)."""
    name = f"rdg-k8s-test-{secrets.token_hex(4)}"
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def test_api_server_requires_the_admin_token(k8s_control_plane: K8sControlPlane) -> None:
    plane = k8s_control_plane
    with plane.api_client() as authed:
        ready = authed.get("/readyz")
    assert ready.status_code == 200, ready.text
    verify = ssl.create_default_context(cafile=str(plane.ca_path))
    with httpx.Client(base_url=plane.server_url, verify=verify, timeout=5.0) as anonymous:
        assert anonymous.get("/readyz").status_code == 401
        bad = anonymous.get("/readyz", headers={"Authorization": "Bearer not-the-token"})
        assert bad.status_code == 401
    assert plane.kubeconfig_path.stat().st_mode & 0o777 == 0o600
    assert plane.token_file.stat().st_mode & 0o777 == 0o600


def test_kwok_node_is_ready(api: k8s.ApiClient) -> None:
    node = k8s.CoreV1Api(api).read_node(NODE_NAME)
    assert node.metadata.annotations.get("kwok.x-k8s.io/node") == "fake"
    ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
    assert ready and ready[0].status == "True", node.status.conditions


def _ready_pods(core: k8s.CoreV1Api, namespace: str, app: str) -> list[str]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [
        p.metadata.name
        for p in pods
        if p.metadata.deletion_timestamp is None
        and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def _all_pods(core: k8s.CoreV1Api, namespace: str, app: str) -> list[str]:
    return [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=f"app={app}").items]


def test_deployment_runs_to_ready_and_scales(api: k8s.ApiClient, namespace: str) -> None:
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    labels = {"app": "echo"}
    deployment = k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="echo", labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=3,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(
                    containers=[k8s.V1Container(name="echo", image="registry.k8s.io/pause:3.10")]
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(namespace, deployment)

    def ready(count: int) -> Callable[[], bool]:
        def check() -> bool:
            status = apps.read_namespaced_deployment_status("echo", namespace).status
            return (status.ready_replicas or 0) == count and len(_ready_pods(core, namespace, "echo")) == count

        return check

    _wait_for("3/3 Ready pods", ready(3))
    assert apps.read_namespaced_deployment("echo", namespace).status.ready_replicas == 3

    apps.patch_namespaced_deployment_scale("echo", namespace, {"spec": {"replicas": 1}})
    _wait_for("1/1 Ready pod after scaling down", ready(1))
    _wait_for("the scaled-down pods to be gone", lambda: len(_all_pods(core, namespace, "echo")) == 1)
    assert apps.read_namespaced_deployment_scale("echo", namespace).spec.replicas == 1


def test_status_reports_every_component_healthy(k8s_control_plane: K8sControlPlane, cfg: Settings) -> None:
    statuses = k8s_control_plane.status()
    assert list(statuses) == list(COMPONENTS)
    for name, st in statuses.items():
        assert st.healthy and st.state == "running" and st.pid, (name, st)
    # The CLI finds the same control plane through its settings (state dir, cache dir, RDG_K8S_* ports).
    result = CliRunner().invoke(k8s_app, ["status"], env=cfg.child_env())
    assert result.exit_code == 0, result.output
    for name in COMPONENTS:
        assert name in result.output
