"""The one renderer of rdg-platform's Kubernetes objects, from a values file (``deploy/values/<env>.yaml``).

``rdg k8s deploy`` applies what :func:`render` returns, and the Dagster control plane's
:class:`~rdg_platform.launcher.kubernetes.KubernetesLauncher` builds an app's Deployment with
:func:`app_deployment` from the values that deploy stored in the cluster (ConfigMap
``rdg-deploy-values``): there is no second template, so what is rendered is what Dagster applies.

What is rendered, per namespace:

- **configuration**: ConfigMap ``rdg-platform-settings`` holds every non-credential setting of
  :class:`~rdg_platform.settings.Settings` under its ``RDG_*`` name (validated by
  :func:`~rdg_platform.settings.load_settings`, so a misspelt or invalid setting fails the render);
  every credential setting (:data:`CREDENTIAL_SETTINGS`: passwords, usernames, tokens, keys) is a
  ``secretKeyRef`` into the component's own Secret (apps, API and Dagster act as different roles);
- **streaming apps**: one Deployment per :class:`~rdg_platform.streaming.apps.AppSpec`, replicas
  capped at the app's input partitions, metrics port with ``/healthz`` probes and scrape annotations;
- **graph API**: Deployment, ClusterIP Service and PodDisruptionBudget, probes on ``/healthz``;
- **Dagster**: webserver (ClusterIP Service only) and daemon with a Postgres-backed instance
  (``dagster.yaml`` in ConfigMap ``rdg-dagster-instance``), runs as Kubernetes Jobs (K8sRunLauncher);
- **access**: ServiceAccounts (only Dagster's mounts a token), a Role that can manage Deployments and
  Jobs and read pods but no Secret at all, and NetworkPolicies (deny all ingress, then admit per
  component only its clients).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from rdg_platform.launcher.base import cap_replicas
from rdg_platform.settings import Settings, SettingsError, iter_fields, load_settings
from rdg_platform.streaming.apps import AppSpec, app_specs

PART_OF = "rdg-platform"
APP_LABEL = "rdg.io/app"
COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
SETTINGS_CONFIG_MAP = "rdg-platform-settings"
VALUES_CONFIG_MAP = "rdg-deploy-values"
STATE_CONFIG_MAP = "rdg-streaming-state"
INSTANCE_CONFIG_MAP = "rdg-dagster-instance"
DAGSTER_SA = "rdg-dagster"
FIELD_MANAGER = "rdg-platform"
DAGSTER_HOME = "/opt/dagster/dagster_home"
STATE_DIR = "/var/lib/rdg"  # an emptyDir: the root filesystem is read-only
CACHE_DIR = "/opt/rdg/cache"  # baked into the image (the Spark jars)
PG_PASSWORD_KEY = "postgresql-password"  # the key dagster-k8s expects in postgres_password_secret
RUN_AS_USER = 10001  # the image's user (deploy/Dockerfile)

# Credentials: each component reads these from its own Secret, never from the shared ConfigMap. The
# SecretStr fields of the settings plus what identifies a role (usernames, API token hashes).
CREDENTIAL_SETTINGS: frozenset[str] = frozenset(
    name for name, f in iter_fields(Settings) if "SecretStr" in str(f.annotation)) | {
    "RDG_KAFKA_SASL_USERNAME", "RDG_CASSANDRA_USERNAME", "RDG_REGISTRY_USERNAME", "RDG_ICEBERG_CATALOG_USER",
    "RDG_S3_ACCESS_KEY_ID", "RDG_API_TOKENS"}

# What a cluster needs spelled out: the defaults of these point at the local services.
REQUIRED_SETTINGS = ("RDG_KAFKA_BOOTSTRAP", "RDG_REGISTRY_URL", "RDG_CASSANDRA_CONTACT_POINTS")


class ManifestError(ValueError):
    """The values cannot be rendered (unknown or misplaced setting, invalid value); the message says which."""


class _Values(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class Resources(_Values):
    """Requests and limits of one container (Kubernetes quantities)."""

    cpu_request: str = "100m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str = "1Gi"

    def spec(self) -> dict[str, Any]:
        return {"requests": {"cpu": self.cpu_request, "memory": self.memory_request},
                "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit}}


class AppValues(Resources):
    """An app's resources and its replicas at creation (capped at its input partitions)."""

    replicas: int = Field(1, ge=0)


class StreamingAppsValues(_Values):
    default: AppValues = AppValues()
    per_app: dict[str, AppValues] = Field(default_factory=dict, description="by app name (rdg apps list)")

    def for_app(self, name: str) -> AppValues:
        return self.per_app.get(name, self.default)


class ApiValues(_Values):
    replicas: int = Field(2, ge=1)
    resources: Resources = Resources(cpu_request="250m", cpu_limit="2", memory_request="512Mi", memory_limit="1Gi")
    # NetworkPolicy peers allowed to call the API besides pods of the namespace (e.g. an ingress controller).
    allow_from: list[dict[str, Any]] = Field(default_factory=list)


class PostgresValues(_Values):
    host: str
    port: int = 5432
    db: str = "dagster"
    user: str = "dagster"
    password_secret: str = "rdg-dagster-postgres"  # key: postgresql-password


class DagsterValues(_Values):
    webserver_replicas: int = Field(1, ge=1)
    webserver_port: int = 3000
    postgres: PostgresValues
    run_job_ttl_seconds: int = 3600
    max_concurrent_runs: int = 10
    webserver_resources: Resources = Resources(cpu_request="250m", cpu_limit="2", memory_request="1Gi",
                                               memory_limit="2Gi")
    daemon_resources: Resources = Resources(cpu_request="250m", cpu_limit="2", memory_request="1Gi",
                                            memory_limit="2Gi")
    run_resources: Resources = Resources(cpu_request="500m", cpu_limit="2", memory_request="1Gi", memory_limit="4Gi")


class SecretNames(_Values):
    """The Secret (keys: ``RDG_*`` names) each component's credentials come from; created by the
    platform team, never rendered."""

    apps: str = "rdg-app-credentials"
    api: str = "rdg-api-credentials"
    dagster: str = "rdg-dagster-credentials"


class PrometheusValues(_Values):
    # Pods matching these may scrape the metrics ports (NetworkPolicy).
    namespace_selector: dict[str, str] = Field(default_factory=lambda: {"kubernetes.io/metadata.name": "monitoring"})
    pod_selector: dict[str, str] = Field(default_factory=dict)


class DeployValues(_Values):
    """One environment's values (``deploy/values/<env>.yaml``)."""

    env: str
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    image: str
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    platform_env: dict[str, Any] = Field(default_factory=dict, description="RDG_* names (no credentials)")
    secrets: SecretNames = SecretNames()
    streaming_apps: StreamingAppsValues = StreamingAppsValues()
    api: ApiValues = ApiValues()
    dagster: DagsterValues
    prometheus: PrometheusValues = PrometheusValues()

    @classmethod
    def load(cls, path: Path) -> DeployValues:
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise ManifestError(f"values file {path} does not exist") from exc
        except yaml.YAMLError as exc:
            raise ManifestError(f"values file {path} is not valid YAML: {exc}") from exc
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: Any, where: str = "values") -> DeployValues:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ManifestError(f"{where}: {exc}") from None

    def dump(self) -> str:
        return yaml.safe_dump(self.model_dump(by_alias=True, mode="json"), sort_keys=False)

    def with_namespace(self, namespace: str) -> DeployValues:
        return self.model_copy(update={"namespace": namespace})

    # -- derived -----------------------------------------------------------------------------------
    def settings_data(self) -> dict[str, str]:
        """The ConfigMap ``rdg-platform-settings``: every non-credential setting with a value."""
        known = {name for name, _f in iter_fields(Settings)}
        given: dict[str, str] = {}
        for key, value in self.platform_env.items():
            name = str(key).upper()
            if name not in known:
                raise ManifestError(f"platformEnv: unknown setting {key!r} (see README 'Settings')")
            if name in CREDENTIAL_SETTINGS:
                raise ManifestError(f"platformEnv: {name} is a credential: put it in the components' Secrets "
                                    f"({self.secrets.apps}, {self.secrets.api}, {self.secrets.dagster}), not in values")
            if value is None:
                continue
            given[name] = _env_string(value)
        missing = [n for n in REQUIRED_SETTINGS if n not in given]
        if missing:
            raise ManifestError(f"platformEnv: {missing} must be set (their defaults are the local services)")
        forced = {"RDG_ENV": "prod", "RDG_K8S_NAMESPACE": self.namespace, "RDG_K8S_IMAGE": self.image,
                  "RDG_K8S_IMAGE_PULL_POLICY": self.image_pull_policy, "RDG_STATE_DIR": STATE_DIR,
                  "RDG_CACHE_DIR": CACHE_DIR}
        for name, value in forced.items():
            if name in given and given[name] != value:
                raise ManifestError(f"platformEnv: {name}={given[name]!r} contradicts the values ({value!r}); drop it")
        # Pods serve on their pod IP: probes and Prometheus reach them there, not on loopback.
        data = {"RDG_STREAMING_METRICS_BIND_HOST": "0.0.0.0", "RDG_API_BIND_HOST": "0.0.0.0",
                "RDG_DAGSTER_BIND_HOST": "0.0.0.0", **given, **forced}
        s = self.load_settings(data)
        out: dict[str, str] = {}
        for name, value, _f in s.items(reveal=False):
            if value is not None and name not in CREDENTIAL_SETTINGS:
                out[name] = value
        return out

    @staticmethod
    def load_settings(data: Mapping[str, str]) -> Settings:
        try:
            return load_settings(dict(data))
        except SettingsError as exc:
            raise ManifestError(f"settings: {exc}") from None

    def platform_settings(self) -> Settings:
        """The settings a pod of this deployment builds (credentials aside)."""
        return self.load_settings(self.settings_data())

    def apps(self) -> list[AppSpec]:
        s = self.platform_settings()
        return app_specs(s.load_spec(), s.streaming, s.topics_file)


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def load_values(path: Path | str) -> DeployValues:
    return DeployValues.load(Path(path))


# ------------------------------------------------------------------------------------------ helpers
def deployment_name(app: str) -> str:
    """DNS-1123 name of an app's Deployment (``member_playback-processor`` -> ``rdg-member-playback-processor``)."""
    return "rdg-" + app.lower().replace("_", "-").replace(".", "-")


def _meta(v: DeployValues, name: str, component: str, **extra: Any) -> dict[str, Any]:
    labels = {NAME_LABEL: name, "app.kubernetes.io/part-of": PART_OF, COMPONENT_LABEL: component}
    return {"name": name, "namespace": v.namespace, "labels": labels, **extra}


def _credential_env(secret: str) -> list[dict[str, Any]]:
    """Every credential setting as an optional reference into ``secret`` (absent keys stay unset)."""
    return [{"name": n, "valueFrom": {"secretKeyRef": {"name": secret, "key": n, "optional": True}}}
            for n in sorted(CREDENTIAL_SETTINGS)]


def _security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _container(v: DeployValues, name: str, command: list[str], secret: str, resources: Resources,
               **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": v.image, "imagePullPolicy": v.image_pull_policy, "command": command,
            "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIG_MAP}}],
            "env": _credential_env(secret), "resources": resources.spec(),
            "securityContext": _security_context(),
            "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
            **extra}


def _pod_spec(container: dict[str, Any], service_account: str, automount: bool = False,
              volumes: list[dict[str, Any]] | None = None, grace_s: int = 30) -> dict[str, Any]:
    return {"serviceAccountName": service_account, "automountServiceAccountToken": automount,
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "fsGroup": RUN_AS_USER,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": grace_s, "containers": [container],
            "volumes": [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}, *(volumes or [])]}


def _http_probe(path: str, port: str, period_s: int, failures: int, initial_s: int = 5) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "initialDelaySeconds": initial_s, "periodSeconds": period_s,
            "timeoutSeconds": 3, "failureThreshold": failures}


def _scrape(port: int, path: str = "/metrics") -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": path}


# ------------------------------------------------------------------------------------------ apps
def app_deployment(v: DeployValues, app: AppSpec, replicas: int | None = None) -> dict[str, Any]:
    """The Deployment of one streaming app: ``replicas`` (default: the values'), capped at its partitions."""
    res = v.streaming_apps.for_app(app.name)
    n = cap_replicas(app, res.replicas if replicas is None else replicas)
    name = deployment_name(app.name)
    port = app.metrics_port
    if port is None:
        raise ManifestError(f"app {app.name} has no metrics port (its health endpoint)")
    meta = _meta(v, name, f"streaming-{app.kind}")
    meta["labels"][APP_LABEL] = app.name
    meta["annotations"] = {"rdg.io/consumer-group": app.consumer_group, "rdg.io/input-topics": ",".join(app.input_topics),
                           "rdg.io/max-replicas": str(max(1, app.partitions))}
    container = _container(
        v, "app", list(app.command), v.secrets.apps, res,
        ports=[{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        # /healthz of the app's metrics server (rdg_platform.streaming.metrics): served once the app is up.
        readinessProbe=_http_probe("/healthz", "metrics", 10, 3),
        livenessProbe=_http_probe("/healthz", "metrics", 20, 3, initial_s=30))
    selector = {NAME_LABEL: name, APP_LABEL: app.name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": selector},
            # A consumer group rebalances on every membership change: replace pods one at a time.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": dict(meta["labels"]), "annotations": _scrape(port)},
                         "spec": _pod_spec(container, "rdg-streaming", grace_s=60)},
        },
    }


def app_deployments(v: DeployValues) -> list[dict[str, Any]]:
    return [app_deployment(v, a) for a in v.apps()]


# ------------------------------------------------------------------------------------------ API
def api_objects(v: DeployValues) -> list[dict[str, Any]]:
    port = v.platform_settings().api.port
    name = "rdg-api"
    meta = _meta(v, name, "api")
    selector = {NAME_LABEL: name}
    container = _container(
        v, "api", ["rdg", "serve", "--role", "reader"], v.secrets.api, v.api.resources,
        ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        # /healthz answers 503 while Cassandra is unreachable: that takes the pod out of the Service.
        readinessProbe=_http_probe("/healthz", "http", 10, 3),
        # Liveness must not follow storage (restarting the API does not bring Cassandra back): it only
        # checks that the server accepts connections.
        livenessProbe={"tcpSocket": {"port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 20,
                       "timeoutSeconds": 3, "failureThreshold": 3})
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": v.api.replicas, "selector": {"matchLabels": selector},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                  "template": {"metadata": {"labels": dict(meta["labels"]), "annotations": _scrape(port)},
                               "spec": _pod_spec(container, "rdg-api")}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(v, name, "api"),
         "spec": {"type": "ClusterIP", "selector": selector,
                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(v, name, "api"),
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}}},
    ]


# ------------------------------------------------------------------------------------------ Dagster
def dagster_instance(v: DeployValues) -> dict[str, Any]:
    """The Dagster instance (``dagster.yaml``): Postgres storage, queued runs, runs as Kubernetes Jobs."""
    d = v.dagster
    pg = d.postgres
    return {
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {
            "service_account_name": DAGSTER_SA, "job_image": v.image, "image_pull_policy": v.image_pull_policy,
            "dagster_home": DAGSTER_HOME, "instance_config_map": INSTANCE_CONFIG_MAP,
            "postgres_password_secret": pg.password_secret, "load_incluster_config": True,
            "job_namespace": v.namespace, "env_config_maps": [SETTINGS_CONFIG_MAP],
            "env_secrets": [v.secrets.dagster],
            "run_k8s_config": {"container_config": {"resources": d.run_resources.spec()},
                               "job_spec_config": {"ttl_seconds_after_finished": d.run_job_ttl_seconds}}}},
        # The public module path (dagster.core.* no longer exists in Dagster 1.13).
        "run_coordinator": {"module": "dagster", "class": "QueuedRunCoordinator",
                            "config": {"max_concurrent_runs": d.max_concurrent_runs}},
        "storage": {"postgres": {"postgres_db": {"hostname": pg.host, "port": pg.port, "db_name": pg.db,
                                                 "username": pg.user,
                                                 "password": {"env": "DAGSTER_PG_PASSWORD"},
                                                 # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3,
                                                 # which is not installed; dagster-postgres ships psycopg2.
                                                 "scheme": "postgresql+psycopg2"}}},
        "telemetry": {"enabled": False},
    }


WORKSPACE = {"load_from": [{"python_module": {"module_name": "rdg_platform.definitions",
                                              "location_name": "rdg_platform"}}]}


def dagster_objects(v: DeployValues) -> list[dict[str, Any]]:
    d = v.dagster
    out: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(v, INSTANCE_CONFIG_MAP, "dagster"),
        "data": {"dagster.yaml": yaml.safe_dump(dagster_instance(v), sort_keys=False),
                 "workspace.yaml": yaml.safe_dump(WORKSPACE, sort_keys=False)}}]
    pg_env = {"name": "DAGSTER_PG_PASSWORD",
              "valueFrom": {"secretKeyRef": {"name": d.postgres.password_secret, "key": PG_PASSWORD_KEY}}}
    # DAGSTER_HOME is writable (an emptyDir: local compute logs, schedules' state) under the read-only root.
    mounts = [{"name": "dagster-home", "mountPath": DAGSTER_HOME},
              {"name": "instance", "mountPath": f"{DAGSTER_HOME}/dagster.yaml", "subPath": "dagster.yaml"},
              {"name": "instance", "mountPath": f"{DAGSTER_HOME}/workspace.yaml", "subPath": "workspace.yaml"}]
    volumes = [{"name": "instance", "configMap": {"name": INSTANCE_CONFIG_MAP}}, {"name": "dagster-home", "emptyDir": {}}]
    workspace = f"{DAGSTER_HOME}/workspace.yaml"
    for component in ("webserver", "daemon"):
        name = f"rdg-dagster-{component}"
        meta = _meta(v, name, f"dagster-{component}")
        if component == "webserver":
            c = _container(v, component, ["dagster-webserver", "-h", "0.0.0.0", "-p", str(d.webserver_port),
                                          "-w", workspace], v.secrets.dagster, d.webserver_resources,
                           ports=[{"name": "http", "containerPort": d.webserver_port, "protocol": "TCP"}],
                           readinessProbe=_http_probe("/server_info", "http", 10, 3, initial_s=10),
                           livenessProbe=_http_probe("/server_info", "http", 20, 5, initial_s=60))
        else:
            c = _container(v, component, ["dagster-daemon", "run", "-w", workspace], v.secrets.dagster,
                           d.daemon_resources,
                           livenessProbe={"exec": {"command": ["dagster-daemon", "liveness-check"]},
                                          "initialDelaySeconds": 120, "periodSeconds": 60, "timeoutSeconds": 30,
                                          "failureThreshold": 3})
        c["env"] = [{"name": "DAGSTER_HOME", "value": DAGSTER_HOME}, pg_env, *c["env"]]
        c["volumeMounts"] = [*c["volumeMounts"], *mounts]
        spec: dict[str, Any] = {
            "replicas": d.webserver_replicas if component == "webserver" else 1,
            "selector": {"matchLabels": {NAME_LABEL: name}},
            "template": {"metadata": {"labels": dict(meta["labels"])},
                         "spec": _pod_spec(c, DAGSTER_SA, automount=True, volumes=volumes)}}
        if component == "daemon":
            spec["strategy"] = {"type": "Recreate"}  # exactly one daemon at a time
        out.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})
    out.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(v, "rdg-dagster-webserver", "dagster-webserver"),
                "spec": {"type": "ClusterIP", "selector": {NAME_LABEL: "rdg-dagster-webserver"},
                         "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}})
    return out


# ------------------------------------------------------------------------------------------ access
def rbac_objects(v: DeployValues) -> list[dict[str, Any]]:
    """ServiceAccounts and Dagster's Role: Jobs (its runs), Deployments (the apps), pods (their
    health), and two named ConfigMaps (the deploy values; the apps' stopped/running intent). No Secret:
    pods receive their credentials through secretKeyRef, resolved by the kubelet, not by Dagster."""
    sa = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(v, n, c), "automountServiceAccountToken": auto}
          for n, c, auto in ((DAGSTER_SA, "dagster", True), ("rdg-streaming", "streaming", False),
                             ("rdg-api", "api", False))]
    rules = [
        {"apiGroups": ["batch"], "resources": ["jobs"],
         "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
        {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"],
         "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [VALUES_CONFIG_MAP, STATE_CONFIG_MAP],
         "verbs": ["get", "patch", "update"]},
    ]
    return [*sa,
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(v, DAGSTER_SA, "dagster"),
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": _meta(v, DAGSTER_SA, "dagster"),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DAGSTER_SA},
             "subjects": [{"kind": "ServiceAccount", "name": DAGSTER_SA, "namespace": v.namespace}]}]


def network_policies(v: DeployValues) -> list[dict[str, Any]]:
    """Deny every ingress into the namespace, then admit: Prometheus to the apps' and the API's metrics
    ports, the namespace's pods (and ``api.allowFrom``) to the API, the namespace's pods (and
    ``kubectl port-forward``, which is not subject to policies) to the Dagster webserver. Dagster's
    daemon and run pods take no ingress."""
    prom: dict[str, Any] = {"namespaceSelector": {"matchLabels": dict(v.prometheus.namespace_selector)}}
    if v.prometheus.pod_selector:
        prom["podSelector"] = {"matchLabels": dict(v.prometheus.pod_selector)}
    same_ns: dict[str, Any] = {"podSelector": {}}

    def policy(name: str, selector: dict[str, Any], ingress: list[dict[str, Any]]) -> dict[str, Any]:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(v, name, "network"),
                "spec": {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": ingress}}

    api_port = v.platform_settings().api.port
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(v, "rdg-default-deny", "network"),
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
        policy("rdg-streaming-metrics", {"matchExpressions": [{"key": APP_LABEL, "operator": "Exists"}]},
               [{"from": [prom], "ports": [{"protocol": "TCP", "port": "metrics"}]}]),
        policy("rdg-api", {"matchLabels": {NAME_LABEL: "rdg-api"}},
               [{"from": [same_ns, prom, *v.api.allow_from], "ports": [{"protocol": "TCP", "port": api_port}]}]),
        policy("rdg-dagster-webserver", {"matchLabels": {NAME_LABEL: "rdg-dagster-webserver"}},
               [{"from": [same_ns], "ports": [{"protocol": "TCP", "port": v.dagster.webserver_port}]}]),
    ]


# ------------------------------------------------------------------------------------------ all
def config_maps(v: DeployValues) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(v, SETTINGS_CONFIG_MAP, "config"),
         "data": v.settings_data()},
        # What Dagster's launcher renders app Deployments from (so it applies what deploy rendered).
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(v, VALUES_CONFIG_MAP, "config"),
         "data": {"values.yaml": v.dump()}},
        # Which apps were stopped on purpose (the launcher writes it; the health sensor reads it).
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(v, STATE_CONFIG_MAP, "streaming")},
    ]


def render(v: DeployValues) -> list[dict[str, Any]]:
    """Every object of one environment, in apply order (namespace, access, configuration, workloads)."""
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": v.namespace, "labels": {"app.kubernetes.io/part-of": PART_OF}}}
    return [ns, *rbac_objects(v), *config_maps(v), *network_policies(v), *api_objects(v), *dagster_objects(v),
            *app_deployments(v)]


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)
