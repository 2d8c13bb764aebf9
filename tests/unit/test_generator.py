"""Unit tests of the pure journey generator (no Kafka, no registry)."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from pathlib import Path

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdg_platform.avro import HEADER, AvroSerde
from rdg_platform.avro.encoder import compile_encoder, fields_encoder
from rdg_platform.generator import (
    BAD_KINDS,
    EXPECTED_REASON,
    Event,
    EventEncoder,
    GeneratorConfig,
    build_catalog,
    generate_events,
    make_member,
)
from rdg_platform.generator.journeys import MEMBER_TOPICS, REQUIRED_STRINGS
from rdg_platform.generator.render import encoded_batches, worker_batches
from rdg_platform.model import BadEventError, default_spec, map_event

BASE = 1_767_225_600_000


def _events(**kw: object) -> list[Event]:
    cfg = GeneratorConfig(**{"members": 40, "seed": 3, "start_ms": BASE, "duration_s": 900.0, **kw})  # type: ignore[arg-type]
    return list(generate_events(cfg))


def _fingerprint(evs: list[Event]) -> str:
    return json.dumps([(e.topic, e.key, e.value, e.timestamp_ms, e.bad, e.raw.hex() if e.raw else None) for e in evs],
                      sort_keys=True)


def test_same_seed_same_events() -> None:
    assert _fingerprint(_events()) == _fingerprint(_events())


def test_different_seed_different_events() -> None:
    a, b = _events(seed=3), _events(seed=4)
    assert _fingerprint(a) != _fingerprint(b)
    # not just different ids: the journeys differ (device types / titles watched)
    titles_a = Counter(e.value["title_id"] for e in a if e.topic == "member.playback" and e.value)
    titles_b = Counter(e.value["title_id"] for e in b if e.topic == "member.playback" and e.value)
    assert titles_a != titles_b


def test_start_time_only_shifts_times() -> None:
    a, b = _events(), _events(start_ms=BASE + 3_600_000)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert y.timestamp_ms - x.timestamp_ms == 3_600_000
        assert x.value is not None and y.value is not None
        assert x.value.get("event_id") == y.value.get("event_id")


def test_catalog_first_then_member_events_in_time_order() -> None:
    evs = _events()
    cfg = GeneratorConfig(members=40, seed=3, start_ms=BASE)
    n_cat = cfg.titles + cfg.games
    assert {e.topic for e in evs[:n_cat]} == {"catalog.titles", "catalog.games"}
    assert all(e.topic in MEMBER_TOPICS for e in evs[n_cat:])
    times = [e.timestamp_ms for e in evs[n_cat:]]
    assert times == sorted(times)
    assert BASE <= times[0] and times[-1] < BASE + 900_000
    assert all(e.key == e.value["account_id"] for e in evs[n_cat:] if e.value)
    ids = [e.value["event_id"] for e in evs[n_cat:] if e.value]
    assert len(ids) == len(set(ids))


def test_profile_and_device_counts_in_range() -> None:
    cfg = GeneratorConfig(seed=11)
    profiles, devices, types = Counter[int](), Counter[int](), Counter[str]()
    for i in range(2000):
        m = make_member(cfg, i, random.Random(f"{cfg.seed}:member:{i}"))
        profiles[len(m.profiles)] += 1
        devices[len(m.devices)] += 1
        types.update(d.type for d in m.devices)
        assert len({d.id for d in m.devices}) == len(m.devices)
    assert set(profiles) == {1, 2, 3, 4, 5}
    assert set(devices) == {1, 2, 3, 4, 5, 6}
    assert set(types) == {"PHONE", "TABLET", "TV", "WEB", "CONSOLE"}


def test_title_popularity_is_zipf_skewed() -> None:
    evs = _events(members=200, titles=200)
    starts = Counter(e.value["title_id"] for e in evs if e.topic == "member.playback" and e.value
                     and e.value["action"] == "START")
    ranked = [n for _t, n in starts.most_common()]
    total = sum(ranked)
    # Zipf(1.1) over 200 titles: the head title alone ~17%, top 10 ~50%; uniform would be 0.5% / 5%.
    assert starts["t00000"] == ranked[0]
    assert ranked[0] / total > 0.08
    assert sum(ranked[:10]) / total > 0.3


def test_playback_sessions_have_start_heartbeats_and_end() -> None:
    cfg = GeneratorConfig(members=30, seed=5, start_ms=BASE, duration_s=3600.0)
    evs = [e for e in generate_events(cfg) if e.topic == "member.playback" and e.value]
    by_stream: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for e in evs:
        assert e.value is not None
        by_stream.setdefault((e.value["account_id"], e.value["device_id"], e.value["title_id"]), []).append(e.value)
    actions = Counter(v["action"] for v in (x.value for x in evs) if v)
    assert actions["HEARTBEAT"] > 5 * actions["START"]
    assert actions["STOP"] + actions["PAUSE"] > 0
    # heartbeats of one session are heartbeat_s apart in event time, and positions advance with time
    for vals in by_stream.values():
        for a, b in zip(vals, vals[1:], strict=False):
            if a["action"] in ("START", "HEARTBEAT") and b["action"] == "HEARTBEAT":
                assert b["event_time"] - a["event_time"] == 5000  # type: ignore[operator]
                assert b["position_ms"] - a["position_ms"] == 5000  # type: ignore[operator]


def test_games_have_launch_heartbeat_exit_sessions() -> None:
    cfg = GeneratorConfig(members=40, seed=6, start_ms=BASE, duration_s=3600.0)
    sessions: dict[str, list[str]] = {}
    for e in generate_events(cfg):
        if e.topic == "member.gaming" and e.value:
            sessions.setdefault(e.value["session_id"], []).append(e.value["action"])
    assert sessions
    for acts in sessions.values():
        assert acts[0] == "LAUNCH"
        assert all(a == "HEARTBEAT" for a in acts[1:-1])
    assert sum(1 for a in sessions.values() if a[-1] == "EXIT") > len(sessions) / 2


def test_story_phone_then_tv() -> None:
    """Members with a phone and a TV start on the phone, then continue the same title on the TV."""
    cfg = GeneratorConfig(members=60, seed=8, start_ms=BASE, duration_s=7200.0)
    starts: dict[str, list[tuple[str, str, int]]] = {}
    for e in generate_events(cfg):
        if e.topic == "member.playback" and e.value and e.value["action"] == "START":
            starts.setdefault(e.key, []).append((e.value["device_type"], e.value["title_id"], e.value["position_ms"]))
    seen = 0
    for i in range(cfg.members):
        m = make_member(cfg, i, random.Random(f"{cfg.seed}:member:{i}"))
        types = [d.type for d in m.devices]
        s = starts.get(m.account_id, [])
        if "PHONE" in types and "TV" in types and len(s) >= 2:
            assert s[0][0] == "PHONE" and s[1][0] == "TV"
            assert s[0][1] == s[1][1] and s[1][2] > 0  # same title, resumed position
            seen += 1
    assert seen >= 5


def test_events_cap_is_a_prefix() -> None:
    full = _events()
    capped = _events(max_events=100)
    cfg = GeneratorConfig(members=40, seed=3, start_ms=BASE)
    n_cat = cfg.titles + cfg.games
    assert len(capped) == n_cat + 100
    assert _fingerprint(capped) == _fingerprint(full[: n_cat + 100])


def test_events_map_to_graph_records() -> None:
    spec = default_spec()
    cat = {e.key: e.value for e in _events()[:550]}
    for e in _events()[550:]:
        assert e.value is not None
        recs = map_event(spec, e.topic, e.value, lambda _t, k: cat.get(k))
        assert recs


def test_bad_fraction_mix_and_good_stream_unchanged() -> None:
    clean = _events(members=100)
    mixed = _events(members=100, bad_fraction=0.05)
    good = [e for e in mixed if e.bad is None]
    assert _fingerprint(good) == _fingerprint(clean)  # bad records are extra; good ones unchanged
    bad = [e for e in mixed if e.bad is not None]
    n_member = sum(1 for e in clean if e.topic in MEMBER_TOPICS)
    assert 0.03 * n_member < len(bad) < 0.07 * n_member
    kinds = Counter(e.bad for e in bad)
    assert set(kinds) == set(BAD_KINDS)
    assert set(EXPECTED_REASON) == set(BAD_KINDS)
    spec = default_spec()
    for e in bad:
        assert e.topic in MEMBER_TOPICS
        assert e.headers == [("rdg-bad", e.bad.encode())]  # type: ignore[union-attr]
        if e.bad == "garbage":
            assert e.raw and e.raw[0] != 0 and e.value is None
        elif e.bad == "missing_field":
            assert e.value is not None
            blank = [f for f in REQUIRED_STRINGS[e.topic] if e.value[f] == ""]
            assert len(blank) == 1
            with pytest.raises(BadEventError) as exc:
                map_event(spec, e.topic, e.value, lambda _t, _k: None)
            assert exc.value.reason == "missing_field"
        else:
            assert e.value is not None and e.value["event_id"].endswith("-bad")


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(members=0)
    with pytest.raises(ValueError):
        GeneratorConfig(bad_fraction=1.5)
    with pytest.raises(ValueError):
        GeneratorConfig(duration_s=0)


def test_catalog_ids_and_prefix() -> None:
    cat = build_catalog(GeneratorConfig(titles=7, games=3, id_prefix="x-"))
    assert cat.title_ids[0] == "x-t00000" and len(cat.title_ids) == 7
    assert [r.topic for r in cat.records] == ["catalog.titles"] * 7 + ["catalog.games"] * 3
    franchises = {r.value["franchise_title_id"] for r in cat.records if r.topic == "catalog.games" and r.value}
    assert franchises - {None} <= set(cat.title_ids)


def test_cli_help_and_dry_run() -> None:
    import typer
    from typer.testing import CliRunner

    from rdg_platform.cli.generate import generate

    app = typer.Typer()
    app.command("generate")(generate)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--help"])
    assert res.exit_code == 0 and "--bad-fraction" in res.output and "--start-time" in res.output
    res = runner.invoke(app, ["generate", "--dry-run", "--members", "5", "--duration", "120",
                              "--start-time", "2026-01-01T00:00:00Z", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "catalog.titles" in res.output and "1767225600000" in res.output
    assert Path(__file__).exists()


# --- the encoded stream of `rdg generate` (no Kafka, no registry: schema ids are installed directly) ---

def _serde() -> AvroSerde:
    spec = default_spec()
    serde = AvroSerde("http://127.0.0.1:1/never-called", schemas={t: s.schema for t, s in spec.sources.items()})
    for i, (t, s) in enumerate(spec.sources.items()):
        serde.install_writer(t, s.schema, 101 + i)  # as register_all would, without a registry
    return serde


def _reference(cfg: GeneratorConfig, serde: AvroSerde) -> list[tuple[str, bytes, bytes, int, object]]:
    enc = EventEncoder(serde)
    return [(e.topic, enc.value(e), e.key.encode(), e.timestamp_ms, e.headers) for e in generate_events(cfg)]


def _encoded(cfg: GeneratorConfig, serde: AvroSerde, *, worker: bool = False
             ) -> tuple[list[tuple[str, bytes, bytes | None, int, list[tuple[str, bytes]] | None]], Counter[str],
                        Counter[tuple[str, str]]]:
    counts: Counter[str] = Counter()
    bad: Counter[tuple[str, str]] = Counter()
    make = worker_batches if worker else encoded_batches
    recs = [(r[0], r[1], r[2], r[3], r[4]) for b in make(cfg, serde, counts, bad) for r in b]
    return recs, counts, bad


def _check_same(cfg: GeneratorConfig, serde: AvroSerde, *, worker: bool = False) -> int:
    ref = _reference(cfg, serde)
    got, counts, bad = _encoded(cfg, serde, worker=worker)
    assert got == ref  # same records, byte for byte, in the same order
    assert counts == Counter(r[0] for r in ref if r[4] is None)
    assert bad == Counter((r[0], r[4][0][1].decode()) for r in ref if r[4])  # type: ignore[index]
    return len(ref)


@pytest.mark.parametrize("kw", [
    {"members": 200, "seed": 1, "duration_s": 1800.0},
    {"members": 50, "seed": 3, "duration_s": 900.0, "bad_fraction": 0.05},
    {"members": 40, "seed": 3, "duration_s": 900.0, "max_events": 1234, "bad_fraction": 0.1},
    {"members": 40, "seed": 3, "duration_s": 900.0, "max_events": 999, "include_catalog": False},
    {"members": 3, "seed": 9, "duration_s": 36_000.0, "heartbeat_s": 3.3, "game_heartbeat_s": 7.7},
    {"members": 5, "seed": 2, "duration_s": 600.0, "start_ms": 0},  # times outside the inlined varints
    {"members": 5, "seed": 2, "duration_s": 600.0, "id_prefix": "ü-🎬-"},
])
def test_encoded_stream_is_the_reference_stream(kw: dict[str, object]) -> None:
    cfg = GeneratorConfig(**{"start_ms": BASE, **kw})  # type: ignore[arg-type]
    assert _check_same(cfg, _serde()) > 0


@settings(max_examples=25, deadline=None)
@given(members=st.integers(1, 30), seed=st.integers(0, 10_000), duration_s=st.floats(1.0, 7200.0),
       start_ms=st.integers(-(1 << 40), 1 << 42), bad_fraction=st.sampled_from([0.0, 0.02, 0.3]),
       heartbeat_s=st.sampled_from([1.0, 5.0, 12.5]), max_events=st.one_of(st.none(), st.integers(0, 3000)))
def test_encoded_stream_matches_reference_for_any_config(members: int, seed: int, duration_s: float, start_ms: int,
                                                         bad_fraction: float, heartbeat_s: float,
                                                         max_events: int | None) -> None:
    """Spliced heartbeats, window merge, bad records and the cap agree with generate_events +
    EventEncoder (itself byte-identical to fastavro, tests/unit/test_serde.py) for any config."""
    cfg = GeneratorConfig(members=members, seed=seed, duration_s=duration_s, start_ms=start_ms, titles=30, games=5,
                          bad_fraction=bad_fraction, heartbeat_s=heartbeat_s, max_events=max_events)
    _check_same(cfg, _SERDE)


_SERDE = _serde()


def test_spliced_values_decode_with_fastavro() -> None:
    """Independent of the serde's encoder: every spliced value is the fastavro encoding of its Event."""
    spec = default_spec()
    cfg = GeneratorConfig(members=20, seed=4, start_ms=BASE, duration_s=900.0)
    serde = _serde()
    got, _c, _b = _encoded(cfg, serde)
    for (topic, value, _k, _ts, _h), ev in zip(got, generate_events(cfg), strict=True):
        assert ev.value is not None
        bio = io.BytesIO()
        fastavro.schemaless_writer(bio, fastavro.parse_schema(dict(spec.sources[ev.topic].schema)), ev.value)
        assert topic == ev.topic and value == HEADER.pack(0, serde.schema_id(topic)) + bio.getvalue()


def test_worker_process_stream_is_the_same() -> None:
    cfg = GeneratorConfig(members=60, seed=5, start_ms=BASE, duration_s=1200.0, bad_fraction=0.03)
    assert _check_same(cfg, _serde(), worker=True) > 1000


def test_fields_encoder_is_part_of_the_record_body() -> None:
    schema = dict(default_spec().sources["member.playback"].schema)
    rec = {"event_id": "e1", "event_time": BASE, "account_id": "a", "profile_id": "p", "device_id": "d",
           "device_type": "TV", "title_id": "t", "episode_id": None, "action": "HEARTBEAT", "position_ms": 5000,
           "is_live": True}
    names = [f["name"] for f in schema["fields"]]
    body = compile_encoder(schema, b"")(rec)
    parts = b"".join(fields_encoder(schema, [n])(rec) for n in names)
    assert parts == body
    assert fields_encoder(schema, names[2:8])(rec) + fields_encoder(schema, names[8:])(rec) == body[len(
        fields_encoder(schema, names[:2])(rec)):]
    with pytest.raises(ValueError):
        fields_encoder(schema, ["account_id", "title_id"])  # not a contiguous run


@given(st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=1, max_size=8), st.integers(0, 2**32))
def test_choice_draws_exactly_like_random_choices(weights: list[float], seed: int) -> None:
    """The generator's cheap draw must give random.choices' result and leave the same RNG state, or
    a seed's stream would change."""
    from itertools import accumulate

    from rdg_platform.generator.journeys import weighted_choice

    pop = list(range(len(weights)))
    cum = list(accumulate(weights))
    a, b = random.Random(seed), random.Random(seed)
    for _ in range(20):
        assert weighted_choice(pop, cum, a) == b.choices(pop, cum_weights=cum)[0]
        assert weighted_choice(pop, cum, a) == b.choices(pop, weights)[0]
    assert a.random() == b.random()


def test_gc_paused_restores_the_collector() -> None:
    import gc

    from rdg_platform.gcpause import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # was off before: stays off
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
