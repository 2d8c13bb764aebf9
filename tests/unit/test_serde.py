"""Unit tests of the Avro package's compiled encoder (byte-identical to fastavro) and framing checks."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from rdg_platform.avro import HEADER, AvroSerde, DecodeError, EncodeError
from rdg_platform.avro.encoder import compile_encoder, long_bytes, zigzag_varint
from rdg_platform.avro.serde import strip_timestamp_logical
from rdg_platform.generator import GeneratorConfig, generate_events
from rdg_platform.model import default_spec


def _fastavro(schema: dict[str, Any], rec: dict[str, Any]) -> bytes:
    bio = io.BytesIO()
    fastavro.schemaless_writer(bio, fastavro.parse_schema(schema), rec)
    return bio.getvalue()


def test_long_matches_reference_varint() -> None:
    rnd = random.Random(1)
    vals = [0, 1, -1, 63, -64, 64, -65, 4095, 4096, 8191, 8192, 16383, 16384, (1 << 27) - 1, 1 << 27, 1 << 28,
            (1 << 41) - 1, 1 << 41, 1 << 62, -(1 << 63), (1 << 63) - 1, 1_795_429_625_000]
    vals += [rnd.randint(-(1 << 63), (1 << 63) - 1) >> rnd.randint(0, 63) for _ in range(20000)]
    for v in vals:
        assert long_bytes(v) == zigzag_varint(v), v


def test_compiled_encoder_is_byte_identical_to_fastavro() -> None:
    spec = default_spec()
    cfg = GeneratorConfig(members=30, seed=9, duration_s=600, start_ms=1_767_225_600_000)
    n = 0
    encoders = {t: compile_encoder(s.schema, b"") for t, s in spec.sources.items()}
    for ev in generate_events(cfg):
        assert ev.value is not None
        assert encoders[ev.topic](ev.value) == _fastavro(dict(spec.sources[ev.topic].schema), ev.value)
        n += 1
    assert n > 1000


def test_compiled_encoder_edge_values() -> None:
    schema = dict(default_spec().sources["catalog.titles"].schema)
    enc = compile_encoder(schema, b"")
    recs: list[dict[str, Any]] = [
        {"title_id": "ü-🎬", "name": "", "kind": "LIVE_EVENT", "runtime_min": None, "genres": [], "maturity": None,
         "updated_at": 0},
        {"title_id": "t", "name": "x" * 300, "kind": "MOVIE", "runtime_min": -5, "genres": ["a", "ö", "c"],
         "maturity": "R", "updated_at": -(1 << 40)},
        {"title_id": "t", "name": "n", "kind": "SHOW", "genres": ["x"], "updated_at": 1 << 50},  # optionals absent
    ]
    for rec in recs:
        assert enc(rec) == _fastavro(schema, rec)


def test_encode_falls_back_to_fastavro_and_reports_errors() -> None:
    spec = default_spec()
    serde = AvroSerde("http://127.0.0.1:1/never-called", schemas={t: s.schema for t, s in spec.sources.items()})
    # Pretend registration happened (no registry in unit tests).
    for t, s in spec.sources.items():
        serde.install_writer(t, s.schema, 7)
    rec = {"event_id": "e", "event_time": datetime(2026, 1, 1, tzinfo=UTC), "account_id": "a",
           "device_id": "d", "device_type": "TV"}
    data = serde.encode("member.login", rec)  # datetime: the compiled path declines, fastavro encodes
    assert data[:HEADER.size] == HEADER.pack(0, 7)
    same = serde.encode("member.login", {**rec, "event_time": 1_767_225_600_000})
    assert data == same
    with pytest.raises(EncodeError):
        serde.encode("member.login", {**rec, "device_type": "TOASTER"})
    with pytest.raises(EncodeError):
        serde.encode("member.login", {"event_id": "e"})


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b"\x01\x00\x00\x00\x01abc", b"garbage!"])
def test_framing_errors_need_no_registry(data: bytes) -> None:
    serde = AvroSerde("http://127.0.0.1:1/never-called", schemas={})
    with pytest.raises(DecodeError) as exc:
        serde.decode(data)
    assert exc.value.reason == "not_confluent_framing"


def teststrip_timestamp_logical() -> None:
    schema = dict(default_spec().sources["member.login"].schema)
    stripped = strip_timestamp_logical(schema)
    et = next(f for f in stripped["fields"] if f["name"] == "event_time")
    assert et["type"] == {"type": "long"}
