"""The Avro serde against the real Confluent-compatible registry (Apicurio ccompat v7), through settings."""

from __future__ import annotations

import pytest

from rdg_platform.avro import HEADER, AvroSerde, DecodeError, RegistryError
from rdg_platform.model import GraphSpec
from rdg_platform.settings import RegistrySettings, Settings

pytestmark = pytest.mark.integration

LOGIN = {"event_id": "serde-it-1", "event_time": 1_767_225_600_123, "account_id": "serde-it-a", "profile_id": None,
         "device_id": "serde-it-d", "device_type": "TV", "country": "NL", "app_version": None, "plan": "ads"}


def test_register_is_idempotent_and_roundtrips(services: object, cfg: Settings, spec: GraphSpec) -> None:
    with AvroSerde.from_settings(cfg.registry) as a, AvroSerde.from_settings(cfg.registry, timestamps="millis") as b:
        ids = a.register_all(spec)
        assert ids == b.register_all(spec)  # same text -> same id, no new version
        assert len(set(ids.values())) == len(ids)
        data = a.encode("member.login", LOGIN)
        assert data[0] == 0 and int.from_bytes(data[1:5], "big") == ids["member.login"]
        sid, rec = b.decode_for_topic("member.login", data)
        assert sid == ids["member.login"] and rec == LOGIN  # millis mode: ints back
        _sid, rec2 = a.decode(data)
        assert rec2["event_time"].tzinfo is not None  # default: aware datetimes
        assert int(rec2["event_time"].timestamp() * 1000) == LOGIN["event_time"]
        assert ids["member.login"] in a.subject_ids("member.login")
        assert a.schema_for_id(ids["member.login"])["name"] == "MemberLogin"


def test_decode_reasons(services: object, cfg: Settings, spec: GraphSpec) -> None:
    with AvroSerde.from_settings(cfg.registry) as s:
        ids = s.register_all(spec)
        data = s.encode("member.login", LOGIN)
        cases = {
            "not_confluent_framing": b"\x05" + data[1:],
            "unknown_schema_id": HEADER.pack(0, 0x7FFFFFF0) + data[5:],
            "avro_decode_error": data[:-3],
        }
        for reason, bad in cases.items():
            with pytest.raises(DecodeError) as exc:
                s.decode_for_topic("member.login", bad)
            assert exc.value.reason == reason
        with pytest.raises(DecodeError) as exc:
            s.decode_for_topic("member.playback", data)  # a login schema id on the playback topic
        assert exc.value.reason == "schema_mismatch"
        other = HEADER.pack(0, ids["catalog.games"]) + data[5:]
        with pytest.raises(DecodeError) as exc:
            s.decode_for_topic("member.login", other)
        assert exc.value.reason == "schema_mismatch"


def test_an_unreachable_registry_is_a_registry_error_not_a_decode_error(cfg: Settings) -> None:
    """A registry outage must stop a consumer (RegistryError), never send good records to a DLQ."""
    from rdg_platform.local_services.base import free_ports

    (port,) = free_ports(1)
    gone = RegistrySettings(url=f"http://127.0.0.1:{port}/apis/ccompat/v7")
    with AvroSerde.from_settings(gone, timeout_s=2.0) as s:
        with pytest.raises(RegistryError):
            s.decode(HEADER.pack(0, 1) + b"\x00")
        with pytest.raises(RegistryError):
            s.register("member.login", cfg.load_spec().sources["member.login"].schema)
