"""Pure, deterministic generation of realistic member journeys (no Kafka, no registry).

The story, at scale: a member signs in on a PHONE and starts an episode, later continues the same
title on the TV (a new login, START at the old position, HEARTBEATs every few seconds, PAUSE/STOP),
then plays a game on a TABLET (LAUNCH / HEARTBEAT / EXIT). After that first chain each member keeps
alternating watching (continuing a title on another device 40% of the time) and gaming, with gaps,
until the simulated window ends.

Determinism: everything is drawn from ``random.Random`` instances seeded with strings derived from
``seed`` (string seeds hash with SHA-512, independent of PYTHONHASHSEED), and every time is
``start_ms`` + a simulated offset. The SAME config (seed, members, duration, start_ms, ...) yields
the SAME events, byte for byte once encoded. Wall-clock only enters through ``start_ms``, which the
CLI defaults to "now" (floored to the second); pass ``--start-time`` to reproduce a run exactly.

Member events are merged across members in event-time order (ties by member index, then sequence), as
a service fleet would write them. Bad records (``bad_fraction``) are *extra* records injected after
good ones from a separate random stream, so the good events of a seed never depend on it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Literal, TypeVar

_T = TypeVar("_T")

LOGIN, PLAYBACK, GAMING = "member.login", "member.playback", "member.gaming"
TITLES, GAMES = "catalog.titles", "catalog.games"
MEMBER_TOPICS = (LOGIN, PLAYBACK, GAMING)
CATALOG_TOPICS = (TITLES, GAMES)

BadKind = Literal["garbage", "wrong_schema_id", "unknown_schema_id", "truncated_avro", "missing_field",
                  "future_event_time"]
BAD_KINDS: tuple[BadKind, ...] = ("garbage", "wrong_schema_id", "unknown_schema_id", "truncated_avro", "missing_field",
                                  "future_event_time")
# Bad kinds that are valid Avro of the topic's schema (encoded like good records; the mapping rejects them).
VALUE_BAD_KINDS: frozenset[str] = frozenset({"missing_field", "future_event_time"})
# How far ahead a future_event_time record is dated: a device whose clock is years off.
FUTURE_SKEW_MS = 10 * 365 * 86_400_000
BAD_HEADER = "rdg-bad"
# What a consumer sees for each injected kind: the DecodeError reason from
# ``rdg_platform.avro.AvroSerde.decode_for_topic``, or for missing_field (which decodes fine) the
# model mapping's BadEventError reason.
EXPECTED_REASON: dict[str, str] = {
    "garbage": "not_confluent_framing",          # random bytes, first byte != 0
    "wrong_schema_id": "schema_mismatch",        # a valid body framed with another subject's id
    "unknown_schema_id": "unknown_schema_id",    # framed with an id nobody registered
    "truncated_avro": "avro_decode_error",       # right id, body cut short
    "missing_field": "missing_field",            # valid Avro, a required string field is ""
    "future_event_time": "event_time_in_future",  # valid Avro, event_time years ahead, Kafka timestamp normal
}
# Required string fields that missing_field blanks (the mapping's `require` minus event_time).
REQUIRED_STRINGS: dict[str, tuple[str, ...]] = {
    LOGIN: ("event_id", "account_id", "device_id"),
    PLAYBACK: ("event_id", "account_id", "profile_id", "device_id", "title_id"),
    GAMING: ("event_id", "account_id", "profile_id", "device_id", "game_id"),
}

DEVICE_TYPES = ("PHONE", "TABLET", "TV", "WEB", "CONSOLE")
_DEVICE_TYPE_W = (0.30, 0.20, 0.25, 0.15, 0.10)
_PROFILES_W = (0.25, 0.30, 0.22, 0.14, 0.09)        # 1..5 profiles
_DEVICES_W = (0.12, 0.25, 0.25, 0.18, 0.12, 0.08)   # 1..6 devices
_WATCH_PREF = {"TV": 4.0, "WEB": 1.5, "TABLET": 1.5, "PHONE": 1.2, "CONSOLE": 1.0}
_GAME_PREF = {"TABLET": 3.0, "PHONE": 2.5, "CONSOLE": 2.0, "TV": 0.2, "WEB": 0.2}
_COUNTRIES = ("US", "BR", "GB", "IN", "MX", "DE", "JP", "NL", "FR", "KR")
_COUNTRY_W = (0.35, 0.12, 0.08, 0.1, 0.07, 0.07, 0.06, 0.04, 0.06, 0.05)
_PLANS = ("standard", "premium", "ads")
_PLAN_W = (0.45, 0.25, 0.30)
# Cumulative weights of the constant distributions: random.choices(..., cum_weights=) draws exactly
# as choices(..., weights) does, without re-accumulating the weights on every call.
_DEVICE_TYPE_CW = tuple(accumulate(_DEVICE_TYPE_W))
_PROFILES_CW = tuple(accumulate(_PROFILES_W))
_DEVICES_CW = tuple(accumulate(_DEVICES_W))
_COUNTRY_CW = tuple(accumulate(_COUNTRY_W))
_PLAN_CW = tuple(accumulate(_PLAN_W))
_APP_VERSIONS = {"PHONE": ("15.2", "15.3", "16.0"), "TABLET": ("15.2", "16.0"), "TV": ("8.1", "8.2"),
                 "WEB": ("web-2025.10", "web-2025.11"), "CONSOLE": ("3.4",)}
_GENRES = ("drama", "comedy", "thriller", "documentary", "kids", "anime", "sci-fi", "romance", "crime", "reality")
_MATURITY = ("G", "PG", "PG-13", "TV-14", "R", "TV-MA", None)
_ADJ = ("Silent", "Crimson", "Hidden", "Last", "Golden", "Broken", "Midnight", "Wild", "Stranger", "Lost")
_NOUN = ("Harbor", "Kingdom", "Signal", "Garden", "Protocol", "River", "Crown", "Frontier", "Things", "Code")


@dataclass(frozen=True, slots=True)
class Event:
    """One Kafka record to send. ``value`` is the Avro record (dict) for good and most bad records;
    ``raw`` holds the literal bytes of a ``garbage`` record. ``timestamp_ms`` is the Kafka timestamp
    (= the event time, or ``updated_at`` for catalog records)."""

    topic: str
    key: str
    value: dict[str, Any] | None
    timestamp_ms: int
    bad: BadKind | None = None
    raw: bytes | None = None

    @property
    def headers(self) -> list[tuple[str, bytes]] | None:
        return None if self.bad is None else [(BAD_HEADER, self.bad.encode())]


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything the generated stream depends on (and nothing else)."""

    members: int = 100
    seed: int = 42
    start_ms: int = 1_767_225_600_000          # 2026-01-01T00:00:00Z; the CLI passes "now"
    duration_s: float = 600.0                  # simulated seconds of activity after start_ms
    max_events: int | None = None              # cap on good member events (a prefix of the stream)
    bad_fraction: float = 0.0                  # P(inject one bad record after a good member event)
    titles: int = 500
    games: int = 50
    zipf_s: float = 1.1                        # title/game popularity exponent
    id_prefix: str = ""                        # prepended to every id (tests use a unique one)
    heartbeat_s: float = 5.0                   # playback HEARTBEAT period
    game_heartbeat_s: float = 10.0
    # Session lengths are compressed (real ones run ~15-40 min) so a demo window of minutes shows
    # whole journeys; the phone session of the story chain is a quarter of mean_watch_s.
    mean_watch_s: float = 240.0
    mean_game_s: float = 180.0
    mean_gap_s: float = 120.0                  # idle time between sessions (5-60 s inside the story)
    include_catalog: bool = True

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError("members must be >= 1")
        if self.duration_s <= 0:
            raise ValueError("duration_s must be > 0")
        if not 0.0 <= self.bad_fraction <= 1.0:
            raise ValueError("bad_fraction must be within [0, 1]")
        if self.titles < 1 or self.games < 1:
            raise ValueError("titles and games must be >= 1")
        if self.max_events is not None and self.max_events < 0:
            raise ValueError("max_events must be >= 0")
        if self.heartbeat_s <= 0 or self.game_heartbeat_s <= 0:
            raise ValueError("heartbeat periods must be > 0")


@dataclass(frozen=True)
class Device:
    id: str
    type: str
    app_version: str


@dataclass(frozen=True)
class Member:
    index: int
    account_id: str
    country: str
    plan: str
    profiles: tuple[str, ...]
    devices: tuple[Device, ...]


@dataclass(frozen=True)
class Catalog:
    title_ids: tuple[str, ...]                 # most popular first
    title_kind: dict[str, str]
    title_runtime_min: dict[str, int | None]
    game_ids: tuple[str, ...]
    title_cum: tuple[float, ...] = field(repr=False, default=())
    game_cum: tuple[float, ...] = field(repr=False, default=())
    records: tuple[Event, ...] = field(repr=False, default=())


def _zipf_cum(n: int, s: float) -> tuple[float, ...]:
    return tuple(accumulate(1.0 / (k + 1) ** s for k in range(n)))


def weighted_choice(population: Sequence[_T], cum: Sequence[float], rnd: random.Random) -> _T:
    """One draw from ``population`` with cumulative weights ``cum``: ``rnd.choices(population,
    cum_weights=cum)[0]``, the same single draw and the same result (it is CPython's formula), without
    the general function's argument handling (it runs several times per session)."""
    return population[bisect(cum, rnd.random() * (cum[-1] + 0.0), 0, len(cum) - 1)]


def _pick(cum: Sequence[float], rnd: random.Random) -> int:
    return min(bisect(cum, rnd.random() * cum[-1]), len(cum) - 1)


def build_catalog(cfg: GeneratorConfig) -> Catalog:
    """The titles and games (ids ranked by popularity: index 0 is the Zipf head)."""
    rnd = random.Random(f"{cfg.seed}:catalog")
    p = cfg.id_prefix
    ts = cfg.start_ms
    titles: list[str] = []
    kinds: dict[str, str] = {}
    runtime: dict[str, int | None] = {}
    records: list[Event] = []
    for k in range(cfg.titles):
        tid = f"{p}t{k:05d}"
        kind = rnd.choices(("SHOW", "MOVIE", "LIVE_EVENT"), (0.6, 0.35, 0.05))[0]
        rt = rnd.randint(22, 60) if kind == "SHOW" else rnd.randint(80, 160) if kind == "MOVIE" else None
        titles.append(tid)
        kinds[tid] = kind
        runtime[tid] = rt
        value = {"title_id": tid, "name": f"The {rnd.choice(_ADJ)} {rnd.choice(_NOUN)} {k}", "kind": kind,
                 "runtime_min": rt, "genres": rnd.sample(_GENRES, rnd.randint(1, 3)),
                 "maturity": rnd.choice(_MATURITY), "updated_at": ts}
        records.append(Event(TITLES, tid, value, ts))
    games: list[str] = []
    for k in range(cfg.games):
        gid = f"{p}g{k:04d}"
        franchise = titles[rnd.randrange(min(50, len(titles)))] if rnd.random() < 0.6 else None
        value = {"game_id": gid, "name": f"{rnd.choice(_NOUN)} {rnd.choice(('Run', 'Quest', 'Puzzle', 'Tycoon'))} {k}",
                 "franchise_title_id": franchise, "updated_at": ts}
        games.append(gid)
        records.append(Event(GAMES, gid, value, ts))
    return Catalog(tuple(titles), kinds, runtime, tuple(games), _zipf_cum(cfg.titles, cfg.zipf_s),
                   _zipf_cum(cfg.games, cfg.zipf_s), tuple(records))


def make_member(cfg: GeneratorConfig, index: int, rnd: random.Random) -> Member:
    """An account with 1-5 profiles and 1-6 devices of mixed types (the first device is usually a
    phone: that is where the story starts)."""
    acc = f"{cfg.id_prefix}a{index:07d}"
    n_prof = weighted_choice(range(1, 6), _PROFILES_CW, rnd)
    n_dev = weighted_choice(range(1, 7), _DEVICES_CW, rnd)
    devices = []
    for j in range(n_dev):
        dtype = "PHONE" if j == 0 and rnd.random() < 0.8 else weighted_choice(DEVICE_TYPES, _DEVICE_TYPE_CW, rnd)
        devices.append(Device(f"{acc}-d{j}", dtype, rnd.choice(_APP_VERSIONS[dtype])))
    return Member(index, acc, weighted_choice(_COUNTRIES, _COUNTRY_CW, rnd), weighted_choice(_PLANS, _PLAN_CW, rnd),
                  tuple(f"{acc}-p{j}" for j in range(n_prof)), tuple(devices))


def _choose_device(m: Member, pref: dict[str, float], rnd: random.Random, avoid: Device | None = None) -> Device:
    cands = [d for d in m.devices if d is not avoid] or list(m.devices)
    return weighted_choice(cands, list(accumulate([pref[d.type] for d in cands])), rnd)


def _by_type(m: Member, dtype: str) -> Device | None:
    return next((d for d in m.devices if d.type == dtype), None)


@dataclass(slots=True)
class Login:
    """A sign-in: one event at ``t``, sequence number ``seq``. (Not ``frozen``: a frozen dataclass's
    ``__init__`` costs a ``object.__setattr__`` per field, and thousands are made per second; nothing
    mutates them.)"""

    t: int
    seq: int
    value: dict[str, Any]

    @property
    def topic(self) -> str:
        return LOGIN

    def event_at(self, ts: int) -> Event:
        return Event(LOGIN, self.value["account_id"], self.value, ts)

    def events(self, end: int) -> Iterator[tuple[int, int, Event]]:
        yield self.t, self.seq, Event(LOGIN, self.value["account_id"], self.value, self.t)


@dataclass(slots=True)
class Session:
    """A playback or game session as data: a ``first`` action at ``t0``, a HEARTBEAT every ``hb_ms``
    while ``< stop``, then ``final`` at ``stop``; events at or after the window ``end`` are cut off.

    Event ``k`` (0-based) has time ``t0 + k * hb_ms`` (``stop`` for the last one), sequence number
    ``seq0 + k`` and, for playback, position ``pos0 + (time - t0)``. Both renderings, the Event dicts
    here and the pre-encoded records of :mod:`rdg_platform.generator.render`, derive from this one
    description, so they cannot drift apart (a unit test checks they agree byte for byte). Not
    ``frozen`` for the same reason as :class:`Login`.
    """

    topic: str                     # PLAYBACK or GAMING
    t0: int
    seq0: int
    stop: int
    hb_ms: int
    final: str                     # STOP / PAUSE, or EXIT
    eid: str                       # event id prefix of the member (event_id = eid + str(seq))
    base: dict[str, Any]           # the fields that do not change within the session
    pos0: int = 0                  # playback position at t0
    live: bool = False

    @property
    def n_final(self) -> int:
        """Index of the final event (= the number of events before it)."""
        return -(-(self.stop - self.t0) // self.hb_ms)

    def times(self, end: int) -> list[int]:
        """Every event time of the session before ``end``."""
        ts = [self.t0, *range(self.t0 + self.hb_ms, self.stop, self.hb_ms), self.stop]
        return [t for t in ts if t < end] if ts[-1] >= end else ts

    def event_at(self, ts: int) -> Event:
        """The Event at time ``ts`` (one of :meth:`times`)."""
        k = -(-(ts - self.t0) // self.hb_ms)
        if self.topic == PLAYBACK:
            action = "START" if k == 0 else self.final if ts == self.stop else "HEARTBEAT"
            value = {"event_id": self.eid + str(self.seq0 + k), "event_time": ts, **self.base,
                     "action": action, "position_ms": self.pos0 + (ts - self.t0), "is_live": self.live}
        else:
            action = "LAUNCH" if k == 0 else self.final if ts == self.stop else "HEARTBEAT"
            value = {"event_id": self.eid + str(self.seq0 + k), "event_time": ts, **self.base, "action": action}
        return Event(self.topic, self.base["account_id"], value, ts)

    def events(self, end: int) -> Iterator[tuple[int, int, Event]]:
        seq0, t0, hb = self.seq0, self.t0, self.hb_ms
        for ts in self.times(end):
            yield ts, seq0 - (-(ts - t0) // hb), self.event_at(ts)


Segment = Login | Session


def member_segments(cfg: GeneratorConfig, cat: Catalog, index: int) -> Iterator[Segment]:
    """One member's journey as logins and sessions in time order (the random draws live here only).

    A session may start at or after the window end (it then has no events); nothing follows it.
    """
    rnd = random.Random(f"{cfg.seed}:member:{index}")
    m = make_member(cfg, index, rnd)
    acc = m.account_id
    end = cfg.start_ms + int(cfg.duration_s * 1000)
    eid = f"{cfg.id_prefix}e{cfg.seed}-{index}-"
    seq = 0
    hb_ms, ghb_ms = int(cfg.heartbeat_s * 1000), int(cfg.game_heartbeat_s * 1000)
    t = cfg.start_ms + int(rnd.random() * min(cfg.duration_s * 1000, cfg.mean_gap_s * 1000))
    # The canonical first chain: watch on the phone, continue on the TV, then a tablet game.
    story: list[tuple[str, Device | None]] = [("watch", _by_type(m, "PHONE")), ("continue", _by_type(m, "TV")),
                                              ("game", _by_type(m, "TABLET") or _by_type(m, "PHONE"))]
    last_title: str | None = None
    last_episode: str | None = None
    last_pos = 0
    last_dev: Device | None = None
    sessions = 0
    while t < end:
        profile = m.profiles[0] if rnd.random() < 0.6 else rnd.choice(m.profiles)
        in_story = bool(story)
        mean_watch_ms = cfg.mean_watch_s * 1000 * (0.25 if len(story) == 3 else 1.0)
        if story:
            what, dev = story.pop(0)
            dev = dev or _choose_device(m, _GAME_PREF if what == "game" else _WATCH_PREF, rnd,
                                        avoid=last_dev if what == "continue" else None)
            if what == "continue" and last_title is None:
                what = "watch"
        else:
            r = rnd.random()
            what = "game" if r < 0.25 else "continue" if r < 0.55 and last_title else "watch"
            dev = _choose_device(m, _GAME_PREF if what == "game" else _WATCH_PREF, rnd,
                                 avoid=last_dev if what == "continue" else None)
        # Sign in on the device (profile not chosen yet on 10% of logins).
        yield Login(t, seq, {
            "event_id": eid + str(seq), "event_time": t, "account_id": acc,
            "profile_id": profile if rnd.random() >= 0.1 else None, "device_id": dev.id, "device_type": dev.type,
            "country": m.country, "app_version": dev.app_version, "plan": m.plan})
        seq += 1
        t += rnd.randint(1_000, 15_000)
        sessions += 1
        if what == "game":
            gid = cat.game_ids[_pick(cat.game_cum, rnd)]
            sid = f"{cfg.id_prefix}s{cfg.seed}-{index}-{sessions}"
            stop = t + max(30_000, int(rnd.expovariate(1.0 / (cfg.mean_game_s * 1000))))
            session = Session(GAMING, t, seq, stop, ghb_ms, "EXIT", eid,
                              {"account_id": acc, "profile_id": profile, "device_id": dev.id,
                               "device_type": dev.type, "game_id": gid, "session_id": sid})
        else:
            if what == "continue" and last_title is not None:
                title, episode, pos = last_title, last_episode, last_pos
            else:
                title = cat.title_ids[_pick(cat.title_cum, rnd)]
                kind = cat.title_kind[title]
                episode = f"{title}-s{rnd.randint(1, 4)}e{rnd.randint(1, 10)}" if kind == "SHOW" else None
                pos = 0
            live = cat.title_kind[title] == "LIVE_EVENT"
            rt = cat.title_runtime_min[title]
            remaining = (rt * 60_000 - pos) if rt else 3 * 3_600_000
            watch = min(max(20_000, int(rnd.expovariate(1.0 / mean_watch_ms))), max(20_000, remaining))
            finished = watch >= remaining
            final = "STOP" if finished or rnd.random() < 0.65 else "PAUSE"
            stop = t + watch
            session = Session(PLAYBACK, t, seq, stop, hb_ms, final, eid,
                              {"account_id": acc, "profile_id": profile, "device_id": dev.id,
                               "device_type": dev.type, "title_id": title, "episode_id": episode}, pos, live)
            last_title, last_episode, last_dev = title, episode, dev
            last_pos = 0 if finished else pos + watch
        yield session
        # A session cut off by the window end is the member's last: the loop below ends too.
        seq += session.n_final + 1
        t = session.stop
        t += rnd.randint(5_000, 60_000) if in_story else max(5_000, int(rnd.expovariate(1.0 / (cfg.mean_gap_s * 1000))))


def member_events(cfg: GeneratorConfig, cat: Catalog, index: int) -> Iterator[tuple[int, int, int, Event]]:
    """One member's events in time order, as ``(event_time, member index, seq, Event)`` for merging."""
    end = cfg.start_ms + int(cfg.duration_s * 1000)
    for seg in member_segments(cfg, cat, index):
        for ts, seq, ev in seg.events(end):
            yield ts, index, seq, ev


def make_bad(ev: Event, rnd: random.Random) -> Event:
    """The bad record injected after ``ev``: a kind drawn from ``rnd``, then its bytes or its blanked field."""
    kind = BAD_KINDS[rnd.randrange(len(BAD_KINDS))]
    assert ev.value is not None
    if kind == "garbage":
        raw = bytes([rnd.randint(1, 255)]) + rnd.randbytes(rnd.randint(4, 64))
        return Event(ev.topic, ev.key, None, ev.timestamp_ms, kind, raw)
    value = dict(ev.value)
    value["event_id"] = f"{value['event_id']}-bad"
    if kind == "missing_field":
        value[rnd.choice(REQUIRED_STRINGS[ev.topic])] = ""
    elif kind == "future_event_time":  # the Kafka timestamp stays the good event's: only the device clock is off
        value["event_time"] = int(value["event_time"]) + FUTURE_SKEW_MS
    return Event(ev.topic, ev.key, value, ev.timestamp_ms, kind)


def member_stream(cfg: GeneratorConfig, cat: Catalog | None = None) -> Iterator[Event]:
    """All members' good events merged in event-time order, capped at ``max_events``."""
    cat = cat or build_catalog(cfg)
    merged = heapq.merge(*(member_events(cfg, cat, i) for i in range(cfg.members)))
    events: Iterator[Event] = (item[3] for item in merged)
    if cfg.max_events is not None:
        events = itertools.islice(events, cfg.max_events)
    return events


def generate_events(cfg: GeneratorConfig) -> Iterator[Event]:
    """The whole deterministic stream: catalog records first, then member events (with bad records
    injected after good ones when ``bad_fraction`` > 0)."""
    cat = build_catalog(cfg)
    if cfg.include_catalog:
        yield from cat.records
    if cfg.bad_fraction <= 0:
        yield from member_stream(cfg, cat)
        return
    bad_rnd = random.Random(f"{cfg.seed}:bad")
    frac = cfg.bad_fraction
    for ev in member_stream(cfg, cat):
        yield ev
        if bad_rnd.random() < frac:
            yield make_bad(ev, bad_rnd)
