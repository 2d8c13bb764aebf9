"""Streaming control: the streaming apps as long-running resources managed from Dagster.

- Assets ``streaming/<app>`` (group ``streaming_apps``): materialising one deploys that app through
  the configured launcher (local processes or Kubernetes); its metadata is the app's status.
- Assets ``graph/<node|edge>/<type>`` (group ``graph``): the KV namespaces the sink apps write; the
  quality domain attaches its Great Expectations checks to them.
- Checks ``app_running`` and ``consumer_lag_below_threshold`` on every app asset: evaluated by the
  health sensor every tick (and on demand from the UI).
- Jobs ``deploy_streaming_apps``, ``scale_streaming_app``, ``stop_streaming_apps``,
  ``restart_streaming_app`` (op config names the apps) and ``streaming_lag_alert`` (requested by the
  sensor when an app falls behind; its run fails on purpose, which is what run-failure alerting and
  the UI's failed-run views pick up).
- Sensor ``streaming_apps_health_sensor`` (15 s ticks, running by default): records every app's health
  and consumer lag as asset observations + check evaluations, restarts dead local apps, and
  requests ``streaming_lag_alert`` when lag passes ``lag_alert_threshold``. Kafka reads are bounded
  (see :mod:`rdg_platform.assets.streaming_control.health`), so a tick never blocks on Kafka. With the
  Kubernetes launcher it sees each app's Deployment and pods, and redeploys an app whose Deployment
  was deleted without a stop.

``defs(settings, resources)`` wires them to the launcher the settings call for (:func:`launcher_resource`).
"""


import time
from collections.abc import Iterable
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetSpec,
    Config,
    DefaultSensorStatus,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    ResourceParam,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    job,
    multi_asset,
    multi_asset_check,
    op,
    sensor,
)
from pydantic import Field

from rdg_platform.assets.quality.graph_keys import graph_keys, graph_namespace_key
from rdg_platform.assets.streaming_control.health import HealthPass, health_pass
from rdg_platform.assets.streaming_control.registry import load_apps
from rdg_platform.assets.streaming_control.resource import StreamingLauncherResource
from rdg_platform.launcher.base import AppStatus
from rdg_platform.launcher.lag import LagReport
from rdg_platform.local_services.credentials import switch_role
from rdg_platform.model.spec import default_spec
from rdg_platform.resources import PlatformResources
from rdg_platform.settings import Settings
from rdg_platform.streaming.apps import AppSpec

GROUP = "streaming_apps"
GRAPH_GROUP = "graph"
CHECK_RUNNING = "app_running"
CHECK_LAG = "consumer_lag_below_threshold"
SENSOR_INTERVAL_S = 15
RESOURCE_KEY = "streaming_launcher"


def app_asset_key(app: str) -> AssetKey:
    return AssetKey(["streaming", app])


# The app list is fixed at definition load, from the packaged model and the default sink groups (see
# registry.py); the launcher resource decides where and as whom they run.
_SPEC = default_spec()
APPS: list[AppSpec] = load_apps(_SPEC)
_APP_KEYS = {a.name: app_asset_key(a.name) for a in APPS}


def _app_spec(a: AppSpec) -> AssetSpec:
    return AssetSpec(
        key=_APP_KEYS[a.name], group_name=GROUP, kinds={"python", "kafka"},
        description=(f"Streaming {a.kind} app `{a.name}`: consumer group `{a.consumer_group}` on "
                     f"{', '.join(a.input_topics) or '-'} ({a.partitions} partitions, so at most "
                     f"{a.partitions} replicas). Materialise to deploy it with the configured launcher; "
                     "the health sensor records its status and lag as observations."),
        metadata={"consumer_group": a.consumer_group, "input_topics": ", ".join(a.input_topics),
                  "max_replicas": a.partitions},
        skippable=True,
    )


def _graph_specs() -> list[AssetSpec]:
    out = []
    for kind, types in (("node", _SPEC.nodes), ("edge", _SPEC.edges)):
        for name, t in types.items():
            ns = _SPEC.namespace(kind, name)  # type: ignore[arg-type]
            writers = [_APP_KEYS[a.name] for a in APPS if t.topic in a.input_topics]
            out.append(AssetSpec(
                key=graph_namespace_key(kind, name), group_name=GRAPH_GROUP, kinds={"cassandra"}, deps=writers,
                description=(f"Graph {kind} namespace `{ns.name}`: Cassandra table `{ns.keyspace}.{ns.table}`"
                             + (f" (+ reverse `{ns.reverse_table}`)" if ns.reverse_table else "")
                             + f", TTL {ns.ttl_s}s, written by the sink apps from topic `{t.topic}`."),
                metadata={"namespace": ns.name, "table": f"{ns.keyspace}.{ns.table}", "ttl_s": ns.ttl_s,
                          "topic": t.topic}))
    return out


graph_namespace_specs = _graph_specs()
GRAPH_KEYS: dict[tuple[str, str], AssetKey] = graph_keys(_SPEC)


def _status_metadata(st: AppStatus) -> dict[str, Any]:
    return {**st.to_metadata(), "launcher_checked_at": MetadataValue.timestamp(time.time())}


@multi_asset(specs=[_app_spec(a) for a in APPS], name="streaming_apps", can_subset=True,
             description="Deploy the selected streaming apps with the configured launcher.")
def streaming_apps(context: AssetExecutionContext, streaming_launcher: ResourceParam[StreamingLauncherResource]
                   ) -> Iterable[MaterializeResult]:
    names = [k.path[-1] for k in context.selected_asset_keys]
    launcher = streaming_launcher.launcher()
    context.log.info(f"deploying {names} with the {launcher.kind} launcher")
    for st in launcher.deploy(names):
        yield MaterializeResult(asset_key=app_asset_key(st.name), metadata=_status_metadata(st))


def _lag_metadata(lag: LagReport) -> dict[str, Any]:
    md = lag.to_metadata()
    md["lag_by_partition"] = MetadataValue.json(md["lag_by_partition"])
    return md


@multi_asset_check(
    specs=[s for a in APPS for s in (
        AssetCheckSpec(CHECK_RUNNING, asset=_APP_KEYS[a.name], description="The app is running (if deployed)."),
        AssetCheckSpec(CHECK_LAG, asset=_APP_KEYS[a.name],
                       description="Consumer lag is below the launcher resource's lag_alert_threshold."))],
    name="streaming_app_health", can_subset=True,
    description="Health of the streaming apps now (the sensor reports the same checks every tick).")
def streaming_app_health(context: AssetCheckExecutionContext, streaming_launcher: ResourceParam[StreamingLauncherResource]) -> Iterable[AssetCheckResult]:
    p = health_pass(streaming_launcher.launcher(), streaming_launcher.kafka, streaming_launcher.lag_timeout_s,
                    restart_dead=False)
    selected = set(context.selected_asset_check_keys)
    for ev in _evaluations(p, streaming_launcher.lag_alert_threshold):
        if ev.asset_check_key in selected:
            yield AssetCheckResult(asset_key=ev.asset_key, check_name=ev.check_name, passed=ev.passed,
                                   severity=ev.severity, metadata=dict(ev.metadata))


def _evaluations(p: HealthPass, threshold: int) -> list[AssetCheckEvaluation]:
    out = []
    for h in p.apps:
        key = _APP_KEYS[h.app.name]
        # A never-deployed (or deliberately stopped) app is not a failure; a dead one is.
        ok = h.status.running or not h.status.expected
        out.append(AssetCheckEvaluation(asset_key=key, check_name=CHECK_RUNNING, passed=ok,
                                        severity=AssetCheckSeverity.ERROR,
                                        metadata={**h.status.to_metadata(), "restarted": h.restarted,
                                                  "restart_error": h.restart_error or ""}))
        lag_ok = not h.lag_exceeds(threshold)
        out.append(AssetCheckEvaluation(asset_key=key, check_name=CHECK_LAG, passed=lag_ok,
                                        severity=AssetCheckSeverity.ERROR,
                                        metadata={**_lag_metadata(h.lag), "threshold": threshold}))
    return out


# ---------------------------------------------------------------------------------------- jobs
class AppsConfig(Config):  # type: ignore[misc]
    apps: list[str] = Field(default_factory=list, description="app names; empty = every app")


class ScaleConfig(Config):  # type: ignore[misc]
    app: str
    replicas: int = Field(ge=0, description="capped at the app's input partitions")


class RestartConfig(Config):  # type: ignore[misc]
    app: str


def _log_statuses(context: OpExecutionContext, statuses: list[AppStatus]) -> dict[str, Any]:
    table = {s.name: s.to_metadata() for s in statuses}
    context.add_output_metadata({"apps": MetadataValue.json(table)})
    for s in statuses:
        context.log.info(f"{s.name}: running={s.running} replicas={s.replicas} {s.detail}")
    return table


@op(description="Deploy (start) the configured apps; already-running apps are left as they are.")
def deploy_apps_op(context: OpExecutionContext, config: AppsConfig,
                   streaming_launcher: ResourceParam[StreamingLauncherResource]) -> dict[str, Any]:
    return _log_statuses(context, streaming_launcher.launcher().deploy(config.apps or None))


@op(description="Set an app's replicas (0 stops it; at most its input partitions).")
def scale_app_op(context: OpExecutionContext, config: ScaleConfig,
                 streaming_launcher: ResourceParam[StreamingLauncherResource]) -> dict[str, Any]:
    return _log_statuses(context, [streaming_launcher.launcher().scale(config.app, config.replicas)])


@op(description="Stop the configured apps (the health sensor will not restart a stopped app).")
def stop_apps_op(context: OpExecutionContext, config: AppsConfig,
                 streaming_launcher: ResourceParam[StreamingLauncherResource]) -> dict[str, Any]:
    return _log_statuses(context, streaming_launcher.launcher().stop(config.apps or None))


@op(description="Restart one app (local: stop + start; Kubernetes: rolling restart).")
def restart_app_op(context: OpExecutionContext, config: RestartConfig,
                   streaming_launcher: ResourceParam[StreamingLauncherResource]) -> dict[str, Any]:
    return _log_statuses(context, [streaming_launcher.launcher().restart(config.app)])


class LagAlertConfig(Config):  # type: ignore[misc]
    app: str
    lag: int
    threshold: int


@op(description="Fail loudly: an app's consumer lag passed the alert threshold.")
def lag_alert_op(context: OpExecutionContext, config: LagAlertConfig) -> None:
    raise Failure(description=(f"streaming app {config.app} is {config.lag} messages behind "
                               f"(threshold {config.threshold})"),
                  metadata={"app": config.app, "lag": config.lag, "threshold": config.threshold})


@job(description="Deploy streaming apps (op config `apps`, empty = all).", tags={"rdg/area": "streaming"})
def deploy_streaming_apps() -> None:
    deploy_apps_op()


@job(description="Scale one streaming app (replicas capped at its partitions).", tags={"rdg/area": "streaming"})
def scale_streaming_app() -> None:
    scale_app_op()


@job(description="Stop streaming apps (op config `apps`, empty = all).", tags={"rdg/area": "streaming"})
def stop_streaming_apps() -> None:
    stop_apps_op()


@job(description="Restart one streaming app.", tags={"rdg/area": "streaming"})
def restart_streaming_app() -> None:
    restart_app_op()


@job(description="Raised by the health sensor when an app's lag passes the threshold; fails on purpose.",
     tags={"rdg/area": "streaming", "rdg/alert": "lag"})
def streaming_lag_alert() -> None:
    lag_alert_op()


# ---------------------------------------------------------------------------------------- sensor
ALERT_DEBOUNCE_S = 600  # one alert run per lagging app per 10 minutes


@sensor(name="streaming_apps_health_sensor", minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING, job=streaming_lag_alert,
        description=("Every 15 s: records each streaming app's health and consumer lag (observations + "
                     "checks), restarts dead apps, and requests a failing `streaming_lag_alert` run when an "
                     "app's lag passes the threshold. Kafka reads are bounded; a tick never blocks on Kafka."))
def streaming_apps_health_sensor(context: SensorEvaluationContext,
                                 streaming_launcher: ResourceParam[StreamingLauncherResource]) -> SensorResult:
    threshold = streaming_launcher.lag_alert_threshold
    p = health_pass(streaming_launcher.launcher(), streaming_launcher.kafka, streaming_launcher.lag_timeout_s,
                    restart_dead=streaming_launcher.restart_dead_apps)
    events: list[Any] = []
    runs: list[RunRequest] = []
    bucket = int(time.time()) // ALERT_DEBOUNCE_S
    for h in p.apps:
        md = {**_status_metadata(h.status), **_lag_metadata(h.lag), "restarted": h.restarted,
              "restart_error": h.restart_error or "", "health_pass_s": round(p.elapsed_s, 3)}
        events.append(AssetObservation(asset_key=_APP_KEYS[h.app.name], metadata=md))
        if h.restarted:
            context.log.warning(f"restarted dead app {h.app.name}: {h.status.detail}")
        if h.lag_exceeds(threshold):
            runs.append(RunRequest(
                run_key=f"lag-alert-{h.app.name}-{bucket}",
                run_config={"ops": {"lag_alert_op": {"config": {"app": h.app.name, "lag": h.lag.total,
                                                                 "threshold": threshold}}}},
                tags={"rdg/app": h.app.name}))
    events.extend(_evaluations(p, threshold))
    context.log.info(f"health pass over {len(p.apps)} apps in {p.elapsed_s:.2f}s; "
                     f"{sum(h.restarted for h in p.apps)} restarted, {len(runs)} lag alerts")
    return SensorResult(run_requests=runs, asset_events=events)


JOBS = [deploy_streaming_apps, scale_streaming_app, stop_streaming_apps, restart_streaming_app, streaming_lag_alert]


def launcher_resource(settings: Settings) -> StreamingLauncherResource:
    """The launcher these settings call for: in production (``RDG_ENV=prod``, i.e. in the cluster)
    the apps are Deployments in ``RDG_K8S_NAMESPACE``; locally they are processes run as the ``app``
    role (not as the admin these definitions act as)."""
    if settings.env == "prod":
        return StreamingLauncherResource(settings, kind="kubernetes", lag_alert_threshold=500_000, lag_timeout_s=5.0)
    return StreamingLauncherResource(switch_role(settings, "app"), kind="local")


def build_defs(launcher: StreamingLauncherResource) -> Definitions:
    """The domain's Definitions around one launcher resource (tests pass their own)."""
    return Definitions(assets=[streaming_apps, *graph_namespace_specs], asset_checks=[streaming_app_health],
                       jobs=JOBS, sensors=[streaming_apps_health_sensor], resources={RESOURCE_KEY: launcher})


def defs(settings: Settings, resources: PlatformResources) -> Definitions:
    """The streaming control domain: app assets, health checks, control jobs and the health sensor."""
    return build_defs(launcher_resource(settings))


__all__ = ["APPS", "GRAPH_KEYS", "JOBS", "RESOURCE_KEY", "StreamingLauncherResource", "app_asset_key", "build_defs",
           "defs", "graph_namespace_key", "launcher_resource"]
