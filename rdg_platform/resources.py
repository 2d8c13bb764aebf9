"""Dagster resources: how assets reach Kafka, Cassandra, the Iceberg catalog and Spark.

Each resource is a ``ConfigurableResource`` whose fields are complete: nothing here reads the
environment or builds settings. :func:`platform_resources` fills them from the :class:`Settings`
that ``definitions.py`` (the entry point) built once, for the environment it names (``RDG_ENV``):

- ``local``: the values of the settings object (the local services by default);
- ``prod``: the endpoints must be given explicitly (a production deploy that silently dials
  127.0.0.1 is the failure this prevents), and they are wired as ``dagster.EnvVar`` so the run
  workers read them from their own environment.

Secrets (SASL, Cassandra and catalog passwords) are ``EnvVar`` whenever the environment supplied them,
in both environments, so their values never appear in the Dagster UI; a secret from the ``RDG_CONFIG``
file is passed as its value (the run worker's environment does not hold it). Every ``EnvVar`` name is
a settings name (``RDG_<SECTION>_<FIELD>``), checked by ``tests/unit/test_definitions.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource, EnvVar
from pydantic import Field, PrivateAttr, SecretStr

from rdg_platform.kafka_client import client_config, security_config
from rdg_platform.lakehouse.catalog import DEFAULT_CATALOG_NAME, CatalogConfig
from rdg_platform.settings import (
    CassandraSettings,
    ErasureSettings,
    KafkaSettings,
    RegistrySettings,
    Settings,
    SettingsError,
)

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyspark.sql import SparkSession

    from rdg_platform.avro import AvroSerde
    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.kv.store import KVStore
    from rdg_platform.model.spec import GraphSpec

# Resource keys, shared by every domain (Definitions.merge requires one object per key).
KAFKA = "kafka"
CASSANDRA = "cassandra"
ICEBERG = "iceberg"
SPARK = "spark"


class KafkaResource(ConfigurableResource):  # type: ignore[misc]
    """Kafka brokers (with their client security) and the Confluent-compatible schema registry."""

    bootstrap_servers: str = Field(description="host:port list (RDG_KAFKA_BOOTSTRAP)")
    schema_registry_url: str = Field(description="registry base URL (RDG_REGISTRY_URL)")
    registry_username: str | None = Field(default=None, description="RDG_REGISTRY_USERNAME")
    registry_password: str | None = Field(default=None, description="RDG_REGISTRY_PASSWORD (EnvVar)")
    security_protocol: str = Field(default="PLAINTEXT", description="RDG_KAFKA_SECURITY_PROTOCOL")
    sasl_mechanism: str | None = Field(default=None, description="RDG_KAFKA_SASL_MECHANISM")
    sasl_username: str | None = Field(default=None, description="RDG_KAFKA_SASL_USERNAME")
    sasl_password: str | None = Field(default=None, description="RDG_KAFKA_SASL_PASSWORD (EnvVar)")
    ssl_ca: str | None = Field(default=None, description="CA certificate path (RDG_KAFKA_SSL_CA)")
    read_timeout_s: float = 60.0
    max_lateness_ms: int | None = Field(
        default=None, description="bound out-of-order producer timestamps to read less (None = exact)")

    def kafka_settings(self) -> KafkaSettings:
        """These fields as the settings section, so clients are configured by the one shared function."""
        return KafkaSettings(
            bootstrap=self.bootstrap_servers, security_protocol=self.security_protocol,  # type: ignore[arg-type]
            sasl_mechanism=self.sasl_mechanism,  # type: ignore[arg-type]
            sasl_username=self.sasl_username,
            sasl_password=SecretStr(self.sasl_password) if self.sasl_password is not None else None,
            ssl_ca=Path(self.ssl_ca) if self.ssl_ca else None)

    def registry_settings(self) -> RegistrySettings:
        """The registry fields as the settings section (the rebuild's Kafka catch-up decodes with it)."""
        return RegistrySettings(url=self.schema_registry_url, username=self.registry_username,
                                password=SecretStr(self.registry_password) if self.registry_password is not None
                                else None)

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka config: ``bootstrap.servers`` plus security (lag reads, admin calls)."""
        return client_config(self.kafka_settings(), **extra)

    def security_config(self) -> dict[str, str]:
        """Only the security part (for readers that take the bootstrap separately)."""
        return security_config(self.kafka_settings())

    def serde(self) -> AvroSerde:
        """The project's AvroSerde against this registry (with its credentials)."""
        from rdg_platform.avro import AvroSerde, SchemaRegistry

        return AvroSerde(SchemaRegistry(self.schema_registry_url, username=self.registry_username,
                                        password=self.registry_password))


class CassandraResource(ConfigurableResource):  # type: ignore[misc]
    """The graph's Cassandra cluster(s), as described by the model spec plus these defaults."""

    contact_points: str = Field(description="comma-separated hosts (RDG_CASSANDRA_CONTACT_POINTS)")
    port: int = Field(default=9042, description="RDG_CASSANDRA_PORT")
    local_dc: str = Field(default="datacenter1", description="RDG_CASSANDRA_LOCAL_DC")
    keyspace: str = Field(default="rdg", description="default keyspace of the namespaces (RDG_CASSANDRA_KEYSPACE)")
    username: str | None = Field(default=None, description="RDG_CASSANDRA_USERNAME")
    password: str | None = Field(default=None, description="RDG_CASSANDRA_PASSWORD (EnvVar)")
    ssl_ca: str | None = Field(default=None, description="CA certificate path (RDG_CASSANDRA_SSL_CA)")
    spec_path: str | None = Field(default=None, description="model spec YAML (RDG_SPEC); default the packaged one")
    namespace_refresh_s: float | None = Field(
        default=5.0, description="how often stores re-read the blue/green pointer (RDG_CASSANDRA_NAMESPACE_REFRESH_S)")
    fence_key: str | None = Field(default=None, description="RDG_ERASURE_FENCE_KEY (EnvVar): writers honour erasures")
    fence_refresh_s: float = Field(default=2.0, description="RDG_ERASURE_FENCE_REFRESH_S")
    fence_ttl_s: int = Field(default=2_592_000, description="RDG_ERASURE_FENCE_TTL_S")

    _spec: Any = PrivateAttr(default=None)

    def hosts(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.contact_points.split(",") if p.strip())

    def spec(self) -> GraphSpec:
        """The model spec, with these contact points, port, DC and keyspace where it names none."""
        if self._spec is None:
            from rdg_platform.model.spec import SpecDefaults, load_spec

            self._spec = load_spec(self.spec_path, SpecDefaults(keyspace=self.keyspace, contact_points=self.hosts(),
                                                                port=self.port, local_dc=self.local_dc))
        return self._spec  # type: ignore[no-any-return]

    def cassandra_settings(self) -> CassandraSettings:
        """These fields as the settings section: what the KV layer and Spark's executors log in with."""
        return CassandraSettings(
            contact_points=list(self.hosts()), port=self.port, local_dc=self.local_dc, keyspace=self.keyspace,
            username=self.username, password=SecretStr(self.password) if self.password is not None else None,
            ssl_ca=Path(self.ssl_ca) if self.ssl_ca else None, namespace_refresh_s=self.namespace_refresh_s)

    def kv(self) -> KVStore:
        """KV layer for the spec's clusters (caller closes it)."""
        from rdg_platform.kv.store import KVStore

        return KVStore.from_spec(self.spec(), self.cassandra_settings())

    def erasure_settings(self) -> ErasureSettings:
        """The erasure fence's settings (key, refresh, TTL) as the settings section."""
        return ErasureSettings(fence_key=SecretStr(self.fence_key) if self.fence_key else None,
                               fence_refresh_s=self.fence_refresh_s, fence_ttl_s=self.fence_ttl_s)

    def graph_store(self, writer: bool = True) -> GraphStore:
        """Graph store following the blue/green pointer every ``namespace_refresh_s`` (caller closes it).
        A ``writer`` store honours the erasure fence (and needs its key: FenceKeyMissing otherwise)."""
        from rdg_platform.kv.graph_store import GraphStore

        return GraphStore.from_spec(self.spec(), self.cassandra_settings(),
                                    erasure=self.erasure_settings() if writer else None)


class IcebergCatalogResource(ConfigurableResource):  # type: ignore[misc]
    """The Iceberg SQL catalog shared by pyiceberg, Spark and dbt.

    Local: SQLite at ``<state_dir>/iceberg/catalog.db``, warehouse ``<state_dir>/iceberg/warehouse``.
    Production: ``uri=postgresql+psycopg2://host/db`` with ``user``/``password`` and an object-store
    warehouse.
    """

    catalog_name: str = DEFAULT_CATALOG_NAME
    uri: str = Field(description="SQLAlchemy URL of the catalog database (RDG_ICEBERG_CATALOG_URI)")
    warehouse: str = Field(description="file:// or s3:// root of table data (RDG_ICEBERG_WAREHOUSE)")
    user: str | None = Field(default=None, description="RDG_ICEBERG_CATALOG_USER")
    password: str | None = Field(default=None, description="RDG_ICEBERG_CATALOG_PASSWORD (EnvVar)")
    properties: dict[str, str] = Field(default_factory=dict, description="pyiceberg/Spark FileIO properties")
    s3_endpoint: str | None = Field(default=None, description="s3:// warehouse: endpoint URL (RDG_S3_ENDPOINT)")
    s3_access_key_id: str | None = Field(default=None, description="RDG_S3_ACCESS_KEY_ID")
    s3_secret_access_key: str | None = Field(default=None, description="RDG_S3_SECRET_ACCESS_KEY (EnvVar)")
    s3_region: str | None = Field(default=None, description="RDG_S3_REGION")
    s3_path_style_access: bool | None = Field(default=None, description="RDG_S3_PATH_STYLE_ACCESS")
    archive_namespace: str = "archive"
    retention_days: int | None = Field(
        default=None, description="archive hours older than this are dropped (None: kept forever); "
                                  "platform_resources sets the spec's archive.retention_days")
    snapshots_to_keep: int = 5
    snapshot_min_age_minutes: int = Field(default=60, description="never expire snapshots younger than this")

    def config(self) -> CatalogConfig:
        return CatalogConfig(name=self.catalog_name, uri=self.uri, warehouse=self.warehouse, user=self.user,
                             password=self.password, properties=dict(self.properties), s3_endpoint=self.s3_endpoint,
                             s3_access_key_id=self.s3_access_key_id, s3_secret_access_key=self.s3_secret_access_key,
                             s3_region=self.s3_region, s3_path_style_access=self.s3_path_style_access)

    def catalog(self) -> SqlCatalog:
        return self.config().load()


class SparkResource(ConfigurableResource):  # type: ignore[misc]
    """Spark for the rebuild job: ``local[N]`` or a cluster URL (``RDG_SPARK_MASTER``)."""

    master: str = Field(default="local[2]", description="RDG_SPARK_MASTER")
    app_name: str = "rdg-lakehouse"
    driver_memory: str = "1g"
    shuffle_partitions: int = 4
    jars_dir: str = Field(description="where the Spark jars are fetched (<cache_dir>/jars/spark)")
    conf: dict[str, str] = Field(default_factory=dict, description="extra spark.* settings")

    def session(self, catalog: CatalogConfig, cassandra: CassandraResource) -> SparkSession:
        from rdg_platform.lakehouse.spark import SparkConfig, build_spark_session, ensure_spark_jars

        cfg = SparkConfig(master=self.master, app_name=self.app_name, driver_memory=self.driver_memory,
                          shuffle_partitions=self.shuffle_partitions, cassandra_host=cassandra.hosts()[0],
                          cassandra_port=cassandra.port, cassandra_username=cassandra.username,
                          cassandra_password=cassandra.password, extra=dict(self.conf))
        return build_spark_session(cfg, catalog, ensure_spark_jars(Path(self.jars_dir)))


# ------------------------------------------------------------------------------------------ wiring
def _secret(s: Settings, name: str, value: SecretStr | None) -> str | EnvVar | None:
    """A secret as ``EnvVar(name)`` when the environment supplied it, else its value (or None)."""
    if value is None:
        return None
    return EnvVar(name) if s.sources().get(name) == "env" else value.get_secret_value()


def _endpoint(s: Settings, name: str, value: str) -> str | EnvVar:
    """An endpoint: in prod ``EnvVar(name)`` when the environment supplied it, else its value."""
    return EnvVar(name) if s.env == "prod" and s.sources().get(name) == "env" else value


# In production these must be set explicitly; their local defaults point at this machine.
PROD_REQUIRED: tuple[str, ...] = ("RDG_KAFKA_BOOTSTRAP", "RDG_REGISTRY_URL", "RDG_CASSANDRA_CONTACT_POINTS",
                                  "RDG_ICEBERG_CATALOG_URI", "RDG_ICEBERG_WAREHOUSE", "RDG_SPARK_MASTER")


def check_prod(s: Settings) -> None:
    """Fail (naming the variables) when a production setting still has its local default."""
    src = s.sources()
    missing = [n for n in PROD_REQUIRED if src.get(n, "default") == "default"]
    if missing:
        raise SettingsError(f"RDG_ENV=prod needs {', '.join(missing)} set (their defaults point at the local "
                            "services)")


def local_catalog(s: Settings) -> CatalogConfig:
    """The local SQLite catalog and file warehouse under the state directory."""
    return CatalogConfig.local(s.state_dir / "iceberg")


@dataclass(frozen=True)
class PlatformResources:
    """The resources shared by the domains. Built once per Definitions and handed to every domain:
    ``Definitions.merge`` accepts a key twice only when it is the same object."""

    kafka: KafkaResource
    cassandra: CassandraResource
    iceberg: IcebergCatalogResource
    spark: SparkResource

    def select(self, *keys: str) -> dict[str, ConfigurableResource]:
        """The named resources, keyed as the assets' parameters name them."""
        every: dict[str, ConfigurableResource] = {KAFKA: self.kafka, CASSANDRA: self.cassandra,
                                                  ICEBERG: self.iceberg, SPARK: self.spark}
        return {k: every[k] for k in keys}


def platform_resources(s: Settings) -> PlatformResources:
    """The shared resources (``kafka``, ``cassandra``, ``iceberg``, ``spark``) for ``s.env``."""
    if s.env == "prod":
        check_prod(s)
    k, c, i = s.kafka, s.cassandra, s.iceberg
    local = local_catalog(s)
    return PlatformResources(
        kafka=KafkaResource(
            bootstrap_servers=_endpoint(s, "RDG_KAFKA_BOOTSTRAP", k.bootstrap_servers),
            schema_registry_url=_endpoint(s, "RDG_REGISTRY_URL", s.registry.base_url),
            registry_username=s.registry.username,
            registry_password=_secret(s, "RDG_REGISTRY_PASSWORD", s.registry.password),
            security_protocol=k.security_protocol, sasl_mechanism=k.sasl_mechanism,
            sasl_username=k.sasl_username, sasl_password=_secret(s, "RDG_KAFKA_SASL_PASSWORD", k.sasl_password),
            ssl_ca=str(k.ssl_ca) if k.ssl_ca else None),
        cassandra=CassandraResource(
            contact_points=_endpoint(s, "RDG_CASSANDRA_CONTACT_POINTS", ",".join(c.hosts)),
            port=c.port, local_dc=c.local_dc, keyspace=c.keyspace, username=c.username,
            password=_secret(s, "RDG_CASSANDRA_PASSWORD", c.password), ssl_ca=str(c.ssl_ca) if c.ssl_ca else None,
            spec_path=str(s.spec) if s.spec else None, namespace_refresh_s=c.namespace_refresh_s,
            fence_key=_secret(s, "RDG_ERASURE_FENCE_KEY", s.erasure.fence_key),
            fence_refresh_s=s.erasure.fence_refresh_s, fence_ttl_s=s.erasure.fence_ttl_s),
        iceberg=IcebergCatalogResource(
            uri=_endpoint(s, "RDG_ICEBERG_CATALOG_URI", i.catalog_uri or local.uri),
            warehouse=_endpoint(s, "RDG_ICEBERG_WAREHOUSE", i.warehouse or local.warehouse),
            user=i.catalog_user, password=_secret(s, "RDG_ICEBERG_CATALOG_PASSWORD", i.catalog_password),
            s3_endpoint=s.s3.endpoint, s3_access_key_id=s.s3.access_key_id,
            s3_secret_access_key=_secret(s, "RDG_S3_SECRET_ACCESS_KEY", s.s3.secret_access_key),
            s3_region=s.s3.region, s3_path_style_access=s.s3.path_style_access,
            retention_days=s.load_spec().archive.retention_days),
        spark=SparkResource(master=_endpoint(s, "RDG_SPARK_MASTER", s.spark.master),
                            jars_dir=str(s.cache_dir / "jars" / "spark")),
    )
