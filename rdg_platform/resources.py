"""Dagster resources: how assets reach Kafka, Cassandra, the Iceberg catalog and Spark.

Every field defaults to ``None`` = "take it from :func:`rdg_platform.config.settings` when used", so
nothing reads the environment at import time and the local setup needs no configuration at all.
Production sets the fields in ``definitions.py`` (the one place the environment is chosen), with
``dagster.EnvVar`` for every secret (``*_password``, ``sasl_*``): see :func:`prod_resources`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from dagster import ConfigurableResource, EnvVar
from pydantic import Field, PrivateAttr

from rdg_platform.config import Settings, settings
from rdg_platform.lakehouse.catalog import DEFAULT_CATALOG_NAME, CatalogConfig

if TYPE_CHECKING:
    from cassandra.cluster import Session
    from pyiceberg.catalog.sql import SqlCatalog
    from pyspark.sql import SparkSession

    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.kv.store import KVStore
    from rdg_platform.model.spec import GraphSpec


class KafkaResource(ConfigurableResource):  # type: ignore[misc]
    """Kafka brokers and the Confluent-compatible schema registry of the source topics."""

    bootstrap_servers: str | None = Field(default=None, description="host:port list; default from RDG_* settings")
    schema_registry_url: str | None = Field(default=None, description="Confluent-compatible registry base URL")
    security_protocol: str | None = Field(default=None, description="e.g. SASL_SSL in production")
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(default=None, description="use EnvVar")
    read_timeout_s: float = 60.0
    max_lateness_ms: int | None = Field(
        default=None, description="bound out-of-order producer timestamps to read less (None = exact)")

    def bootstrap(self) -> str:
        return self.bootstrap_servers or settings().kafka_bootstrap

    def registry_url(self) -> str:
        return self.schema_registry_url or settings().registry_url

    def consumer_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {}
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password
        return conf

    def serde(self) -> Any:
        """The project's AvroSerde against this registry."""
        from rdg_platform.avro import AvroSerde

        return AvroSerde(self.registry_url())

    def writer_schema(self, schema_id: int) -> dict[str, Any] | None:
        """The registry's Avro schema for ``schema_id`` (None if unknown); cached per process."""
        return _fetch_schema(self.registry_url(), schema_id)


@cache
def _fetch_schema(registry_url: str, schema_id: int) -> dict[str, Any] | None:
    try:
        resp = httpx.get(f"{registry_url.rstrip('/')}/schemas/ids/{schema_id}", timeout=10.0)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    raw = resp.json().get("schema")
    parsed = json.loads(raw) if isinstance(raw, str) else raw
    return parsed if isinstance(parsed, dict) and parsed.get("type") == "record" else None


class CassandraResource(ConfigurableResource):  # type: ignore[misc]
    """The graph's Cassandra cluster(s), as described by the model spec (plus overrides)."""

    contact_points: str | None = Field(default=None, description="comma-separated hosts; default RDG_HOST")
    port: int | None = None
    keyspace: str | None = Field(default=None, description="default keyspace of the namespaces (RDG_KEYSPACE)")
    spec_path: str | None = Field(default=None, description="model spec YAML; default the packaged one")
    username: str | None = None
    password: str | None = Field(default=None, description="use EnvVar")

    _spec: Any = PrivateAttr(default=None)

    def _settings(self) -> Settings:
        base = settings()
        changes: dict[str, Any] = {}
        if self.keyspace:
            changes["keyspace"] = self.keyspace
        if self.port:
            changes["cassandra_port"] = self.port
        if self.contact_points:
            changes["host"] = self.contact_points.split(",")[0].strip()
        return dataclasses.replace(base, **changes) if changes else base

    def spec(self) -> GraphSpec:
        if self._spec is None:
            from rdg_platform.model.spec import load_spec

            spec = load_spec(self.spec_path, self._settings())
            if self.contact_points and "," in self.contact_points:
                points = tuple(p.strip() for p in self.contact_points.split(",") if p.strip())
                clusters = {n: dataclasses.replace(c, contact_points=points) for n, c in spec.clusters.items()}
                spec = dataclasses.replace(spec, clusters=clusters)
            self._spec = spec
        return self._spec  # type: ignore[no-any-return]

    def kv(self) -> KVStore:
        """KV layer for the spec's clusters. (``username``/``password`` reach Spark's connector; the KV
        layer's ClusterConfig has no auth yet - see the lakehouse report.)"""
        from rdg_platform.kv.store import KVStore

        return KVStore.from_spec(self.spec())

    def graph_store(self) -> GraphStore:
        from rdg_platform.kv.graph_store import GraphStore

        return GraphStore.from_spec(self.spec())

    def session(self, cluster: str = "default") -> Session:
        """A driver session on one of the spec's clusters (caller closes it via ``.cluster.shutdown()``)."""
        from rdg_platform.kv.cluster import ClusterConfig, SessionRegistry

        c = self.spec().clusters[cluster]
        return SessionRegistry({cluster: ClusterConfig(cluster, c.contact_points, c.port, c.local_dc)}).session(cluster)

    def settings_for_spark(self) -> tuple[str, int]:
        s = self._settings()
        return (self.contact_points or s.host), s.cassandra_port


class IcebergCatalogResource(ConfigurableResource):  # type: ignore[misc]
    """The Iceberg SQL catalog shared by pyiceberg and Spark.

    Default: SQLite at ``<state_dir>/iceberg/catalog.db``, warehouse ``<state_dir>/iceberg/warehouse``.
    Production: ``uri=postgresql+psycopg2://host/db`` with ``user``/``password`` (EnvVar) and
    ``warehouse=s3://bucket/path`` with ``properties={"s3.endpoint": ..., "s3.region": ...}``.
    """

    catalog_name: str = DEFAULT_CATALOG_NAME
    uri: str | None = Field(default=None, description="SQLAlchemy URL of the catalog database")
    warehouse: str | None = Field(default=None, description="file:// or s3:// root of table data")
    user: str | None = None
    password: str | None = Field(default=None, description="use EnvVar")
    properties: dict[str, str] = Field(default_factory=dict, description="pyiceberg/Spark FileIO properties")
    archive_namespace: str = "archive"
    retention_days: int = Field(default=30, description="archive hours older than this are dropped")
    snapshots_to_keep: int = 5
    snapshot_min_age_minutes: int = Field(default=60, description="never expire snapshots younger than this")

    def config(self) -> CatalogConfig:
        local = CatalogConfig.local(name=self.catalog_name)
        return CatalogConfig(name=self.catalog_name, uri=self.uri or local.uri,
                             warehouse=self.warehouse or local.warehouse, user=self.user,
                             password=self.password, properties=dict(self.properties))

    def catalog(self) -> SqlCatalog:
        return self.config().load()


class SparkResource(ConfigurableResource):  # type: ignore[misc]
    """Spark for the rebuild job: ``local[*]`` by default, a cluster URL (spark://, k8s://) in prod."""

    master: str = "local[*]"
    app_name: str = "rdg-lakehouse"
    driver_memory: str = "1g"
    shuffle_partitions: int = 4
    jars_dir: str | None = Field(default=None, description="default <cache_dir>/jars/spark (fetched by mvn)")
    conf: dict[str, str] = Field(default_factory=dict, description="extra spark.* settings")

    def jars_path(self) -> Path:
        return Path(self.jars_dir) if self.jars_dir else settings().cache_dir / "jars" / "spark"

    def session(self, catalog: CatalogConfig, cassandra: CassandraResource | None = None) -> SparkSession:
        from rdg_platform.lakehouse.spark import SparkConfig, build_spark_session, ensure_spark_jars

        host, port = cassandra.settings_for_spark() if cassandra is not None else (settings().host,
                                                                                    settings().cassandra_port)
        cfg = SparkConfig(master=self.master, app_name=self.app_name, driver_memory=self.driver_memory,
                          shuffle_partitions=self.shuffle_partitions, cassandra_host=host, cassandra_port=port,
                          cassandra_username=cassandra.username if cassandra else None,
                          cassandra_password=cassandra.password if cassandra else None, extra=dict(self.conf))
        return build_spark_session(cfg, catalog, ensure_spark_jars(self.jars_path()))


def local_resources() -> dict[str, Any]:
    """Resources for the local stack (every value from RDG_* settings when used)."""
    return {"kafka": KafkaResource(), "cassandra": CassandraResource(), "iceberg": IcebergCatalogResource(),
            "spark": SparkResource()}


def prod_resources(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Production wiring: secrets from the environment through EnvVar, never literals."""
    o = dict(overrides or {})
    return {
        "kafka": KafkaResource(bootstrap_servers=EnvVar("RDG_KAFKA_BOOTSTRAP"),
                               schema_registry_url=EnvVar("RDG_REGISTRY_URL"),
                               security_protocol=o.get("kafka_security_protocol", "SASL_SSL"),
                               sasl_mechanism=o.get("kafka_sasl_mechanism", "SCRAM-SHA-512"),
                               sasl_username=EnvVar("RDG_KAFKA_USERNAME"), sasl_password=EnvVar("RDG_KAFKA_PASSWORD")),
        "cassandra": CassandraResource(contact_points=EnvVar("RDG_CASSANDRA_CONTACT_POINTS"),
                                       username=EnvVar("RDG_CASSANDRA_USERNAME"),
                                       password=EnvVar("RDG_CASSANDRA_PASSWORD")),
        "iceberg": IcebergCatalogResource(uri=EnvVar("RDG_ICEBERG_CATALOG_URI"),
                                          warehouse=EnvVar("RDG_ICEBERG_WAREHOUSE"),
                                          user=EnvVar("RDG_ICEBERG_CATALOG_USER"),
                                          password=EnvVar("RDG_ICEBERG_CATALOG_PASSWORD")),
        "spark": SparkResource(master=EnvVar("RDG_SPARK_MASTER")),
    }
