"""The pure event -> graph record mapping shared by streaming, backfill and Spark."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rdg_platform.config import Settings
from rdg_platform.model import BadEventError, GraphRecord, load_spec, map_event, merge_records
from rdg_platform.model.mapping import project_event

SPEC = load_spec(cfg=Settings())
T0 = 1_700_000_000_000


def playback(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": "e1", "event_time": T0, "account_id": "a1", "profile_id": "p1", "device_id": "d1",
        "device_type": "TV", "title_id": "t1", "episode_id": None, "action": "HEARTBEAT", "position_ms": 5000,
        "is_live": False,
    }
    ev.update(over)
    return ev


def test_playback_maps_to_nodes_and_edges_with_enrichment() -> None:
    catalog = {("catalog.titles", "t1"): {"name": "Stranger Things", "kind": "SHOW", "genres": ["scifi"], "runtime_min": None}}
    recs = map_event(SPEC, "member.playback", playback(), lambda t, k: catalog.get((t, k)))
    by = {(r.kind, r.type): r for r in recs}
    assert set(by) == {("node", "account"), ("node", "profile"), ("node", "device"), ("node", "title"),
                       ("edge", "has_profile"), ("edge", "streamed_from"), ("edge", "started_watching")}
    sw = by[("edge", "started_watching")]
    assert (sw.id, sw.dst, sw.updated_at) == ("p1", "t1", T0)
    assert sw.properties == {"last_watch_ts": T0, "device_id": "d1", "position_ms": 5000, "action": "HEARTBEAT", "is_live": False}
    assert by[("node", "title")].properties == {"name": "Stranger Things", "kind": "SHOW", "genres": ["scifi"]}
    assert sw.topic == "graph.edge.started_watching" and sw.key == "p1"


def test_title_without_catalog_entry_has_no_enriched_properties() -> None:
    recs = map_event(SPEC, "member.playback", playback(), lambda t, k: None)
    title = next(r for r in recs if r.type == "title")
    assert title.properties == {}


def test_datetime_event_time_is_epoch_ms() -> None:
    recs = map_event(SPEC, "member.playback", playback(event_time=datetime.fromtimestamp(T0 / 1000, UTC)))
    assert {r.updated_at for r in recs} == {T0}


def test_login_without_profile_skips_profile_records() -> None:
    ev = {"event_id": "e", "event_time": T0, "account_id": "a1", "profile_id": None, "device_id": "d9",
          "device_type": "PHONE", "country": "NL", "app_version": None, "plan": "premium"}
    recs = map_event(SPEC, "member.login", ev)
    assert {(r.kind, r.type) for r in recs} == {("node", "account"), ("node", "device"), ("edge", "logged_in_from")}
    acct = next(r for r in recs if r.type == "account")
    assert acct.properties == {"country": "NL", "plan": "premium", "last_seen_ts": T0}


def test_missing_required_field_is_a_bad_event() -> None:
    with pytest.raises(BadEventError) as info:
        map_event(SPEC, "member.playback", playback(title_id=""))
    assert info.value.reason == "missing_field" and "title_id" in info.value.detail


def test_unknown_topic_is_a_bad_event() -> None:
    with pytest.raises(BadEventError, match="unknown_topic"):
        map_event(SPEC, "member.nope", playback())


def test_catalog_game_maps_to_based_on_edge() -> None:
    recs = map_event(SPEC, "catalog.games", {"game_id": "g1", "name": "Squid Game: Unleashed",
                                             "franchise_title_id": "t7", "updated_at": T0})
    assert [(r.kind, r.type, r.id, r.dst) for r in recs] == [("node", "game", "g1", None), ("edge", "based_on", "g1", "t7")]


def test_merge_keeps_latest_per_property_regardless_of_order() -> None:
    a = GraphRecord("node", "account", "a1", None, {"country": "NL", "last_seen_ts": 1}, 1)
    b = GraphRecord("node", "account", "a1", None, {"last_seen_ts": 5}, 5)
    for merged in (merge_records(a, b), merge_records(b, a)):
        assert merged.properties == {"country": "NL", "last_seen_ts": 5} and merged.updated_at == 5


def test_merge_refuses_different_keys() -> None:
    a = GraphRecord("node", "account", "a1", None, {}, 1)
    with pytest.raises(ValueError):
        merge_records(a, GraphRecord("node", "account", "a2", None, {}, 1))


def test_record_dict_roundtrip_and_bad_record() -> None:
    r = GraphRecord("edge", "plays", "p1", "g1", {"action": "LAUNCH"}, T0)
    assert GraphRecord.from_dict(r.to_dict()) == r
    assert r.to_dict()["src"] == "p1"
    with pytest.raises(BadEventError, match="bad_record"):
        GraphRecord.from_dict({"kind": "edge", "type": "plays", "src": "p1"})


def test_projection_keeps_only_fields_read() -> None:
    ev = playback()
    ev["noise"] = "x"
    projected = project_event(SPEC.mappings["member.playback"], ev)
    assert "noise" not in projected and projected["title_id"] == "t1"
