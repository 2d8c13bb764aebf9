"""Kubernetes launcher: one Deployment per streaming app, via the official ``kubernetes`` client.

Each app becomes Deployment ``rdg-<app>`` (labels ``app.kubernetes.io/name=rdg-<app>``,
``app.kubernetes.io/part-of=rdg-platform``, ``rdg.io/app=<app>``) running the platform image with
the app's command. Replicas are capped at the app's input partitions (extra consumers of a group
would idle); CPU and memory come per app from configuration, falling back to a default, because
topics differ wildly in volume (per-topic tuning, as in the seeds). Manifests are built as plain
dicts by :func:`build_deployment` so they can be rendered, validated against the Kubernetes OpenAPI
schema and diffed without a cluster; :class:`KubernetesLauncher` applies them (create, or replace
on conflict), scales through the ``scale`` subresource and deletes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rdg_platform.launcher.base import AppStatus, LauncherError, cap_replicas, select_apps
from rdg_platform.streaming.apps import AppSpec

PART_OF = "rdg-platform"
APP_LABEL = "rdg.io/app"


@dataclass(frozen=True)
class AppResources:
    """Requests/limits and replicas for one app (Kubernetes quantities, e.g. ``250m``, ``512Mi``)."""

    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    replicas: int = 1

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], base: AppResources | None = None) -> AppResources:
        b = base or cls()
        return cls(cpu_request=str(raw.get("cpu_request", b.cpu_request)),
                   cpu_limit=str(raw.get("cpu_limit", b.cpu_limit)),
                   memory_request=str(raw.get("memory_request", b.memory_request)),
                   memory_limit=str(raw.get("memory_limit", b.memory_limit)),
                   replicas=int(raw.get("replicas", b.replicas)))


def deployment_name(app: str) -> str:
    """DNS-1123 name of an app's Deployment (``member_playback-processor`` -> ``rdg-member-playback-processor``)."""
    return "rdg-" + app.lower().replace("_", "-").replace(".", "-")


@dataclass(frozen=True)
class KubernetesConfig:
    """Where and with what the apps run in the cluster."""

    namespace: str = "rdg"
    image: str = "rdg-platform:latest"
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_from_secret: str | None = None  # a Secret whose keys become env vars (credentials)
    env_from_config_map: str | None = "rdg-platform-env"
    default_resources: AppResources = field(default_factory=AppResources)
    app_resources: Mapping[str, AppResources] = field(default_factory=dict)

    def resources_for(self, app: str) -> AppResources:
        return self.app_resources.get(app, self.default_resources)


def build_deployment(app: AppSpec, cfg: KubernetesConfig, replicas: int | None = None) -> dict[str, Any]:
    """The Deployment manifest (a plain dict, apps/v1) for one app."""
    res = cfg.resources_for(app.name)
    n = cap_replicas(app, res.replicas if replicas is None else replicas)
    name = deployment_name(app.name)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF,
              "app.kubernetes.io/component": app.kind, APP_LABEL: app.name}
    env = [{"name": k, "value": v} for k, v in sorted(cfg.env.items())]
    env_from: list[dict[str, Any]] = []
    if cfg.env_from_config_map:
        env_from.append({"configMapRef": {"name": cfg.env_from_config_map, "optional": True}})
    if cfg.env_from_secret:
        env_from.append({"secretRef": {"name": cfg.env_from_secret, "optional": True}})
    container: dict[str, Any] = {
        "name": "app",
        "image": cfg.image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": list(app.command),
        "env": env + [{"name": "RDG_APP_NAME", "value": app.name},
                      {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"requests": {"cpu": res.cpu_request, "memory": res.memory_request},
                      "limits": {"cpu": res.cpu_limit, "memory": res.memory_limit}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": False},
    }
    if env_from:
        container["envFrom"] = env_from
    pod_spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 60}
    if cfg.service_account:
        pod_spec["serviceAccountName"] = cfg.service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels,
                     "annotations": {"rdg.io/consumer-group": app.consumer_group,
                                     "rdg.io/input-topics": ",".join(app.input_topics),
                                     "rdg.io/max-replicas": str(max(1, app.partitions))}},
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name, APP_LABEL: app.name}},
            # A consumer group rebalances on every membership change: replace pods one at a time.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


class KubernetesLauncher:
    """Deploys apps as Deployments. The API client is created lazily (in-cluster config first, then
    kubeconfig), so building a launcher never touches a cluster."""

    kind = "kubernetes"

    def __init__(self, apps: Sequence[AppSpec], config: KubernetesConfig | None = None,
                 api_client: Any | None = None, kubeconfig: str | None = None,
                 context: str | None = None) -> None:
        self._apps = list(apps)
        self.config = config or KubernetesConfig()
        self._client = api_client
        self._kubeconfig = kubeconfig
        self._context = context

    def apps(self) -> list[AppSpec]:
        return list(self._apps)

    def manifests(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return [build_deployment(a, self.config) for a in select_apps(self._apps, names)]

    # ------------------------------------------------------------------ API plumbing
    def _apps_api(self) -> Any:
        from kubernetes import client, config

        if self._client is None:
            try:
                config.load_incluster_config()
                self._client = client.ApiClient()
            except config.ConfigException:
                self._client = config.new_client_from_config(config_file=self._kubeconfig, context=self._context)
        return client.AppsV1Api(self._client)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise LauncherError(f"kubernetes {what} failed: {exc.status} {exc.reason}: {exc.body}") from exc

    # ------------------------------------------------------------------ operations
    def deploy(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        from kubernetes.client.exceptions import ApiException

        api = self._apps_api()
        ns = self.config.namespace
        for manifest in self.manifests(names):
            name = manifest["metadata"]["name"]
            try:
                api.create_namespaced_deployment(ns, manifest)
            except ApiException as exc:
                if exc.status != 409:
                    raise LauncherError(f"kubernetes create {name} failed: {exc.status} {exc.reason}") from exc
                self._call(f"replace {name}", api.replace_namespaced_deployment, name, ns, manifest)
        return self._statuses(select_apps(self._apps, names))

    def scale(self, name: str, replicas: int) -> AppStatus:
        (app,) = select_apps(self._apps, [name])
        n = cap_replicas(app, replicas)
        api = self._apps_api()
        self._call(f"scale {name}", api.patch_namespaced_deployment_scale, deployment_name(name),
                   self.config.namespace, {"spec": {"replicas": n}})
        return self._statuses([app])[0]

    def stop(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        from kubernetes.client.exceptions import ApiException

        api = self._apps_api()
        out = []
        for app in select_apps(self._apps, names):
            try:
                api.delete_namespaced_deployment(deployment_name(app.name), self.config.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise LauncherError(f"kubernetes delete {app.name} failed: {exc.status} {exc.reason}") from exc
            out.append(AppStatus(app.name, running=False, detail="deleted"))
        return out

    def restart(self, name: str) -> AppStatus:
        """Rolling restart, like ``kubectl rollout restart`` (a pod-template annotation bump)."""
        import datetime as _dt

        (app,) = select_apps(self._apps, [name])
        stamp = _dt.datetime.now(_dt.UTC).isoformat()
        body = {"spec": {"template": {"metadata": {"annotations": {"rdg.io/restartedAt": stamp}}}}}
        self._call(f"restart {name}", self._apps_api().patch_namespaced_deployment,
                   deployment_name(name), self.config.namespace, body)
        return self._statuses([app])[0]

    def status(self) -> list[AppStatus]:
        return self._statuses(self._apps)

    def _statuses(self, apps: Sequence[AppSpec]) -> list[AppStatus]:
        api = self._apps_api()
        found = self._call("list deployments", api.list_namespaced_deployment, self.config.namespace,
                           label_selector=f"app.kubernetes.io/part-of={PART_OF}")
        by_app = {(d.metadata.labels or {}).get(APP_LABEL): d for d in found.items}
        out = []
        for app in apps:
            d = by_app.get(app.name)
            if d is None:
                out.append(AppStatus(app.name, running=False, detail="not deployed"))
                continue
            ready = int(d.status.ready_replicas or 0) if d.status else 0
            desired = int(d.spec.replicas or 0)
            out.append(AppStatus(app.name, running=ready > 0, replicas=ready, desired_replicas=desired,
                                 detail=f"{ready}/{desired} ready", expected=desired > 0))
        return out
