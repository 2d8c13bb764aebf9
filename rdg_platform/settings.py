"""The one typed settings object of rdg-platform.

Every setting has exactly one name, ``RDG_<SECTION>_<FIELD>`` (or ``RDG_<FIELD>`` for the few
top-level ones), and that name is used everywhere: in the environment, in the optional YAML file named
by ``RDG_CONFIG`` (flat, the same names as keys; the environment wins over it), in
``deploy/values/*.yaml`` and in every Dagster ``EnvVar``. The names fixed by ``DESIGN.md`` ("Settings")
are a subset of these.

Only the entry points build a :class:`Settings` (the CLI, the streaming apps' ``main``,
``definitions.py`` and the API's app factory, through :func:`load_settings`); everything below them
receives the settings, or the piece it needs, as an argument. This module is the only place that reads
the process environment (a unit test enforces that), and child processes get their environment from
:meth:`Settings.child_env` instead of inheriting a mutated ``os.environ``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

if TYPE_CHECKING:
    from rdg_platform.model.spec import GraphSpec, SpecDefaults

PREFIX = "RDG_"
CONFIG_FILE_VAR = "RDG_CONFIG"
Source = Literal["default", "file", "env", "init"]
SecretValue = SecretStr | None


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable and what it must be."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """How clients reach Kafka, and where the local broker listens."""

    bootstrap: str | None = Field(None, description="host:port list; default: the local broker")
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        "SASL_PLAINTEXT", description="client security protocol (the local broker requires SASL)")
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] | None = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*")
    sasl_username: str | None = Field(None, description="SASL principal")
    sasl_password: SecretValue = Field(None, description="SASL password")
    ssl_ca: Path | None = Field(None, description="CA certificate (PEM) for SSL/SASL_SSL")
    bind_host: str = Field("127.0.0.1", description="local broker: listen address")
    port: int = Field(9092, ge=1, le=65535, description="local broker: client port")
    controller_port: int = Field(9093, ge=1, le=65535, description="local broker: KRaft controller port")
    ssl_port: int | None = Field(
        None, ge=1, le=65535, description="local broker: also listen SASL_SSL here (TLS from a CA generated under "
                                          "<state_dir>/secrets/kafka-tls; clients set RDG_KAFKA_SSL_CA to its ca.crt)")

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"{connect_host(self.bind_host)}:{self.port}"


class RegistrySettings(_Section):
    """The Confluent-compatible schema registry (Apicurio's ccompat API locally)."""

    url: str | None = Field(None, description="base URL of the Confluent-compatible API; default: local")
    username: str | None = Field(None, description="registry user")
    password: SecretValue = Field(None, description="registry password")
    bind_host: str = Field("127.0.0.1", description="local registry: listen address")
    port: int = Field(8081, ge=1, le=65535, description="local registry: HTTP port")

    @property
    def base_url(self) -> str:
        return self.url or f"http://{connect_host(self.bind_host)}:{self.port}/apis/ccompat/v7"


class CassandraSettings(_Section):
    """How clients reach Cassandra, and where the local node listens."""

    contact_points: Annotated[CsvList, Field(description="comma-separated hosts; default: the local node")] = []
    port: int = Field(9042, ge=1, le=65535, description="native protocol port (clients and local node)")
    local_dc: str = Field("datacenter1", description="the driver's local data centre")
    username: str | None = Field(None, description="Cassandra role")
    password: SecretValue = Field(None, description="Cassandra password")
    ssl_ca: Path | None = Field(None, description="CA certificate (PEM) for client TLS")
    keyspace: str = Field("rdg", pattern=r"^[a-z][a-z0-9_]{0,47}$", description="default keyspace of the graph")
    bind_host: str = Field("127.0.0.1", description="local node: listen address")
    storage_port: int = Field(7000, ge=1, le=65535, description="local node: inter-node port")
    jmx_port: int = Field(7199, ge=1, le=65535, description="local node: JMX port")
    namespace_refresh_s: float | None = Field(
        5.0, description="how often readers and writers re-read the blue/green pointer (empty: never)")

    _split = field_validator("contact_points", mode="before")(_split_csv)

    @field_validator("namespace_refresh_s", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("off", "none", "disabled") else v

    @property
    def hosts(self) -> list[str]:
        return list(self.contact_points) or [connect_host(self.bind_host)]


class ApiSettings(_Section):
    """The graph query service (server side) and how clients reach it."""

    url: str | None = Field(None, description="clients: base URL of the API; default: the local server")
    token: SecretValue = Field(None, description="clients: bearer token")
    bind_host: str = Field("127.0.0.1", description="server: listen address")
    port: int = Field(8000, ge=1, le=65535, description="server: port")
    gc_freeze: bool = Field(True, description="server: freeze the startup heap out of the cyclic GC")
    node_cache_ttl_s: float = Field(1.0, ge=0, le=60, description="server: how long a node read stays in the "
                                    "node cache, i.e. how stale a node answer may be; 0: no cache")
    node_cache_size: int = Field(50_000, ge=0, description="server: nodes the cache holds at most (LRU); 0: no cache")
    workers: int = Field(1, ge=1, le=64, description="server: worker processes of `rdg serve` (one event loop each)")
    tokens: dict[str, list[str]] | None = Field(
        None, description="server: JSON {sha256 hex of a bearer token: [scopes]} (read, admin); "
                          "default: the local credentials' reader and admin tokens")
    page_token_key: SecretValue = Field(
        None, description="server: HMAC key signing page tokens; default: the local credentials' key")
    max_edges_per_request: int = Field(
        100_000, ge=1, description="server: budget of edges one request may read (past it: truncated)")
    request_deadline_ms: int = Field(
        2_000, ge=1, description="server: deadline of one request (past it: truncated)")
    cors_origins: Annotated[CsvList, Field(description="server: comma-separated CORS origins; empty: CORS off")] = []

    _split_origins = field_validator("cors_origins", mode="before")(_split_csv)

    @property
    def base_url(self) -> str:
        return self.url or f"http://{connect_host(self.bind_host)}:{self.port}"


class IcebergSettings(_Section):
    """The Iceberg SQL catalog (SQLite by default, Postgres in production) and its warehouse."""

    catalog_uri: str | None = Field(None, description="SQLAlchemy URI; default: SQLite under the state dir")
    catalog_user: str | None = Field(None, description="catalog database user (Postgres)")
    catalog_password: SecretValue = Field(None, description="catalog database password")
    warehouse: str | None = Field(None, description="warehouse location; default: file:// under the state dir")


class S3Settings(_Section):
    """The S3-compatible object store of an ``s3://`` warehouse (S3Proxy locally, S3 in production)."""

    endpoint: str | None = Field(None, description="S3 endpoint URL; default: AWS's")
    access_key_id: str | None = Field(None, description="S3 access key id")
    secret_access_key: SecretValue = Field(None, description="S3 secret access key")
    region: str | None = Field(None, description="S3 region (set it for any non-AWS endpoint)")
    path_style_access: bool | None = Field(None, description="path-style addressing (S3Proxy, MinIO-likes)")
    bind_host: str = Field("127.0.0.1", description="local S3Proxy: listen address")
    port: int = Field(8333, ge=1, le=65535, description="local S3Proxy: port")


class SparkSettings(_Section):
    """Where Spark jobs (the namespace rebuild) run."""

    master: str = Field("local[2]", description="Spark master URL (local[N] or spark://host:port)")
    bind_host: str = Field("127.0.0.1", description="local standalone cluster: listen address")
    master_port: int = Field(7077, ge=1, le=65535, description="local standalone cluster: master port")
    master_webui_port: int = Field(8480, ge=1, le=65535, description="local standalone cluster: master web UI")
    worker_port: int = Field(7078, ge=1, le=65535, description="local standalone cluster: worker port")
    worker_webui_port: int = Field(8481, ge=1, le=65535, description="local standalone cluster: worker web UI")
    worker_cores: int = Field(2, ge=1, description="local standalone cluster: worker cores")
    worker_memory: str = Field("2g", pattern=r"^\d+[mg]$", description="local standalone cluster: worker memory")


class StreamingSettings(_Section):
    """Knobs of the processors and sinks."""

    dedup_window_s: float = Field(
        60.0, gt=0, description="processor dedup window: a key's first update is emitted at once, later "
        "ones fold into one trailing emission per window; a key that keeps changing gets a window twice "
        "as long after each trailing emission, up to RDG_STREAMING_DEDUP_MAX_WINDOW_S")
    dedup_max_window_s: float | None = Field(
        None, gt=0, description="largest dedup window of a key that keeps changing (the bound on property "
        "staleness); default 4 × the dedup window; equal to it: fixed windows")
    max_clock_skew_s: float = Field(
        300.0, ge=0, description="how far an event time may lie ahead of the reference clock (processing "
        "time; the archived Kafka timestamp in backfill/rebuild) before the event is dead-lettered")
    processor_commit_s: float | None = Field(
        None, gt=0, description="processor checkpoint interval (each checkpoint emits every pending dedup "
        "change); default the largest dedup window")
    sink_commit_s: float = Field(1.0, gt=0, description="sink checkpoint interval (how often Cassandra is written)")
    sink_groups: dict[str, list[str]] | None = Field(
        None, description="JSON: sink consumer group -> namespaces; default nodes / member / activity edges")
    group_prefix: str = Field("rdg", pattern=r"^[A-Za-z0-9._-]{1,64}$", description="consumer group prefix")
    offset_reset: Literal["earliest", "latest"] = Field("earliest", description="where a new consumer group starts")
    sink_chunk: int = Field(500, ge=1, description="rows per Cassandra write chunk")
    sink_retries: int = Field(3, ge=0, description="write retries before backpressure")
    sink_backpressure_s: float = Field(5.0, gt=0, description="pause after a failed write before retrying")
    metrics_bind_host: str = Field("127.0.0.1", description="apps' Prometheus endpoints: listen address")
    metrics_base_port: int = Field(9300, ge=1, le=65535, description="apps' Prometheus ports, one per app upwards")

    @model_validator(mode="after")
    def _max_window_covers_window(self) -> StreamingSettings:
        if self.dedup_max_window_s is not None and self.dedup_max_window_s < self.dedup_window_s:
            raise ValueError("RDG_STREAMING_DEDUP_MAX_WINDOW_S must be >= RDG_STREAMING_DEDUP_WINDOW_S")
        return self

    @property
    def dedup_window_cap_s(self) -> float:
        """The largest dedup window (``dedup_max_window_s``, default 4 × ``dedup_window_s``)."""
        return self.dedup_max_window_s if self.dedup_max_window_s is not None else 4 * self.dedup_window_s

    @property
    def processor_commit_interval_s(self) -> float:
        return self.processor_commit_s or max(1.0, self.dedup_window_cap_s)

    @property
    def max_clock_skew_ms(self) -> int:
        return int(self.max_clock_skew_s * 1000)


class K8sSettings(_Section):
    """Where the streaming apps and the API run on Kubernetes (Dagster's launcher, ``rdg k8s deploy``)."""

    namespace: str = Field("rdg", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="namespace")
    image: str = Field("rdg-platform:latest", description="the platform image the Deployments run")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="image pull policy")
    kubeconfig: Path | None = Field(None, description="kubeconfig; default: in-cluster, else ~/.kube/config")
    apiserver_port: int = Field(16443, ge=1, le=65535, description="local control plane: kube-apiserver port")
    etcd_port: int = Field(12379, ge=1, le=65535, description="local control plane: etcd client port")
    etcd_peer_port: int = Field(12380, ge=1, le=65535, description="local control plane: etcd peer port")
    controller_manager_port: int = Field(10357, ge=1, le=65535,
                                         description="local control plane: controller-manager health port")
    scheduler_port: int = Field(10359, ge=1, le=65535, description="local control plane: scheduler health port")
    kwok_port: int = Field(10347, ge=1, le=65535, description="local control plane: kwok health port")


class DagsterSettings(_Section):
    """The local Dagster webserver."""

    bind_host: str = Field("127.0.0.1", description="webserver listen address")
    port: int = Field(3000, ge=1, le=65535, description="webserver port")
    schedules_running: bool = Field(
        True, description="the schedules and sensors of normal operation (archive, quality, maintenance, "
                          "streaming health) start RUNNING in a new Dagster instance (0: STOPPED)")
    archive_start: str | None = Field(
        None, pattern=r"^\d{4}-\d{2}-\d{2}(-\d{2}:00)?$",
        description="first hourly archive partition (YYYY-MM-DD or YYYY-MM-DD-HH:00, UTC); default: the start "
                    "of the archive retention on first setup, remembered in <state_dir>/dagster/archive_start")
    dlq_alert_threshold: int = Field(
        1000, ge=0, description="the dlq_volume check fails when a reason has more dead letters waiting")


class ErasureSettings(_Section):
    """Member erasure (``rdg erase``, ``POST /v1/erasures``, the Dagster erasure job)."""

    archive_grace_s: float = Field(
        604_800, ge=0, description="how long archive snapshots that still hold an erased member's rows are "
                                   "kept (time travel, rollback) before they are expired and their files deleted")
    fence_key: SecretValue = Field(
        None, description="HMAC key of the erasure fence (erased node ids are kept only as keyed hashes); every "
                          "graph writer and the erasure need the same key; default: the local credentials' key")
    fence_refresh_s: float = Field(
        2.0, gt=0, le=60, description="writers re-read the erasure fence this often; an erasure waits this long "
                                      "(plus 1 s) after fencing before it deletes, so no writer misses it")
    fence_ttl_s: int = Field(
        2_592_000, ge=3600, description="how long an erased node stays fenced (writes older than its erasure "
                                        "dropped); must outlast Kafka retention and any replay source")


class HistorySettings(_Section):
    """The graph history in Iceberg (``as_of`` reads, ``include_expired``, the explorer's time slider)."""

    retention_days: int = Field(
        400, ge=1, description="history rows (graph records derived from the source archive) older than this are "
                               "dropped; must be longer than the longest namespace TTL (checked at use)")
    namespace: str = Field("history", pattern=r"^[a-z][a-z0-9_]{0,47}$",
                           description="Iceberg namespace of the history tables (history.node_<type>, edge_<type>)")
    cache_s: float = Field(5.0, ge=0, description="API: how long a loaded history table's metadata is reused "
                                                  "before the catalog is asked again")


def connect_host(bind_host: str) -> str:
    """The address a local client dials for a server bound to ``bind_host`` (wildcards -> loopback)."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host


SECTIONS: dict[str, type[_Section]] = {
    "kafka": KafkaSettings,
    "registry": RegistrySettings,
    "cassandra": CassandraSettings,
    "api": ApiSettings,
    "iceberg": IcebergSettings,
    "s3": S3Settings,
    "spark": SparkSettings,
    "streaming": StreamingSettings,
    "k8s": K8sSettings,
    "dagster": DagsterSettings,
    "erasure": ErasureSettings,
    "history": HistorySettings,
}


class _MappingSource(EnvSettingsSource):
    """Settings from a flat mapping of ``RDG_*`` names: the environment given to :func:`load_settings`
    or the ``RDG_CONFIG`` YAML file (pydantic-settings' own env parsing, on a mapping we choose)."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, str]) -> None:
        self._values = {k.lower(): v for k, v in values.items() if k.upper().startswith(PREFIX)}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._values


# What load_settings() is reading right now: (environment, file values). A ContextVar, because
# pydantic-settings asks the class (not the call) for its sources.
_INPUTS: ContextVar[tuple[Mapping[str, str], Mapping[str, str]]] = ContextVar("rdg_settings_inputs")


class Settings(BaseSettings):
    """Everything that differs between a laptop, CI and production. See the module docstring."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_nested_delimiter="_", env_nested_max_split=1, case_sensitive=False,
        extra="ignore", frozen=True, env_ignore_empty=True)

    state_dir: Path = Field(Path.home() / ".rdg", description="data, logs, pid files, catalog, Dagster home")
    cache_dir: Path = Field(Path.home() / ".cache" / "rdg-platform", description="fetched jars, built binaries, venv")
    env: Literal["local", "prod"] = Field("local", description="which Dagster resources definitions.py wires")
    spec: Path | None = Field(None, description="graph model spec YAML; default: the packaged one")
    topics_file: Path | None = Field(None, description="topic layout overrides YAML")
    dbt_project_dir: Path | None = Field(None, description="dbt project; default: dbt/ in the source tree")
    maven_repo_local: Path | None = Field(None, description="Maven local repository; default ~/.m2/repository")

    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    cassandra: CassandraSettings = CassandraSettings()
    api: ApiSettings = ApiSettings()
    iceberg: IcebergSettings = IcebergSettings()
    s3: S3Settings = S3Settings()
    spark: SparkSettings = SparkSettings()
    streaming: StreamingSettings = StreamingSettings()
    k8s: K8sSettings = K8sSettings()
    dagster: DagsterSettings = DagsterSettings()
    erasure: ErasureSettings = ErasureSettings()
    history: HistorySettings = HistorySettings()

    _file_values: dict[str, str] = PrivateAttr(default_factory=dict)
    _env_names: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ, file_values = _INPUTS.get(({}, {}))
        return init_settings, _MappingSource(settings_cls, environ), _MappingSource(settings_cls, file_values)

    # -- derived -------------------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def spec_defaults(self) -> SpecDefaults:
        """What the model spec takes from settings where it is silent (keyspace, contact points)."""
        from rdg_platform.model.spec import SpecDefaults

        c = self.cassandra
        return SpecDefaults(keyspace=c.keyspace, contact_points=tuple(c.hosts), port=c.port, local_dc=c.local_dc)

    def load_spec(self) -> GraphSpec:
        """The graph model spec (``RDG_SPEC`` or the packaged one) with these settings applied."""
        from rdg_platform.model.spec import load_spec

        return load_spec(self.spec, self.spec_defaults())

    # -- introspection ---------------------------------------------------------------------------
    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a child process (an app, a service, Dagster): ``base`` (default: the
        non-RDG part of this process's environment, e.g. PATH and JAVA_HOME) plus every setting under
        its ``RDG_*`` name, so the child rebuilds exactly these settings."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(PREFIX)}
        for name, value, _field in self.items(reveal=True):
            if value is not None:
                env[name] = value
        return env

    def items(self, reveal: bool = False) -> Iterator[tuple[str, str | None, FieldInfo]]:
        """Every setting as ``(RDG_NAME, value as its variable would spell it, field)``; secrets are
        ``********`` unless ``reveal``."""
        for name, field, value in _leaves(self):
            yield name, _render(value, reveal), field

    def sources(self) -> dict[str, Source]:
        """Where each setting's value came from: ``env``, ``file`` (``RDG_CONFIG``) or ``default``."""
        out: dict[str, Source] = {}
        env_keys = self._env_names
        file_keys = {k.upper() for k in self._file_values}
        for name, _field, _value in _leaves(self):
            out[name] = "env" if name in env_keys else "file" if name in file_keys else "default"
        return out


def _leaves(s: Settings) -> Iterator[tuple[str, FieldInfo, Any]]:
    for fname, field in Settings.model_fields.items():
        value = getattr(s, fname)
        if isinstance(value, _Section):
            for sub, subfield in type(value).model_fields.items():
                yield f"{PREFIX}{fname.upper()}_{sub.upper()}", subfield, getattr(value, sub)
        else:
            yield f"{PREFIX}{fname.upper()}", field, value


def _render(value: Any, reveal: bool) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value() if reveal else "********"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def iter_fields(cls: type[Settings]) -> Iterator[tuple[str, FieldInfo]]:
    """Every setting's ``RDG_*`` name and pydantic field, in model order (no instance needed)."""
    for fname, field in cls.model_fields.items():
        section = SECTIONS.get(fname)
        if section is None:
            yield f"{PREFIX}{fname.upper()}", field
        else:
            for sub, subfield in section.model_fields.items():
                yield f"{PREFIX}{fname.upper()}_{sub.upper()}", subfield


def setting_names() -> list[str]:
    """Every ``RDG_*`` name the model defines, in model order (the README table lists these)."""
    return [name for name, _f in iter_fields(Settings)]


def _read_file(path: Path) -> dict[str, str]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise SettingsError(f"{CONFIG_FILE_VAR}={path}: no such file") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"{CONFIG_FILE_VAR}={path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{CONFIG_FILE_VAR}={path}: must be a mapping of RDG_* names to values")
    known = set(setting_names())
    out: dict[str, str] = {}
    for k, v in raw.items():
        key = str(k).upper()
        if key not in known:
            raise SettingsError(f"{CONFIG_FILE_VAR}={path}: unknown setting {k!r}")
        if v is None:
            continue
        out[key] = json.dumps(v) if isinstance(v, (dict, list)) and key.endswith("SINK_GROUPS") else (
            ",".join(map(str, v)) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v))
    return out


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from an environment (default: this process's) and its ``RDG_CONFIG`` file.

    Entry points call this once. A bad value raises :class:`SettingsError` naming the variable and
    what it must be. ``overrides`` (section objects or top-level values) win over both; tests use them.
    """
    env = dict(os.environ if environ is None else environ)
    cfg_path = env.get(CONFIG_FILE_VAR)
    file_values = _read_file(Path(cfg_path)) if cfg_path else {}
    token = _INPUTS.set((env, file_values))
    try:
        s = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
    finally:
        _INPUTS.reset(token)
    s._file_values = file_values
    s._env_names = frozenset(k.upper() for k, v in env.items() if v != "" and k.upper().startswith(PREFIX))
    return s


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        name = PREFIX + "_".join(p.upper() for p in loc[:2]) if loc else "settings"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f"={got!r}"
        lines.append(f"{name}{shown}: {err['msg']}")
    return "invalid settings: " + "; ".join(lines)
