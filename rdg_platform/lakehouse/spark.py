"""Spark: session with the shared Iceberg catalog, and the rebuild of one namespace from the archive.

Jars (Iceberg Spark runtime, Spark Cassandra connector, sqlite-jdbc, postgresql) come from Maven Central through
``deps/maven/spark-pom.xml`` into ``<cache_dir>/jars/spark`` and are added with ``spark.jars``.

Rebuild of namespace N (blue/green):
1. read the archive tables of every topic whose mapping produces N's type (Spark SQL on the shared
   JdbcCatalog), timestamps as epoch millis;
2. ``mapPartitions``: each row -> ``map_event`` (the same code as streaming; side inputs broadcast)
   -> records of N's type -> per-node/edge LWW state (:mod:`rdg_platform.model.lww`);
3. ``reduceByKey``: merge the states (per-property latest event time wins, ``updated_at`` = max);
4. create ``<table>_v<K+1>`` (+ ``_in``) with the namespace's TTL/compaction, and write each state's
   records from the executors with the KV layer's own UPSERT (``USING TIMESTAMP`` = event time,
   ``props = props + ?``) so every cell - each property and ``updated_at`` - gets exactly the write
   time the live path gives it;
5. validate: row count read back through the Spark Cassandra connector == the number of states, and
   the checksum (values + write times) of the new tables; then flip the pointer
   (:mod:`rdg_platform.kv.versions`).

Why the write does not go through the connector's writer: its DataFrame path writes ``INSERT``, and
an INSERT of a non-frozen map replaces the map (a collection tombstone at timestamp-1), which would
erase the older per-property cells; its collection-append ``UPDATE`` path (RDD API) does not add
``USING TIMESTAMP`` at all (TableWriter.queryTemplateUsingUpdate in 3.5.1). Neither can reproduce
per-property LWW write times, so the connector is used for reading/validation and the executors write
through the driver with the exact statements of the live sink.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdg_platform.lakehouse.catalog import ARCHIVE_NAMESPACE, CatalogConfig
from rdg_platform.model.lww import KeyState, lww_states
from rdg_platform.model.mapping import BadEventError, map_event
from rdg_platform.model.spec import GraphSpec, Namespace
from rdg_platform.topology import archive_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from rdg_platform.lakehouse.backfill import SideInputLookup
    from rdg_platform.settings import CassandraSettings

REQUIRED_JAR_PREFIXES = ("iceberg-spark-runtime-3.5_2.12", "spark-cassandra-connector_2.12",
                         "spark-cassandra-connector-driver_2.12", "java-driver-core-shaded", "sqlite-jdbc",
                         "postgresql-", "iceberg-aws-bundle")


class SparkSetupError(RuntimeError):
    """The Spark jars could not be resolved or the session could not start."""


def default_pom() -> Path:
    return Path(__file__).resolve().parents[2] / "deps" / "maven" / "spark-pom.xml"


def spark_jars(jars_dir: Path) -> list[str]:
    return sorted(glob.glob(str(jars_dir / "*.jar")))


def ensure_spark_jars(jars_dir: Path, pom: Path | None = None) -> list[str]:
    """Resolve the Spark jars with ``mvn dependency:copy-dependencies`` unless already present."""
    have = spark_jars(jars_dir)
    names = [os.path.basename(j) for j in have]
    if all(any(n.startswith(p) for n in names) for p in REQUIRED_JAR_PREFIXES):
        return have
    pom = pom or default_pom()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SparkSetupError("mvn not found: install Maven to fetch the Spark jars")
    if not pom.exists():
        raise SparkSetupError(f"{pom} not found")
    jars_dir.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={jars_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SparkSetupError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return spark_jars(jars_dir)


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "rdg-lakehouse"
    driver_memory: str = "1g"
    shuffle_partitions: int = 4
    cassandra_host: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_username: str | None = None
    cassandra_password: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


def runs_on_this_machine(master: str) -> bool:
    """True for ``local[...]`` and for a standalone master on loopback (``spark://127.0.0.1:7077``):
    then the driver binds to 127.0.0.1 and executors run this interpreter (the project's venv)."""
    if master.startswith("local"):
        return True
    host = master.removeprefix("spark://").rsplit(":", 1)[0]
    return master.startswith("spark://") and host in ("127.0.0.1", "localhost")


def build_spark_session(cfg: SparkConfig, catalog: CatalogConfig, jars: list[str]) -> SparkSession:
    """A Spark session with the Iceberg catalog ``catalog.name`` and the Cassandra connector."""
    from pyspark.sql import SparkSession

    b = (SparkSession.builder.master(cfg.master).appName(cfg.app_name)
         .config("spark.jars", ",".join(jars))
         .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions,"
                                         "com.datastax.spark.connector.CassandraSparkExtensions")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.driver.memory", cfg.driver_memory)
         .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.cassandra.connection.host", cfg.cassandra_host)
         .config("spark.cassandra.connection.port", str(cfg.cassandra_port)))
    if runs_on_this_machine(cfg.master):
        # Local mode or a loopback standalone master: stay on loopback (executors connect back to the
        # driver on 127.0.0.1; no other interface is reachable or needed).
        b = b.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        # Python workers must run this interpreter (the venv with the project), not the system python.
        b = b.config("spark.pyspark.python", sys.executable)
    if cfg.cassandra_username:
        b = b.config("spark.cassandra.auth.username", cfg.cassandra_username)
    if cfg.cassandra_password is not None:
        b = b.config("spark.cassandra.auth.password", cfg.cassandra_password)
    for k, v in {**catalog.spark_conf(), **dict(cfg.extra)}.items():
        b = b.config(k, v)
    try:
        spark = b.getOrCreate()
    except Exception as exc:  # py4j/JVM start-up errors carry the cause in their message
        raise SparkSetupError(f"Spark session failed to start: {exc}") from exc
    if runs_on_this_machine(cfg.master):
        # PySpark takes the workers' interpreter from PYSPARK_PYTHON (default ``python3``), not from
        # the builder's conf; the context's attribute is what its RDD functions carry to the JVM, so
        # it is set here instead of mutating this process's environment.
        spark.sparkContext.pythonExec = sys.executable
    spark.sparkContext.setLogLevel("WARN")
    return spark


# ---------------------------------------------------------------------------------------- rebuild
def topics_for(spec: GraphSpec, ns: Namespace) -> list[str]:
    """Source topics whose mapping produces records of ``ns``'s type."""
    return [t for t, m in spec.mappings.items() if any(r.kind == ns.kind and r.type == ns.type for r in m.records)]


def _map_partition(rows: Iterable[Any], spec: GraphSpec, kind: str, type_: str,
                   lookup: SideInputLookup) -> Iterator[tuple[str, KeyState]]:
    """Executor side: archive rows -> LWW states of one namespace, pre-aggregated per partition."""
    states: dict[str, KeyState] = {}
    for row in rows:
        ev = row.asDict()
        topic = ev.pop("kafka_topic")
        ref = ev.pop("kafka_ts", None)  # the ingest time: the mapping's time bound is judged against it
        try:
            recs = map_event(spec, topic, ev, lookup, reference_ms=ref)
        except BadEventError:
            continue
        lww_states((r for r in recs if r.kind == kind and r.type == type_), states)
    yield from states.items()


def _write_partition(states: Iterable[tuple[str, KeyState]], spec: GraphSpec, batch: int,
                     cassandra: CassandraSettings | None) -> Iterator[int]:
    """Executor side: write states through the GraphStore of a spec pointing at the new tables."""
    from rdg_platform.kv.graph_store import GraphStore

    # The new tables, never the live pointer; ``cassandra`` carries the credentials and CA.
    store = GraphStore.from_spec(spec, cassandra, version_refresh_s=None)
    n = 0
    buf = []
    try:
        for _key, st in states:
            buf.extend(st.records())
            n += 1
            if len(buf) >= batch:
                store.write(buf)
                buf = []
        if buf:
            store.write(buf)
    finally:
        store.close()
    yield n


@dataclass
class RebuildResult:
    namespace: str
    version: int
    tables: tuple[str, ...]
    events: int = 0
    keys: int = 0
    rows_read_back: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, tuple[int, str]] = field(default_factory=dict)
    switched: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def archive_frame(spark: SparkSession, catalog: CatalogConfig, topic: str, start_ms: int | None,
                  end_ms: int | None, namespace: str = ARCHIVE_NAMESPACE) -> Any:
    """The archive of ``topic`` as a DataFrame of events (timestamps as epoch ms, like the wire), with
    ``kafka_ts`` (the ingest time, epoch ms) for the mapping's time bound."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    df = spark.table(f"{catalog.name}.{namespace}.{archive_table(topic)}")
    if start_ms is not None:
        df = df.where(F.col("kafka_ts") >= F.timestamp_millis(F.lit(start_ms)))
    if end_ms is not None:
        df = df.where(F.col("kafka_ts") < F.timestamp_millis(F.lit(end_ms)))
    cols = []
    for f in df.schema.fields:
        if f.name in ("kafka_partition", "kafka_offset", "kafka_key", "schema_id"):
            continue
        if isinstance(f.dataType, TimestampType):
            cols.append(F.unix_millis(F.col(f.name)).alias(f.name))
        else:
            cols.append(F.col(f.name))
    return df.select(*cols)


def compute_states(spark: SparkSession, catalog: CatalogConfig, spec: GraphSpec, ns: Namespace,
                   lookup: SideInputLookup, start_ms: int | None = None, end_ms: int | None = None) -> Any:
    """RDD of (dedup_key, KeyState): the namespace's final LWW state computed from the archive."""
    sc = spark.sparkContext
    b_spec = sc.broadcast(spec)
    b_lookup = sc.broadcast(lookup)
    kind, type_ = ns.kind, ns.type
    rdds = []
    for topic in topics_for(spec, ns):
        df = archive_frame(spark, catalog, topic, start_ms, end_ms)
        rdds.append(df.rdd.mapPartitions(
            lambda rows: _map_partition(rows, b_spec.value, kind, type_, b_lookup.value)))
    if not rdds:
        return sc.emptyRDD()
    return sc.union(rdds).reduceByKey(lambda a, b: a.merge(b))


def rebuild_namespace(spark: SparkSession, catalog: CatalogConfig, spec: GraphSpec, namespace: str,
                      lookup: SideInputLookup, *, start_ms: int | None = None, end_ms: int | None = None,
                      switch: bool = True, write_batch: int = 500, cassandra: CassandraSettings | None = None,
                      log: Any = None) -> RebuildResult:
    """Rebuild ``namespace`` into its next version, validate it and (``switch``) make it active.
    ``cassandra`` gives the driver and the executors their credentials and CA (none when None)."""
    from rdg_platform.kv import versions
    from rdg_platform.kv.schema import ensure_schema
    from rdg_platform.kv.store import KVStore

    t0 = time.perf_counter()
    ns = spec.namespaces[namespace]
    kv = KVStore.from_spec(spec, cassandra)
    try:
        session = kv.cluster_session(ns.cluster)
        current = versions.active_version(session, ns)
        version = current.version + 1
        target = versions.versioned(ns, version)
        for tbl_name in target.tables:  # a failed earlier attempt may have left rows behind
            session.execute(f"DROP TABLE IF EXISTS {ns.keyspace}.{tbl_name}")
        ensure_schema(kv, spec, [target])
        res = RebuildResult(namespace, version, target.tables)

        def say(msg: str) -> None:
            if log is not None:
                log(msg)

        t = time.perf_counter()
        states = compute_states(spark, catalog, spec, ns, lookup, start_ms, end_ms).cache()
        res.keys = states.count()
        res.timings["map_reduce_s"] = time.perf_counter() - t
        say(f"{namespace}: {res.keys} nodes/edges computed from the archive; writing {target.table}")
        new_spec = _spec_with(spec, target)
        t = time.perf_counter()
        written = states.mapPartitions(lambda it: _write_partition(it, new_spec, write_batch, cassandra)).sum()
        res.timings["write_s"] = time.perf_counter() - t
        states.unpersist()
        if written != res.keys:
            raise RuntimeError(f"wrote {written} of {res.keys} states")
        t = time.perf_counter()
        for tbl in target.tables:
            n = (spark.read.format("org.apache.spark.sql.cassandra")
                 .options(keyspace=ns.keyspace, table=tbl).load().count())
            res.rows_read_back[tbl] = int(n)
        res.checksums = versions.namespace_checksum(session, target)
        res.timings["validate_s"] = time.perf_counter() - t
        bad = {tbl: n for tbl, n in res.rows_read_back.items() if n != res.keys}
        if ns.kind == "node" and bad:
            raise RuntimeError(f"validation failed: {bad} rows, expected {res.keys}")
        if ns.kind == "edge":
            fwd, rev = target.tables
            if res.rows_read_back[fwd] != res.keys or res.rows_read_back[rev] != res.keys:
                raise RuntimeError(f"validation failed: {res.rows_read_back} rows, expected {res.keys}")
        say(f"{namespace}: validated {res.rows_read_back} rows, checksum {res.checksums}")
        if switch:
            versions.switch_version(session, ns, version, res.keys, res.checksums[target.table][1])
            res.switched = True
            say(f"{namespace}: switched from {current.table} to {target.table}")
        res.seconds = time.perf_counter() - t0
        return res
    finally:
        kv.close()


def _spec_with(spec: GraphSpec, ns: Namespace) -> GraphSpec:
    import dataclasses

    return dataclasses.replace(spec, namespaces={**spec.namespaces, ns.name: ns})
