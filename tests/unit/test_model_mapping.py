"""The pure event -> graph record mapping shared by streaming, backfill and Spark."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from rdg_platform.model import (
    BadEventError,
    GraphRecord,
    GraphSpec,
    Lookup,
    load_spec,
    map_event,
    merge_records,
)
from rdg_platform.model.mapping import TimeGuard, check_event, compile_mapping, project_event, to_epoch_ms

SPEC = load_spec()
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


def reference_map_event(spec: GraphSpec, topic: str, event: Mapping[str, Any], lookup: Lookup | None) -> list[GraphRecord]:
    """The mapping rules read one by one, as the spec describes them (what the compiled mapper must equal)."""
    mapping = spec.mappings[topic]
    check_event(mapping, event)
    try:
        ts = to_epoch_ms(event[mapping.event_time_field])
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadEventError("bad_event_time", f"{exc}") from None
    side = {alias: (lookup(e.topic, str(event.get(e.key))) if lookup and event.get(e.key) is not None else None)
            for alias, e in mapping.enrich.items()}
    out = []
    for rule in mapping.records:
        if any(event.get(f) is None for f in rule.when_present):
            continue
        rid, dst = event.get(rule.id_field), (event.get(rule.dst_field) if rule.dst_field else None)
        if rid is None or (rule.kind == "edge" and dst is None):
            continue
        declared = spec.nodes[rule.type].properties if rule.kind == "node" else spec.edges[rule.type].properties
        props: dict[str, Any] = {}
        for pname, ref in rule.properties.items():
            if ref == "event_time":
                value: Any = ts
            elif "." in ref:
                alias, sfield = ref.split(".", 1)
                rec = side.get(alias)
                value = None if rec is None else rec.get(sfield)
            else:
                value = event.get(ref)
            if value is None:
                continue
            typ = declared[pname]
            try:
                props[pname] = (to_epoch_ms(value) if typ == "timestamp" else int(value) if typ in ("int", "long")
                                else float(value) if typ == "double" else bool(value) if typ == "boolean"
                                else [str(v) for v in value] if typ == "list<string>" else str(value))
            except (TypeError, ValueError):
                raise BadEventError("bad_field", pname) from None
        out.append(GraphRecord(rule.kind, rule.type, str(rid), None if dst is None else str(dst), props, ts))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_compiled_mapping_equals_the_rules_read_one_by_one(seed: int) -> None:
    """map_event runs a compiled (generated) mapper: for random events of every topic - missing and
    null fields, values of other types that need converting, bad values, absent catalog entries -
    it gives the same records (types included) or the same error reason as the plain rules."""
    rnd = random.Random(seed)
    catalog = {("catalog.titles", "t1"): {"name": "Dark", "kind": "SHOW", "genres": ["a", 2], "runtime_min": "50",
                                          "maturity": None}}
    pool = [None, "", "x1", 7, 7.5, True, "12", ["a", "b"], T0, datetime.fromtimestamp(T0 / 1000, UTC)]
    for topic, src in SPEC.sources.items():
        if topic not in SPEC.mappings:
            continue
        names = [f["name"] for f in src.schema["fields"]]
        for _ in range(200):
            ev: dict[str, Any] = {n: (f"{n}-v" if rnd.random() < 0.7 else rnd.choice(pool)) for n in names
                                  if rnd.random() < 0.95}
            ev["title_id"] = rnd.choice(["t1", "t2", None, 1])
            if rnd.random() < 0.8:
                ev[SPEC.mappings[topic].event_time_field] = rnd.choice([T0, T0 + 1, "bad", 1.5e12])
            want: Any
            try:
                want = reference_map_event(SPEC, topic, ev, lambda t, k: catalog.get((t, k)))
            except (BadEventError, KeyError) as exc:
                want = getattr(exc, "reason", "KeyError")
            got: Any
            try:
                got = map_event(SPEC, topic, ev, lambda t, k: catalog.get((t, k)))
            except (BadEventError, KeyError) as exc:
                got = getattr(exc, "reason", "KeyError")
            assert got == want, (topic, ev)
            if isinstance(want, list):
                assert [{k: type(v) for k, v in r.properties.items()} for r in got] == \
                    [{k: type(v) for k, v in r.properties.items()} for r in want]
                mapper = compile_mapping(SPEC, topic)
                assert [row[0] for row in mapper.rows(ev, lambda t, k: catalog.get((t, k)))] == [r.dedup_key for r in want]


# --------------------------------------------------------------------------- event-time guard
DAY_MS = 86_400_000


def login(event_time: int) -> dict[str, Any]:
    return {"event_id": "e", "event_time": event_time, "account_id": "a1", "profile_id": "p1", "device_id": "d1",
            "device_type": "TV", "country": "NL", "app_version": "9", "plan": "premium"}


def test_event_beyond_the_allowed_skew_is_a_bad_event_for_every_path() -> None:
    ten_years = 10 * 365 * DAY_MS
    with pytest.raises(BadEventError) as info:
        map_event(SPEC, "member.login", login(T0 + ten_years), reference_ms=T0)
    assert info.value.reason == "event_time_in_future" and "allowed clock skew 300 s" in info.value.detail
    # within the default 5 minutes: accepted as is (an ordinary clock difference)
    assert map_event(SPEC, "member.login", login(T0 + 299_000), reference_ms=T0)
    # the bound is a parameter (RDG_STREAMING_MAX_CLOCK_SKEW_S)
    with pytest.raises(BadEventError):
        map_event(SPEC, "member.login", login(T0 + 2_000), reference_ms=T0, guard=TimeGuard(1_000))
    # the compiled mapper (what the processors run) decides the same way
    with pytest.raises(BadEventError, match="event_time_in_future"):
        compile_mapping(SPEC, "member.login").guarded_rows(login(T0 + 301_000), None, T0)
    # no reference: no time bound (callers that replay without ingest times)
    assert map_event(SPEC, "member.login", login(T0 + ten_years))


def test_records_older_than_their_namespace_ttl_are_left_out() -> None:
    # spec.yaml: nodes never expire (node_ttl_s 0); member edges live 100 days (edge_ttl_s 8640000)
    mapper = compile_mapping(SPEC, "member.login")
    live, expired = mapper.guarded_rows(login(T0 - 101 * DAY_MS), None, T0)
    assert {(r[1], r[2]) for r in live} == {("node", "account"), ("node", "device"), ("node", "profile")}
    assert {(r[1], r[2]) for r in expired} == {("edge", "logged_in_from"), ("edge", "has_profile")}
    # 99 days old: everything is still alive for a day
    live, expired = mapper.guarded_rows(login(T0 - 99 * DAY_MS), None, T0)
    assert len(live) == 5 and expired == []
    recs = map_event(SPEC, "member.login", login(T0 - 101 * DAY_MS), reference_ms=T0)
    assert {r.kind for r in recs} == {"node"}


def test_significant_properties_are_declared_in_the_spec_and_validated() -> None:
    import yaml

    from rdg_platform.model import SpecError, parse_spec
    from rdg_platform.model.spec import default_spec_path

    assert SPEC.significant_properties()[("edge", "started_watching")] == frozenset({"action"})
    doc = yaml.safe_load(default_spec_path().read_text())
    doc["edges"]["plays"]["significant"] = ["actoin"]
    with pytest.raises(SpecError, match="significant property 'actoin' is not declared"):
        parse_spec(doc)
    doc["edges"]["plays"]["significant"] = "action"
    with pytest.raises(SpecError, match="must be a list"):
        parse_spec(doc)
