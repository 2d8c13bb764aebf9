"""Pure lakehouse logic: schemas, exact LWW compaction, catalog config, archive idempotence on a
local (file) Iceberg catalog, compaction/retention, and that the Dagster domains load."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.types import ListType, StringType, TimestamptzType

from rdg_platform.kv.codec import encode_props
from rdg_platform.lakehouse import maintenance as m
from rdg_platform.lakehouse.archive import archive_records, read_archive
from rdg_platform.lakehouse.backfill import build_lookup, replay
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.kafka_window import WindowRecord, hour_window
from rdg_platform.lakehouse.schema import KAFKA_COLUMN_NAMES, archive_schema
from rdg_platform.model import GraphRecord, default_spec, map_event
from rdg_platform.model.lww import lww_compact
from tests.support.lakehouse import generate_events

H = int(datetime(2020, 1, 1, 5, tzinfo=UTC).timestamp() * 1000)


def test_archive_schema_from_avro() -> None:
    spec = default_spec()
    s = archive_schema(spec.sources["catalog.titles"].schema)
    names = [f.name for f in s.fields]
    assert names[: len(KAFKA_COLUMN_NAMES)] == list(KAFKA_COLUMN_NAMES)
    assert isinstance(s.find_field("updated_at").field_type, TimestamptzType)
    assert isinstance(s.find_field("kind").field_type, StringType)  # enum
    genres = s.find_field("genres").field_type
    assert isinstance(genres, ListType) and isinstance(genres.element_type, StringType)
    assert all(not f.required for f in s.fields)
    ids = [f.field_id for f in s.fields] + [genres.element_id]
    assert len(ids) == len(set(ids))


def _cassandra_cells(records: list[GraphRecord]) -> dict[tuple[str, str], tuple[int, str]]:
    """What Cassandra stores after writing every record individually: per cell, latest timestamp."""
    cells: dict[tuple[str, str], tuple[int, str]] = {}
    for r in records:
        cur = cells.get((r.dedup_key, "\x00updated"))
        if cur is None or r.updated_at > cur[0]:
            cells[(r.dedup_key, "\x00updated")] = (r.updated_at, str(r.updated_at))
        for k, v in encode_props(r.properties).items():
            cur = cells.get((r.dedup_key, k))
            if cur is None or (r.updated_at, v) > cur:
                cells[(r.dedup_key, k)] = (r.updated_at, v)
    return cells


def test_lww_compact_equals_individual_writes_any_order_and_chunking() -> None:
    rnd = random.Random(3)
    recs = []
    for _ in range(400):
        props = {p: rnd.randrange(5) for p in ("a", "b", "c") if rnd.random() < 0.5}
        recs.append(GraphRecord("edge", "plays", f"s{rnd.randrange(5)}", f"d{rnd.randrange(3)}", props,
                                rnd.randrange(10_000)))
    want = _cassandra_cells(recs)
    assert _cassandra_cells(lww_compact(recs)) == want
    rnd.shuffle(recs)
    chunked = lww_compact(recs[:150]) + lww_compact(recs[150:])
    assert _cassandra_cells(chunked) == want
    assert len(lww_compact(recs)) < len(recs)


def test_catalog_config_uris(tmp_path: Path) -> None:
    local = CatalogConfig.local(tmp_path)
    assert local.jdbc_uri() == f"jdbc:sqlite:{tmp_path.resolve() / 'catalog.db'}"
    conf = local.spark_conf()
    assert conf["spark.sql.catalog.rdg.catalog-impl"] == "org.apache.iceberg.jdbc.JdbcCatalog"
    assert conf["spark.sql.catalog.rdg.warehouse"] == local.warehouse
    pg = CatalogConfig("rdg", "postgresql+psycopg2://db.example:5432/iceberg", "s3://b/w", user="u", password="p",
                       properties={"s3.endpoint": "http://minio:9000"})
    assert pg.jdbc_uri() == "jdbc:postgresql://db.example:5432/iceberg"
    assert pg.sqlalchemy_uri() == "postgresql+psycopg2://u:p@db.example:5432/iceberg"
    sc = pg.spark_conf()
    assert sc["spark.sql.catalog.rdg.jdbc.password"] == "p" and sc["spark.sql.catalog.rdg.s3.endpoint"]


def test_hour_window() -> None:
    s = datetime(2020, 1, 1, 5, tzinfo=UTC)
    assert hour_window(s, s + timedelta(hours=1)) == (H, H + 3_600_000)


def _archive_all(cat: Any, events: list[Any], start: int, end: int) -> dict[str, Any]:
    spec = default_spec()
    by_topic: dict[str, list[WindowRecord]] = {}
    for i, e in enumerate(events):
        by_topic.setdefault(e.topic, []).append(
            WindowRecord(i % 2, i, e.timestamp_ms, e.key.encode(), json.dumps(e.value).encode()))
    out = {}
    for topic, recs in by_topic.items():
        out[topic] = archive_records(cat, topic, spec.sources[topic].schema, lambda b: (1, json.loads(b)),
                                     [recs + [WindowRecord(0, 10**6, start + 1, None, b"{bad")]], start, end,
                                     decode_errors=(ValueError,))
    return out


def test_archive_replace_is_idempotent_and_evolves(tmp_path: Path) -> None:
    cat = CatalogConfig.local(tmp_path).load()
    events = generate_events(H, 5, 4)
    for _ in range(2):
        res = _archive_all(cat, events, H, H + 3_600_000)
    for topic, r in res.items():
        n = sum(1 for e in events if e.topic == topic)
        assert r.rows == n and r.undecodable == {"JSONDecodeError": 1}
        assert read_archive(cat, topic).num_rows == n
    spec = default_spec()
    newer = json.loads(json.dumps(spec.sources["member.login"].schema))
    newer["fields"].append({"name": "ab_cell", "type": ["null", "string"], "default": None})
    ev = {**next(e.value for e in events if e.topic == "member.login"), "ab_cell": "B"}
    r = archive_records(cat, "member.login", spec.sources["member.login"].schema, lambda b: (2, json.loads(b)),
                        [[WindowRecord(0, 1, H + 5, b"k", json.dumps(ev).encode())]], H, H + 3_600_000,
                        writer_schema=lambda sid: newer)
    assert r.added_columns == ["ab_cell"]
    assert read_archive(cat, "member.login").column("ab_cell").to_pylist() == ["B"]


def test_backfill_replay_equals_direct_mapping(tmp_path: Path) -> None:
    cat = CatalogConfig.local(tmp_path).load()
    spec = default_spec()
    events = generate_events(H, 6, 6)
    _archive_all(cat, events, H, H + 3_600_000)
    lookup = build_lookup(cat, spec)
    direct = [r for e in events for r in map_event(spec, e.topic, e.value, lookup)]
    written: list[GraphRecord] = []
    res = replay(cat, spec, H, H + 3_600_000, written.extend, chunk_ms=600_000)
    assert res.events == len(events) and not res.bad_events
    assert _cassandra_cells(written) == _cassandra_cells(direct)


def test_compaction_and_retention_keep_data(tmp_path: Path) -> None:
    cat = CatalogConfig.local(tmp_path).load()
    events = generate_events(H, 6, 6)
    _archive_all(cat, events, H, H + 3_600_000)
    table = cat.load_table("archive.member_playback")
    data = table.scan().to_arrow().sort_by("kafka_offset")
    table.append(data.slice(0, 0))
    from rdg_platform.lakehouse.archive import replace_window

    replace_window(table, data.slice(0, 2), H, H + 3_600_000)
    table.append(data.slice(2))
    assert sum(m.data_files_per_hour(table).values()) == 2
    res = m.compact_small_files(table)
    assert (res.files_before, res.files_after) == (2, 1)
    assert table.scan().to_arrow().sort_by("kafka_offset").to_pylist() == data.to_pylist()
    n_snap = len(table.snapshots())
    assert m.expire_snapshots(table, keep_last=1, older_than=timedelta(0)) == n_snap - 1
    table.refresh()
    assert len(table.snapshots()) == 1
    assert m.drop_older_than(table, timedelta(days=1), now=datetime(2020, 1, 1, 6, tzinfo=UTC)) == 0
    assert m.drop_older_than(table, timedelta(days=1), now=datetime(2020, 1, 3, tzinfo=UTC)) == data.num_rows


def test_twcs_options_follow_ttl() -> None:
    spec = default_spec()
    plays = m.compaction_options(spec.namespaces["edge.plays"])
    assert plays["class"] == "TimeWindowCompactionStrategy" and plays["compaction_window_size"] == "3"
    assert m.compaction_options(spec.namespaces["node.account"]) == {"class": "SizeTieredCompactionStrategy"}


@pytest.mark.filterwarnings("ignore")
def test_lakehouse_domains_merge(tmp_path: Path) -> None:
    """The lakehouse domains' Definitions merge (one shared resource object per key) and load."""
    from dagster import Definitions

    from rdg_platform.assets import archive, backfill, maintenance, rebuild
    from rdg_platform.resources import platform_resources
    from rdg_platform.settings import load_settings

    s = load_settings({"RDG_STATE_DIR": str(tmp_path)})
    shared = platform_resources(s)
    defs = Definitions.merge(*(d.defs(s, shared) for d in (archive, backfill, rebuild, maintenance)))
    Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"archive/member_login", "archive/catalog_games", "graph/backfill",
            "maintenance/cassandra_namespace_settings"} <= keys
    assert defs.resolve_job_def("rebuild_namespace_job") is not None


# ------------------------------------------------------------------ columnar Avro decode (archive)
_ALL_TYPES_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "AllTypes", "fields": [
        {"name": "s", "type": "string"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
        {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "b", "type": "boolean"},
        {"name": "raw", "type": "bytes"}, {"name": "fx", "type": {"type": "fixed", "name": "F3", "size": 3}},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tus", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "ns", "type": ["null", "string"], "default": None},
        {"name": "sn", "type": ["long", "null"]},
        {"name": "ls", "type": {"type": "array", "items": "long"}},
        {"name": "ss", "type": {"type": "array", "items": ["null", "string"]}},
    ]}


def _encode_bodies(schema: dict[str, Any], records: list[dict[str, Any]]) -> list[bytes]:
    import io

    import fastavro

    parsed = fastavro.parse_schema(schema)
    out = []
    for r in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        out.append(buf.getvalue())
    return out


def _fastavro_or_none(schema: dict[str, Any], body: bytes) -> dict[str, Any] | None:
    """fastavro's record for ``body``, or None if it fails or leaves bytes over (the serde's rules)."""
    import io

    import fastavro

    bio = io.BytesIO(body)
    try:
        rec = fastavro.schemaless_reader(bio, fastavro.parse_schema(schema), None)
    except Exception:
        return None
    return rec if bio.tell() == len(body) and isinstance(rec, dict) else None


def _columnar(schema: dict[str, Any], bodies: list[bytes]) -> tuple[list[dict[str, Any]], list[bool]]:
    import pyarrow as pa

    from rdg_platform.avro.columnar import concat_bodies, decode_columns

    buf, starts, ends = concat_bodies(bodies)
    batch = decode_columns(schema, buf, starts, ends)
    ok = batch.ok.tolist()
    accepted = iter(pa.table(batch.columns).filter(pa.array(ok)).to_pylist())  # flagged rows hold garbage
    return [next(accepted) if a else {} for a in ok], ok


def _random_record(rnd: random.Random) -> dict[str, Any]:
    def text() -> str:
        return "".join(rnd.choice("ab\u00e9\u4e2d\U0001f600 ") for _ in range(rnd.randrange(0, 12)))

    return {
        "s": text(), "i": rnd.choice([0, -1, 2**31 - 1, -(2**31), rnd.randrange(-1000, 1000)]),
        "l": rnd.choice([0, -1, 2**63 - 1, -(2**63), rnd.randrange(-(2**40), 2**40)]),
        "f": rnd.choice([0.0, 1.5, -2.25]), "d": rnd.uniform(-1e9, 1e9), "b": rnd.random() < 0.5,
        "raw": rnd.randbytes(rnd.randrange(0, 6)), "fx": rnd.randbytes(3), "e": rnd.choice("ABC"),
        "ts": datetime.fromtimestamp(rnd.randrange(0, 2**41) / 1000, tz=UTC),
        "tus": datetime.fromtimestamp(rnd.randrange(0, 2**50) / 1e6, tz=UTC),
        "ns": rnd.choice([None, text()]), "sn": rnd.choice([None, rnd.randrange(-5, 5)]),
        "ls": [rnd.randrange(-(2**33), 2**33) for _ in range(rnd.randrange(0, 5))],
        "ss": [rnd.choice([None, text()]) for _ in range(rnd.randrange(0, 4))],
    }


def test_columnar_decode_equals_fastavro_on_valid_records() -> None:
    rnd = random.Random(11)
    records = [_random_record(rnd) for _ in range(400)]
    bodies = _encode_bodies(_ALL_TYPES_SCHEMA, records)
    got, ok = _columnar(_ALL_TYPES_SCHEMA, bodies)
    assert all(ok)
    assert got == [_fastavro_or_none(_ALL_TYPES_SCHEMA, b) for b in bodies]
    spec = default_spec()
    for topic, src in spec.sources.items():  # the real source schemas, with generated events
        evs = [e.value for e in generate_events(H, 30, 8) if e.topic == topic]
        bodies = _encode_bodies(dict(src.schema), evs)
        got, ok = _columnar(dict(src.schema), bodies)
        assert all(ok) and got == [_fastavro_or_none(dict(src.schema), b) for b in bodies], topic


def test_columnar_decode_flags_every_record_it_cannot_decode_exactly() -> None:
    """Corrupted bodies (truncated, extended, bytes flipped): an accepted record always equals
    fastavro's decode of it with no bytes left over; flagged ones go to fastavro in the archive."""
    rnd = random.Random(5)
    good = _encode_bodies(_ALL_TYPES_SCHEMA, [_random_record(rnd) for _ in range(300)])
    bodies = []
    for b in good:
        kind = rnd.randrange(4)
        if kind == 0 and b:
            b = b[: rnd.randrange(len(b))]
        elif kind == 1:
            b = b + rnd.randbytes(rnd.randrange(1, 4))
        elif kind == 2 and b:
            pos = rnd.randrange(len(b))
            b = b[:pos] + bytes([rnd.randrange(256)]) + b[pos + 1:]
        bodies.append(b)
    bodies += [b"", b"\xff" * 12, b"\x02"]
    got, ok = _columnar(_ALL_TYPES_SCHEMA, bodies)
    assert 0 < sum(ok) < len(bodies)
    for body, rec, accepted in zip(bodies, got, ok, strict=True):
        if accepted:
            assert rec == _fastavro_or_none(_ALL_TYPES_SCHEMA, body)


def test_columnar_decode_rejects_uncovered_schemas() -> None:
    from rdg_platform.avro.columnar import UnsupportedSchemaError, check_supported

    for t in ({"type": "map", "values": "string"}, ["null", "string", "long"],
              {"type": "record", "name": "N", "fields": []}, {"type": "int", "logicalType": "date"}):
        with pytest.raises(UnsupportedSchemaError):
            check_supported({"type": "record", "name": "R", "fields": [{"name": "x", "type": t}]})
    check_supported(_ALL_TYPES_SCHEMA)


# ------------------------------------------------------------------------------- orphan files
def test_remove_orphan_files_after_expiry_keeps_data_and_recent_files(tmp_path: Path) -> None:
    cat = CatalogConfig.local(tmp_path).load()
    events = generate_events(H, 6, 6)
    for _ in range(3):  # each re-archive replaces the hour's files: the old ones stay on disk
        _archive_all(cat, events, H, H + 3_600_000)
    table = cat.load_table("archive.member_playback")
    before = table.scan().to_arrow().sort_by("kafka_offset")
    root = Path(table.location().removeprefix("file://"))
    assert m.remove_orphan_files(table, timedelta(0)).deleted == []  # nothing expired yet: all referenced
    assert m.expire_snapshots(table, keep_last=1, older_than=timedelta(0)) > 0
    table.refresh()
    in_flight = root / "data" / "in-flight-write.parquet"  # a writer's file not committed yet
    in_flight.write_bytes(b"PAR1")
    files_before = {p for p in root.rglob("*") if p.is_file()}
    dry = m.remove_orphan_files(table, timedelta(0), now=datetime.now(tz=UTC) + timedelta(seconds=5), dry_run=True)
    assert dry.deleted and {p for p in root.rglob("*") if p.is_file()} == files_before
    kept = m.remove_orphan_files(table, timedelta(hours=1))
    assert kept.deleted == [] and kept.kept_too_recent == len(dry.deleted)
    res = m.remove_orphan_files(table, timedelta(0), now=datetime.now(tz=UTC) + timedelta(seconds=5))
    assert sorted(res.deleted) == sorted(dry.deleted) and str(in_flight) in res.deleted
    assert any(p.endswith(".parquet") for p in res.deleted) and any(".avro" in p for p in res.deleted)
    assert res.bytes_deleted > 0
    left = {str(p) for p in root.rglob("*") if p.is_file()}
    assert left == m.referenced_files(table)  # exactly the referenced files remain
    fresh = cat.load_table("archive.member_playback")
    assert fresh.scan().to_arrow().sort_by("kafka_offset").to_pylist() == before.to_pylist()
    assert m.remove_orphan_files(fresh, timedelta(0)).deleted == []


def test_rebuild_launchpad_lag_follows_the_streaming_settings() -> None:
    """The rebuild's live_lag_s default comes from the dedup max window and sink commit settings."""
    from rdg_platform.assets import rebuild as rebuild_assets
    from rdg_platform.settings import load_settings

    s = load_settings({"RDG_STREAMING_DEDUP_WINDOW_S": "30", "RDG_STREAMING_DEDUP_MAX_WINDOW_S": "90",
                       "RDG_STREAMING_SINK_COMMIT_S": "2"})
    assert rebuild_assets.live_lag_default(s) == 90 + 2 + 60
    job = rebuild_assets.defs(s).resolve_job_def("rebuild_namespace_job")
    assert job.run_config == {"ops": {"rebuild_namespace_op": {"config": {"live_lag_s": 152.0}}}}
