"""Kubernetes: apply rendered objects (server-side apply), and run the streaming apps as Deployments.

:func:`apply` is the one way objects reach a cluster: ``rdg k8s deploy`` applies everything
:func:`~rdg_platform.launcher.manifests.render` returns through it, and :class:`KubernetesLauncher`
(the Dagster control plane's launcher) applies app Deployments through it, rendered by the same
:func:`~rdg_platform.launcher.manifests.app_deployment` from the values ``rdg k8s deploy`` stored in
the cluster (ConfigMap ``rdg-deploy-values``). Server-side apply with field manager ``rdg-platform``
makes a re-apply converge to the rendered objects without read-modify-write races.

Replicas are never scaled back by a re-apply (:func:`preserve_replicas`): an existing app Deployment
keeps its current replica count (Dagster owns it once the app runs; at most the app's partitions),
any other existing Deployment keeps the larger of its current and its rendered count.

Which apps were stopped on purpose is recorded in ConfigMap ``rdg-streaming-state``: an app without
a Deployment that was not stopped is dead, and the health sensor redeploys it.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rdg_platform.launcher.base import AppStatus, LauncherError, cap_replicas, select_apps
from rdg_platform.launcher.manifests import (
    APP_LABEL,
    FIELD_MANAGER,
    STATE_CONFIG_MAP,
    VALUES_CONFIG_MAP,
    DeployValues,
    ManifestError,
    app_deployment,
    deployment_name,
)
from rdg_platform.streaming.apps import AppSpec

STOPPED = "stopped"
VALUES_TTL_S = 5.0
# kind -> (plural, namespaced) for every kind the renderer emits.
_KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False), "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True), "Service": ("services", True), "Deployment": ("deployments", True),
    "Role": ("roles", True), "RoleBinding": ("rolebindings", True), "NetworkPolicy": ("networkpolicies", True),
    "PodDisruptionBudget": ("poddisruptionbudgets", True),
}


def api_client(kubeconfig: Path | str | None = None, context: str | None = None) -> Any:
    """A ``kubernetes`` ApiClient: ``kubeconfig`` when given, else in-cluster, else ~/.kube/config."""
    from kubernetes import client, config

    if kubeconfig is not None:
        if not Path(kubeconfig).is_file():
            raise LauncherError(f"kubeconfig {kubeconfig} does not exist (is the control plane up? `rdg k8s up`)")
        return config.new_client_from_config(config_file=str(kubeconfig), context=context)
    try:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(cfg)
    except config.ConfigException:
        try:
            return config.new_client_from_config(context=context)
        except config.ConfigException as exc:
            raise LauncherError(f"no Kubernetes credentials: not in a cluster and no kubeconfig ({exc})") from exc


def _object_path(obj: dict[str, Any]) -> str:
    kind, version = obj["kind"], obj["apiVersion"]
    if kind not in _KINDS:
        raise LauncherError(f"cannot apply kind {kind} (known: {sorted(_KINDS)})")
    plural, namespaced = _KINDS[kind]
    base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{base}{ns}/{plural}/{meta['name']}"


def _request(client: Any, method: str, path: str, body: Any = None, query: Sequence[tuple[str, str]] = (),
             content_type: str = "application/json") -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return client.call_api(path, method, query_params=list(query), body=body,
                               header_params={"Content-Type": content_type, "Accept": "application/json"},
                               auth_settings=["BearerToken"], response_types_map={200: "object", 201: "object"},
                               _return_http_data_only=True, _request_timeout=30)
    except ApiException as exc:
        if exc.status == 404 and method in ("GET", "DELETE"):
            return None
        raise LauncherError(f"kubernetes {method} {path} failed: {exc.status} {exc.reason}: {_brief(exc.body)}") from exc


def _brief(body: Any) -> str:
    text = body.decode() if isinstance(body, bytes) else str(body)
    return text[:600]


def get(client: Any, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The object as the server has it, or None."""
    found = _request(client, "GET", _object_path(obj))
    return found if isinstance(found, dict) else None


def preserve_replicas(obj: dict[str, Any], current: int | None) -> dict[str, Any]:
    """``obj`` with the replicas a re-apply must keep (see the module docstring); a copy when changed."""
    if obj["kind"] != "Deployment" or current is None:
        return obj
    spec = obj["spec"]
    labels = obj["metadata"].get("labels") or {}
    if APP_LABEL in labels:
        cap = int(obj["metadata"].get("annotations", {}).get("rdg.io/max-replicas", current))
        keep = min(current, cap)
    else:
        keep = max(int(spec.get("replicas", 1)), current)
    if keep == spec.get("replicas"):
        return obj
    return {**obj, "spec": {**spec, "replicas": keep}}


def apply(client: Any, objects: Sequence[dict[str, Any]], dry_run: bool = False,
          echo: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Server-side apply ``objects`` in order (field manager ``rdg-platform``, conflicts forced);
    Deployments keep their replicas (:func:`preserve_replicas`). Returns the server's objects."""
    out = []
    query = [("fieldManager", FIELD_MANAGER), ("force", "true")] + ([("dryRun", "All")] if dry_run else [])
    for obj in objects:
        if obj["kind"] == "Deployment":
            live = get(client, obj)
            obj = preserve_replicas(obj, None if live is None else int(live["spec"].get("replicas", 1)))
        res = _request(client, "PATCH", _object_path(obj), obj, query, "application/apply-patch+yaml")
        if echo is not None:
            meta = obj["metadata"]
            where = f" -n {meta['namespace']}" if "namespace" in meta else ""
            echo(f"applied {obj['kind']}/{meta['name']}{where}" + (" (dry run)" if dry_run else ""))
        out.append(res)
    return out


def deployment_available(d: dict[str, Any]) -> bool:
    """Available in the controller's sense, with every desired replica updated and ready."""
    status = d.get("status") or {}
    want = int(d["spec"].get("replicas", 1))
    conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return (conds.get("Available") == "True" and int(status.get("readyReplicas") or 0) >= want
            and int(status.get("updatedReplicas") or 0) >= want
            and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0))


def wait_available(client: Any, namespace: str, names: Sequence[str], timeout_s: float = 120.0) -> dict[str, str]:
    """Wait until every named Deployment is available; LauncherError naming those that are not."""
    deadline = time.monotonic() + timeout_s
    while True:
        state: dict[str, str] = {}
        for name in names:
            d = _request(client, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            if d is None:
                state[name] = "missing"
            else:
                st = d.get("status") or {}
                ok = deployment_available(d)
                state[name] = ("available" if ok else "waiting") + f" {st.get('readyReplicas') or 0}/{d['spec'].get('replicas')}"
        if all(s.startswith("available") for s in state.values()):
            return state
        if time.monotonic() > deadline:
            bad = {k: v for k, v in state.items() if not v.startswith("available")}
            raise LauncherError(f"Deployments not available after {timeout_s:.0f}s: {bad}")
        time.sleep(0.5)


class KubernetesLauncher:
    """The streaming apps as Deployments in ``namespace`` of a cluster where ``rdg k8s deploy`` ran.

    ``values``: the deploy values (default: read from the cluster's ConfigMap ``rdg-deploy-values``,
    i.e. exactly what was deployed). The API client is created on first use, so building a launcher
    (at Dagster definition load) never touches a cluster."""

    kind = "kubernetes"

    def __init__(self, namespace: str, kubeconfig: Path | str | None = None, context: str | None = None,
                 values: DeployValues | None = None, client: Any | None = None) -> None:
        self.namespace = namespace
        self._kubeconfig = kubeconfig
        self._context = context
        self._fixed = values
        self._client = client
        self._cached: tuple[float, DeployValues, list[AppSpec]] | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = api_client(self._kubeconfig, self._context)
        return self._client

    def _snapshot(self) -> tuple[DeployValues, list[AppSpec]]:
        """The values and apps, re-read from the cluster at most every few seconds (a long-lived
        Dagster code server sees a new ``rdg k8s deploy`` without a restart)."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < VALUES_TTL_S:
            return self._cached[1], self._cached[2]
        v = self._fixed if self._fixed is not None else self._read_values()
        try:
            apps = v.apps()
        except ManifestError as exc:
            raise LauncherError(str(exc)) from exc
        self._cached = (now, v, apps)
        return v, apps

    def _read_values(self) -> DeployValues:
        import yaml

        cm = _request(self.client, "GET", f"/api/v1/namespaces/{self.namespace}/configmaps/{VALUES_CONFIG_MAP}")
        if cm is None:
            raise LauncherError(f"namespace {self.namespace} has no ConfigMap {VALUES_CONFIG_MAP}: deploy the "
                                "platform first (rdg k8s deploy --values deploy/values/<env>.yaml)")
        try:
            v = DeployValues.parse(yaml.safe_load((cm.get("data") or {}).get("values.yaml", "")),
                                   f"ConfigMap {self.namespace}/{VALUES_CONFIG_MAP}")
        except ManifestError as exc:
            raise LauncherError(str(exc)) from exc
        return v if v.namespace == self.namespace else v.with_namespace(self.namespace)

    def values(self) -> DeployValues:
        """The deploy values (given, or those ``rdg k8s deploy`` stored in the namespace)."""
        return self._snapshot()[0]

    def apps(self) -> list[AppSpec]:
        return list(self._snapshot()[1])

    def manifests(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        v = self.values()
        return [app_deployment(v, a) for a in select_apps(self.apps(), names)]

    # ------------------------------------------------------------------ intent (stopped on purpose)
    def _deploy_path(self, app: str) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{deployment_name(app)}"

    def _stopped(self) -> set[str]:
        cm = _request(self.client, "GET", f"/api/v1/namespaces/{self.namespace}/configmaps/{STATE_CONFIG_MAP}")
        data = (cm or {}).get("data") or {}
        return {k for k, v in data.items() if v == STOPPED}

    def _mark(self, names: Sequence[str], stopped: bool) -> None:
        body = {"data": {n: (STOPPED if stopped else None) for n in names}}
        _request(self.client, "PATCH", f"/api/v1/namespaces/{self.namespace}/configmaps/{STATE_CONFIG_MAP}", body,
                 [("fieldManager", FIELD_MANAGER + "-launcher")], "application/merge-patch+json")

    # ------------------------------------------------------------------ operations
    def deploy(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        """Apply the apps' Deployments (a running app keeps its replicas) and clear their stopped mark."""
        apps = select_apps(self.apps(), names)
        apply(self.client, self.manifests([a.name for a in apps]))
        self._mark([a.name for a in apps], stopped=False)
        return self._statuses(apps)

    def scale(self, name: str, replicas: int) -> AppStatus:
        """Set the app's replicas, capped at its input partitions (0 keeps the Deployment, no pods)."""
        (app,) = select_apps(self.apps(), [name])
        n = cap_replicas(app, replicas)
        if _request(self.client, "GET", self._deploy_path(name)) is None:
            raise LauncherError(f"app {name} has no Deployment in {self.namespace}: deploy it first")
        _request(self.client, "PATCH", self._deploy_path(name) + "/scale", {"spec": {"replicas": n}},
                 [("fieldManager", FIELD_MANAGER + "-launcher")], "application/merge-patch+json")
        return self._statuses([app])[0]

    def stop(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        """Delete the apps' Deployments and mark them stopped (the health sensor leaves them alone)."""
        apps = select_apps(self.apps(), names)
        self._mark([a.name for a in apps], stopped=True)
        for app in apps:  # already gone (404) is fine
            _request(self.client, "DELETE", self._deploy_path(app.name), query=[("propagationPolicy", "Background")])
        return self._statuses(apps)

    def restart(self, name: str) -> AppStatus:
        """A rolling restart (like ``kubectl rollout restart``); an app without a Deployment is deployed."""
        (app,) = select_apps(self.apps(), [name])
        if _request(self.client, "GET", self._deploy_path(name)) is None:
            return self.deploy([name])[0]
        stamp = _dt.datetime.now(_dt.UTC).isoformat()
        body = {"spec": {"template": {"metadata": {"annotations": {"rdg.io/restartedAt": stamp}}}}}
        _request(self.client, "PATCH", self._deploy_path(name), body,
                 [("fieldManager", FIELD_MANAGER + "-launcher")], "application/merge-patch+json")
        return self._statuses([app])[0]

    def status(self) -> list[AppStatus]:
        return self._statuses(self.apps())

    def _statuses(self, apps: Sequence[AppSpec]) -> list[AppStatus]:
        ns = self.namespace
        deps = _request(self.client, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments", query=[("labelSelector", APP_LABEL)])
        pods = _request(self.client, "GET", f"/api/v1/namespaces/{ns}/pods", query=[("labelSelector", APP_LABEL)])
        by_app = {(d["metadata"].get("labels") or {}).get(APP_LABEL): d for d in (deps or {}).get("items", [])}
        pods_by_app: dict[str, list[dict[str, Any]]] = {}
        for p in (pods or {}).get("items", []):
            pods_by_app.setdefault((p["metadata"].get("labels") or {}).get(APP_LABEL, ""), []).append(p)
        stopped = self._stopped()
        out = []
        for app in apps:
            d = by_app.get(app.name)
            mine = pods_by_app.get(app.name, [])
            pod_names = sorted(p["metadata"]["name"] for p in mine)
            if d is None:
                was_stopped = app.name in stopped
                out.append(AppStatus(app.name, running=False, pods=pod_names, expected=not was_stopped,
                                     detail="stopped" if was_stopped else "no Deployment"))
                continue
            st = d.get("status") or {}
            ready = int(st.get("readyReplicas") or 0)
            desired = int(d["spec"].get("replicas") or 0)
            phases = ",".join(sorted({str((p.get("status") or {}).get("phase")) for p in mine})) or "-"
            # A Deployment with missing pods is being reconciled by Kubernetes itself: recovering.
            out.append(AppStatus(app.name, running=ready > 0, replicas=ready, desired_replicas=desired,
                                 pods=pod_names, expected=desired > 0, recovering=ready < desired,
                                 detail=f"{ready}/{desired} ready, {len(mine)} pods ({phases})"))
        return out
