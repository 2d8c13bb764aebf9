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
5. catch up (with a :class:`CatchUp`): replay the namespace's source topics from Kafka, from the
   offsets the last archived hour recorded in its snapshot summary (the hour's scan start per
   partition: every record with a later timestamp lies at or after it), through the same mapping, into
   the new tables, in rounds up to the high watermark read at each round's start, until a round is
   small. Replaying records the archive already holds is harmless: writes are idempotent and LWW by
   event time. Side-input topics are replayed first each round, into the lookup.
6. validate against the live namespace (with a :class:`CatchUp`), in rounds: one more catch-up round,
   then both versions read row by row over the same key range, each row's digest (values and write
   times) and newest write time per side. Traffic does not stop, and the live path lags the topics
   (a folded change leaves a processor at the latest when its dedup window closes, then the sink
   commits), while the replay folds at once; so rows are compared at a cut ``C = round start -
   live_lag_s``: a row whose newest write on both sides is at or before C is *settled* (both paths
   have had every source record that touches it, for records ingested at about their event time)
   and must be equal on both sides; a row written
   after C on either side is *in flight*: not compared, and carried into the new version by the
   replay, which keeps running through the switch. The rebuild may switch after a round that
   compared settled rows, found none differing, and followed a small replay round. A settled row
   that differs is retried (a record arriving long after its event time can make it differ until
   both paths have it); one that differs with unchanged contents on both sides in two consecutive
   rounds is a real disagreement. Rounds repeat until a round allows the switch or
   ``validate_timeout_s`` passes (then the rebuild fails naming the differing rows' count and a few
   keys, and nothing switches). Without a :class:`CatchUp` (an archive-only rebuild of a past range)
   the check is the row count read back through the Spark Cassandra connector against the number of
   states.
7. switch the pointer (:mod:`rdg_platform.kv.versions`), then keep catching up for ``settle_s`` (at
   least the readers' pointer refresh interval): a sink still writing the old version during that
   interval loses nothing, because its records reach the new version through the replay.

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
    from cassandra.cluster import Session
    from confluent_kafka import Consumer
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession

    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.lakehouse.backfill import SideInputLookup
    from rdg_platform.settings import CassandraSettings, ErasureSettings, KafkaSettings, RegistrySettings

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
                     cassandra: CassandraSettings | None, erasure: ErasureSettings | None) -> Iterator[int]:
    """Executor side: write states through the GraphStore of a spec pointing at the new tables;
    yields how many states were written (a state whose every record the erasure fence drops is not)."""
    from rdg_platform.kv.graph_store import GraphStore

    # The new tables, never the live pointer; ``cassandra`` carries the credentials and CA, ``erasure``
    # the fence's key (the rebuild honours erasures like the live sinks).
    store = GraphStore.from_spec(spec, cassandra, version_refresh_s=None, erasure=erasure)
    # The fence is applied here, per state (to count the states it empties), not again in write().
    fence, store.fence = store.fence, None
    n = 0
    buf: list[Any] = []
    try:
        for _key, st in states:
            recs = st.records() if fence is None else fence.admit(st.records())
            if not recs:
                continue
            buf.extend(recs)
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
    fenced_keys: int = 0  # keys of erased members, not written (the erasure fence)
    rows_read_back: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, tuple[int, str]] = field(default_factory=dict)
    # With a CatchUp, at the validation round that allowed the switch: per table role (forward/reverse),
    # (settled rows, digest of those rows) of the live version - equal to the new version's - and
    # the rows compared/left in flight, and the cut (a write time, µs since the epoch) that split them.
    live_checksums: dict[str, tuple[int, str]] = field(default_factory=dict)
    settled_rows: dict[str, int] = field(default_factory=dict)
    in_flight_rows: dict[str, int] = field(default_factory=dict)
    validation_cut_us: int = 0
    validation_rounds: int = 0
    mismatch_rounds: int = 0  # validation rounds that found settled rows differing (not switched then)
    catchup_from: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> partition -> offset
    catchup_records: int = 0
    catchup_rounds: int = 0
    settle_records: int = 0
    switched: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CatchUp:
    """How the rebuild reaches Kafka after the archive, and when it may switch.

    ``key_range`` [lo, hi) limits the validation to record ids in it (None: every key);
    ``small_round`` ends the catch-up rounds before validation once a round replays fewer records, and
    a validation round may switch only after a replay round that small. ``live_lag_s`` is how far
    behind the source topics the live version may be: a source record reaches the live tables within
    it (the processors' largest dedup window, ``RDG_STREAMING_DEDUP_MAX_WINDOW_S``, after which a
    folded change is emitted at the latest, plus the sinks' commit interval and consumer lag).
    Validation compares only rows that no write newer than ``now - live_lag_s`` touched on either side.
    """

    kafka: KafkaSettings
    registry: RegistrySettings
    small_round: int = 1000
    max_rounds: int = 50
    validate_timeout_s: float = 300.0
    poll_s: float = 2.0
    settle_s: float = 7.0
    key_range: tuple[str, str] | None = None
    live_lag_s: float = 300.0


class CatchUpError(RuntimeError):
    """The archive and Kafka do not join up (Kafka no longer holds the records after the archive)."""


def catchup_start(catalog: Catalog, topic: str, consumer: Consumer, timeout_s: float = 30.0,
                  namespace: str = ARCHIVE_NAMESPACE) -> dict[int, int]:
    """Per partition, the offset the Kafka replay of ``topic`` starts from: the scan start the last
    archived hour recorded in its snapshot summary; the topic's first offsets when nothing is archived.

    Without a recorded summary (expired snapshots) it is looked up again: the first offset whose
    timestamp is at or after the start of the newest archived hour. Raises :class:`CatchUpError` when
    Kafka no longer retains that offset (records between the archive and Kafka would be lost).
    """
    from confluent_kafka import TopicPartition
    from pyiceberg.exceptions import NoSuchTableError

    from rdg_platform.lakehouse.archive import archive_identifier, recorded_windows

    md = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if md is None or md.error is not None:
        raise CatchUpError(f"topic {topic!r} not available for the catch-up: {None if md is None else md.error}")
    parts = sorted(md.partitions)
    lows = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s) for p in parts}
    try:
        table = catalog.load_table(archive_identifier(topic, namespace))
    except NoSuchTableError:
        return {p: lows[p][0] for p in parts}
    windows = recorded_windows(table)
    start: dict[int, int] = {}
    if windows:
        last = windows[max(windows)]
        start = {int(p): int(r["scan_start"]) for p, r in last.items()}
        where = f"the last archived hour's recorded scan start ({max(windows)} ms)"
    else:
        import pyarrow.compute as pc

        ts = table.scan(selected_fields=("kafka_ts",)).to_arrow().column("kafka_ts")
        if len(ts) == 0:
            return {p: lows[p][0] for p in parts}
        newest = pc.max(ts).as_py()
        hour_ms = int(newest.timestamp() * 1000) // 3_600_000 * 3_600_000
        found = consumer.offsets_for_times([TopicPartition(topic, p, hour_ms) for p in parts], timeout=timeout_s)
        start = {tp.partition: (tp.offset if tp.offset >= 0 else lows[tp.partition][1]) for tp in found}
        where = f"the first offsets at or after the newest archived hour ({hour_ms} ms)"
    out = {}
    for p in parts:
        low, high = lows[p]
        off = start.get(p, low)  # a partition added since: from its beginning
        if off < low:
            raise CatchUpError(f"{topic}[{p}]: the catch-up must start at offset {off} ({where}) but Kafka's "
                               f"earliest retained offset is {low}: records after the archive are gone; "
                               "archive the newer hours while Kafka still holds them")
        out[p] = min(off, high)
    return out


class KafkaReplay:
    """The driver-side catch-up: source records from Kafka, through the mapping, into the new tables.

    Each :meth:`round` reads every topic from its position up to the high watermark read when the
    round starts, side inputs first (they update the lookup, as the processors' catalog tables do),
    folds the namespace's records into per-key LWW states and writes them with the live sink's
    statements (``USING TIMESTAMP`` = event time) through a GraphStore bound to the new tables.
    """

    def __init__(self, spec: GraphSpec, ns: Namespace, lookup: SideInputLookup, store: GraphStore,
                 catalog: Catalog, catchup: CatchUp, batch: int = 500) -> None:
        from confluent_kafka import Consumer

        from rdg_platform.avro import AvroSerde, SchemaRegistry, topic_decoder
        from rdg_platform.kafka_client import client_config

        self.spec, self.ns, self.lookup, self.store, self.batch = spec, ns, lookup, store, batch
        self.mapped = set(topics_for(spec, ns))
        self.side = [s.topic for s in spec.side_inputs()]
        self.topics = self.side + [t for t in self.mapped if t not in self.side]
        self.consumer = Consumer(client_config(catchup.kafka, **{
            "group.id": f"rdg-rebuild-{ns.name}-{os.getpid()}", "enable.auto.commit": False,
            "enable.partition.eof": True, "auto.offset.reset": "earliest"}))
        self.serde = AvroSerde(SchemaRegistry.from_settings(catchup.registry), timestamps="millis")
        self.decoders = {t: topic_decoder(self.serde, t) for t in self.topics}
        self.positions = {t: catchup_start(catalog, t, self.consumer) for t in self.topics}
        self.start = {t: dict(v) for t, v in self.positions.items()}
        self.undecodable = 0
        self.bad_events = 0

    def close(self) -> None:
        self.consumer.close()
        self.serde.close()

    def round(self) -> int:
        """Replay every topic up to its current high watermark; returns the records read."""
        total = 0
        for topic in self.topics:
            total += self._topic(topic)
        return total

    def _topic(self, topic: str) -> int:
        from confluent_kafka import TopicPartition

        pos = self.positions[topic]
        ends = {p: self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in pos}
        todo = {p: e for p, e in ends.items() if e > pos[p]}
        if not todo:
            return 0
        self.consumer.assign([TopicPartition(topic, p, pos[p]) for p in todo])
        src = self.spec.sources[topic]
        mapping = self.spec.mappings.get(topic)
        time_field = mapping.event_time_field if mapping else None
        states: dict[str, KeyState] = {}
        n = 0
        deadline = time.monotonic() + 120
        while todo:
            msgs = self.consumer.consume(1000, timeout=1.0)
            if not msgs and time.monotonic() > deadline:
                raise CatchUpError(f"timed out replaying {topic} partitions {sorted(todo)}")
            for m in msgs:
                err = m.error()
                p = m.partition()
                if err is not None:
                    if err.code() == err._PARTITION_EOF:  # noqa: SLF001 (librdkafka's EOF code)
                        todo.pop(p, None)
                    continue
                off = m.offset()
                if p not in todo or off >= todo[p]:
                    continue
                pos[p] = off + 1
                if pos[p] >= todo[p]:
                    todo.pop(p)
                n += 1
                value = m.value()
                if value is None:
                    self.undecodable += 1
                    continue
                try:
                    ev = self.decoders[topic](value)
                except Exception:  # noqa: BLE001 (every decode failure has a DLQ reason in the stream)
                    self.undecodable += 1
                    continue
                if topic in self.side:
                    self._side_input(topic, src.key, time_field, ev, p, off)
                if topic in self.mapped:
                    try:
                        recs = map_event(self.spec, topic, ev, self.lookup, reference_ms=m.timestamp()[1])
                    except BadEventError:
                        self.bad_events += 1
                        continue
                    lww_states((r for r in recs if r.kind == self.ns.kind and r.type == self.ns.type), states)
        self.consumer.unassign()
        buf: list[Any] = []
        for st in states.values():
            buf.extend(st.records())
            if len(buf) >= self.batch:
                self.store.write(buf)
                buf = []
        if buf:
            self.store.write(buf)
        return n

    def _side_input(self, topic: str, key_field: str, time_field: str | None, ev: Mapping[str, Any],
                    partition: int, offset: int) -> None:
        """Newer catalog records replace older ones in the lookup (by event time, then position)."""
        from rdg_platform.model.mapping import to_epoch_ms

        key = ev.get(key_field)
        if key is None:
            return
        table = self.lookup.tables.setdefault(topic, {})
        try:
            ts = to_epoch_ms(ev.get(time_field)) if time_field and ev.get(time_field) is not None else 0
        except (TypeError, ValueError):
            ts = 0
        cur = table.get(str(key))
        if cur is not None:
            try:
                cur_ts = to_epoch_ms(cur.get(time_field)) if time_field and cur.get(time_field) is not None else 0
            except (TypeError, ValueError):
                cur_ts = 0
            if cur_ts > ts:
                return
        table[str(key)] = dict(ev)


_SCAN = ("SELECT record_id, item_key, props, updated_at, writetime(updated_at), writetime(props), pb, writetime(pb) "
         "FROM {ks}.{t} WHERE token(record_id) > ? AND token(record_id) <= ?")

RowKey = tuple[str, str]           # (record_id, item_key)
RowDigest = tuple[int, int]        # (128-bit digest of the row's cells and write times, newest write time in µs)


def _scan_statement(session: Session, ns: Namespace, tbl: str) -> Any:
    from rdg_platform.topology import check_identifier

    return session.prepare(_SCAN.format(ks=check_identifier(ns.keyspace, "keyspace"), t=check_identifier(tbl, "table")))


def _newest_write(row: Any) -> int:
    """A scanned row's newest write time (µs): ``updated_at``'s, each map entry's, the blob's."""
    wts = [row[4], row[7]]
    if isinstance(row[5], list | tuple):
        wts.extend(row[5])
    else:
        wts.append(row[5])
    return max((int(w) for w in wts if w is not None), default=0)


def _row_digests(session: Session, ps: Any, key_range: tuple[str, str] | None, lo: int,
                 hi: int) -> Iterator[tuple[RowKey, RowDigest]]:
    """Per row of one token range (lo, hi] whose record id lies in ``key_range``: its digest and its
    newest write time. The digest covers the key, every property value with its write time (whichever
    column holds it) and ``updated_at`` with its write time (:func:`rdg_platform.kv.codec.checksum_line`)."""
    import hashlib

    from rdg_platform.kv.codec import checksum_line

    bound = ps.bind((lo, hi))
    bound.fetch_size = 2000
    for r in session.execute(bound):
        if key_range is not None and not key_range[0] <= r[0] < key_range[1]:
            continue
        line = checksum_line(r[0], r[1], r[3], r[4], r[2], r[5], r[6], r[7])  # props from map or blob
        yield (r[0], r[1]), (int.from_bytes(hashlib.sha256(line.encode()).digest()[:16], "big"), _newest_write(r))


def range_checksums(session: Session, ns: Namespace, key_range: tuple[str, str] | None = None,
                    splits: int = 8) -> dict[str, tuple[int, str]]:
    """(rows, digest) per table of ``ns`` (as named in it) over the record ids in ``key_range``
    [lo, hi) (None: every key), keyed "forward"/"reverse" so two versions compare directly.

    The digest is the sum of the per-row digests of :func:`_row_digests` mod 2^128 (order-independent).
    """
    from rdg_platform.kv.store import token_ranges

    out = {}
    for role, tbl in zip(("forward", "reverse"), ns.tables, strict=False):
        ps = _scan_statement(session, ns, tbl)
        total = rows = 0
        for lo, hi in token_ranges(splits):
            for _key, (digest, _wt) in _row_digests(session, ps, key_range, lo, hi):
                total = (total + digest) % (1 << 128)
                rows += 1
        out[role] = (rows, f"{total:032x}")
    return out


@dataclass
class RowComparison:
    """Two versions of a namespace compared row by row at a cut (a write time, µs).

    A row is *settled* when its newest write time is at or before the cut on both sides (a side
    without the row counts as never written): both paths must then hold the same cells. Every other
    row is *in flight*: at least one side still gets (or has just got) writes after the cut.
    ``mismatches``: settled rows that differ, as (table role, record id, item key) -> (live digest,
    new digest), None for a missing row. ``digests``: per table role, (settled rows, sum of their
    digests mod 2^128) of the live side (equal to the new side's when nothing mismatches).
    """

    cut_us: int
    settled: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    mismatches: dict[tuple[str, str, str], tuple[int | None, int | None]] = field(default_factory=dict)
    digests: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, role: str, live: Mapping[RowKey, RowDigest], new: Mapping[RowKey, RowDigest]) -> None:
        """Classify the rows of one table role read from both sides (same key range and token range)."""
        settled = in_flight = 0
        total = int(self.digests.get(role, (0, "0"))[1], 16)
        for key in live.keys() | new.keys():
            a, b = live.get(key), new.get(key)
            if max(a[1] if a else 0, b[1] if b else 0) > self.cut_us:
                in_flight += 1
                continue
            settled += 1
            da, db = (a[0] if a else None), (b[0] if b else None)
            if da != db:
                self.mismatches[(role, *key)] = (da, db)
            elif da is not None:
                total = (total + da) % (1 << 128)
        self.settled[role] = self.settled.get(role, 0) + settled
        self.in_flight[role] = self.in_flight.get(role, 0) + in_flight
        self.digests[role] = (self.digests.get(role, (0, ""))[0] + settled, f"{total:032x}")


def compare_versions(session: Session, live: Namespace, new: Namespace, key_range: tuple[str, str] | None,
                     cut_us: int, splits: int = 32) -> RowComparison:
    """Row-by-row comparison of two versions of one namespace over ``key_range`` at ``cut_us``.

    Both versions are read one token range at a time (the same ranges: the tables share partition
    keys), so the driver holds the rows of one range of one table pair, not the namespace."""
    from rdg_platform.kv.store import token_ranges

    out = RowComparison(cut_us)
    for role, t_live, t_new in zip(("forward", "reverse"), live.tables, new.tables, strict=False):
        ps_live, ps_new = _scan_statement(session, live, t_live), _scan_statement(session, new, t_new)
        for lo, hi in token_ranges(splits):
            out.add(role, dict(_row_digests(session, ps_live, key_range, lo, hi)),
                    dict(_row_digests(session, ps_new, key_range, lo, hi)))
    return out


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
                      catchup: CatchUp | None = None, erasure: ErasureSettings | None = None,
                      log: Any = None) -> RebuildResult:
    """Rebuild ``namespace`` into its next version, validate it and (``switch``) make it active.

    ``cassandra`` gives the driver and the executors their credentials and CA (none when None).
    ``catchup`` (the whole archive only: ``end_ms`` None) replays Kafka after the archive into the new
    version and validates it against the live one (see the module docstring); without it the rebuild
    is the archive alone, validated by read-back counts. ``erasure`` (the erasure settings) makes every
    write of the rebuild honour the erasure fence, as the live sinks do; None writes unfenced.
    """
    from rdg_platform.kv import versions
    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.kv.schema import ensure_schema
    from rdg_platform.kv.store import KVStore

    if catchup is not None and end_ms is not None:
        raise ValueError("a Kafka catch-up continues the whole archive: it cannot follow a range ending at end_ms")
    t0 = time.perf_counter()
    ns = spec.namespaces[namespace]
    kv = KVStore.from_spec(spec, cassandra)
    replay: KafkaReplay | None = None
    new_store: GraphStore | None = None
    try:
        session = kv.cluster_session(ns.cluster)
        # The keyspace, pointer table and spec tables, if absent (a namespace rebuilt before it ever ran
        # live): idempotent, and the pointer cannot be read without them.
        ensure_schema(kv, spec, [ns])
        current = versions.active_version(session, ns)
        live = versions.active_namespace(session, ns)
        version = current.version + 1
        target = versions.versioned(ns, version)
        for tbl_name in target.tables:  # a failed earlier attempt may have left rows behind
            session.execute(f"DROP TABLE IF EXISTS {ns.keyspace}.{tbl_name}")
        ensure_schema(kv, spec, [target])
        res = RebuildResult(namespace, version, target.tables)
        new_spec = _spec_with(spec, target)

        def say(msg: str) -> None:
            if log is not None:
                log(msg)

        if catchup is not None:
            # Positions first: the replay must start no later than where the archive read below ends.
            new_store = GraphStore.from_spec(new_spec, cassandra, version_refresh_s=None, erasure=erasure)
            replay = KafkaReplay(spec, target, lookup, new_store, catalog.load(), catchup, write_batch)
            res.catchup_from = {t: dict(v) for t, v in replay.start.items()}

        t = time.perf_counter()
        states = compute_states(spark, catalog, spec, ns, lookup, start_ms, end_ms).cache()
        res.keys = states.count()
        res.timings["map_reduce_s"] = time.perf_counter() - t
        say(f"{namespace}: {res.keys} nodes/edges computed from the archive; writing {target.table}")
        t = time.perf_counter()
        written = states.mapPartitions(
            lambda it: _write_partition(it, new_spec, write_batch, cassandra, erasure)).sum()
        res.timings["write_s"] = time.perf_counter() - t
        states.unpersist()
        res.fenced_keys = res.keys - written
        if res.fenced_keys:
            say(f"{namespace}: {res.fenced_keys} nodes/edges of erased members dropped by the erasure fence")

        t = time.perf_counter()
        if replay is not None and catchup is not None:
            _catch_up(replay, catchup, res, say)
            res.timings["catchup_s"] = time.perf_counter() - t
            t = time.perf_counter()
            _validate_against_live(replay, catchup, session, live, target, res, say)
        else:
            for tbl in target.tables:
                n = (spark.read.format("org.apache.spark.sql.cassandra")
                     .options(keyspace=ns.keyspace, table=tbl).load().count())
                res.rows_read_back[tbl] = int(n)
            bad = {tbl: n for tbl, n in res.rows_read_back.items() if n != written}
            if bad:
                raise RuntimeError(f"validation failed: {bad} rows, expected {written} "
                                   f"({res.keys} computed, {res.fenced_keys} fenced)")
            say(f"{namespace}: validated {res.rows_read_back} rows (archive only, no live comparison)")
        res.checksums = versions.namespace_checksum(session, target)
        res.timings["validate_s"] = time.perf_counter() - t
        if switch:
            versions.switch_version(session, ns, version, res.checksums[target.table][0],
                                    res.checksums[target.table][1])
            res.switched = True
            say(f"{namespace}: switched from {current.table} to {target.table}")
            if replay is not None and catchup is not None:
                # Writers refresh the pointer every few seconds: until then they may still write the old
                # version, so the replay keeps carrying those records into the new one.
                settle_end = time.monotonic() + catchup.settle_s
                while True:
                    res.settle_records += replay.round()
                    if time.monotonic() >= settle_end:
                        break
                    time.sleep(min(catchup.poll_s, max(0.0, settle_end - time.monotonic())))
                say(f"{namespace}: {res.settle_records} records replayed while writers followed the switch")
        res.seconds = time.perf_counter() - t0
        return res
    finally:
        if replay is not None:
            replay.close()
        if new_store is not None:
            new_store.close()
        kv.close()


def _catch_up(replay: KafkaReplay, catchup: CatchUp, res: RebuildResult, say: Any) -> None:
    """Rounds of Kafka replay until one reads fewer than ``small_round`` records."""
    for _ in range(catchup.max_rounds):
        n = replay.round()
        res.catchup_rounds += 1
        res.catchup_records += n
        if n < catchup.small_round:
            break
    say(f"{res.namespace}: caught up {res.catchup_records} Kafka records in {res.catchup_rounds} rounds "
        f"(from {res.catchup_from})")


def _validate_against_live(replay: KafkaReplay, catchup: CatchUp, session: Session, live: Namespace,
                           target: Namespace, res: RebuildResult, say: Any) -> None:
    """Rounds of (one catch-up round, then a row-by-row comparison of the live and the new version over
    ``catchup.key_range`` at the cut ``round start - live_lag_s``) until a round finds settled rows,
    none of them differing, after a small replay round; raises when none does within
    ``validate_timeout_s``, naming the differing rows (keys only), those unchanged on both sides
    since the round before first: a real disagreement of the two paths, not a lagging writer."""
    deadline = time.monotonic() + catchup.validate_timeout_s
    prev: dict[tuple[str, str, str], tuple[int | None, int | None]] = {}
    while True:
        # The cut is taken before the round: every source record at or before it was in Kafka when
        # the round read the high watermarks, and the live writers had live_lag_s to write it.
        cut_us = int((time.time() - catchup.live_lag_s) * 1_000_000)
        n = replay.round()
        res.catchup_records += n
        res.catchup_rounds += 1
        res.validation_rounds += 1
        cmp = compare_versions(session, live, target, catchup.key_range, cut_us)
        settled = sum(cmp.settled.values())
        persistent = sorted(k for k, v in cmp.mismatches.items() if prev.get(k) == v)
        prev = cmp.mismatches
        if cmp.mismatches:
            res.mismatch_rounds += 1
        if not cmp.mismatches and settled > 0 and n < catchup.small_round:
            res.live_checksums, res.settled_rows, res.in_flight_rows = cmp.digests, cmp.settled, cmp.in_flight
            res.validation_cut_us = cut_us
            say(f"{res.namespace}: new version equals live ({live.table}) on {cmp.settled} settled rows over "
                f"{catchup.key_range or 'every key'} (cut {cut_us // 1000} ms, live lag {catchup.live_lag_s:.0f} s); "
                f"{cmp.in_flight} rows in flight, carried by the replay; {res.validation_rounds} rounds")
            return
        say(f"{res.namespace}: validation round {res.validation_rounds}: {n} records replayed, {settled} settled "
            f"rows, {len(cmp.mismatches)} differing ({len(persistent)} unchanged since the last round), "
            f"{sum(cmp.in_flight.values())} in flight")
        if time.monotonic() > deadline:
            if persistent:
                why = (f"{len(persistent)} settled rows differ with the same contents on both sides in two "
                       f"consecutive rounds (the two paths disagree), e.g. {_examples(persistent)}")
            elif cmp.mismatches:
                why = (f"{len(cmp.mismatches)} settled rows differ and keep changing (the live writers lag more "
                       f"than live_lag_s={catchup.live_lag_s:.0f} s?), e.g. {_examples(sorted(cmp.mismatches))}")
            elif settled == 0:
                why = f"no row is settled: every row was written within live_lag_s={catchup.live_lag_s:.0f} s"
            else:
                why = f"the replay never had a round under {catchup.small_round} records"
            raise RuntimeError(f"validation failed: {target.table} does not agree with the live {live.table} after "
                               f"{catchup.validate_timeout_s:.0f} s ({res.validation_rounds} rounds): {why}; "
                               "not switched")
        time.sleep(catchup.poll_s)


def _examples(keys: list[tuple[str, str, str]], n: int = 5) -> str:
    """A few row keys (table role, record id, item key), never their values."""
    return ", ".join(f"{role}:{rid}/{item}" for role, rid, item in keys[:n])


def _spec_with(spec: GraphSpec, ns: Namespace) -> GraphSpec:
    import dataclasses

    return dataclasses.replace(spec, namespaces={**spec.namespaces, ns.name: ns})
