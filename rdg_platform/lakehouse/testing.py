"""Deterministic source events for lakehouse tests and benchmarks (all inside one chosen hour).

Events carry millisecond event times that are unique per node/edge property, so per-property
last-write-wins has no ties (Cassandra's tie-break on equal timestamps is not deterministic).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class SourceEvent:
    topic: str
    key: str
    value: dict[str, Any]
    timestamp_ms: int  # Kafka timestamp (the producer's CreateTime)


def generate_events(hour_start_ms: int, n_members: int = 20, events_per_member: int = 10, seed: int = 7,
                    prefix: str = "lk") -> list[SourceEvent]:
    """Catalog records first (early in the hour), then member events spread over the hour.

    Kafka timestamp == event time, all strictly inside [hour_start, hour_start + 1h).
    """
    rnd = random.Random(seed)
    out: list[SourceEvent] = []
    ts_iter = _unique_times(hour_start_ms, rnd)
    titles = [f"{prefix}-t{i}" for i in range(8)]
    games = [f"{prefix}-g{i}" for i in range(4)]
    for i, t in enumerate(titles):
        ts = next(ts_iter)
        out.append(SourceEvent("catalog.titles", t, {
            "title_id": t, "name": f"Title {i}", "kind": rnd.choice(["SHOW", "MOVIE", "LIVE_EVENT"]),
            "runtime_min": rnd.choice([None, 42, 90]), "genres": rnd.sample(["drama", "comedy", "docs", "kids"], 2),
            "maturity": rnd.choice([None, "PG", "R"]), "updated_at": ts}, ts))
    for i, g in enumerate(games):
        ts = next(ts_iter)
        out.append(SourceEvent("catalog.games", g, {
            "game_id": g, "name": f"Game {i}", "franchise_title_id": rnd.choice([None, titles[i]]), "updated_at": ts}, ts))
    for m in range(n_members):
        acc = f"{prefix}-a{m}"
        profiles = [f"{acc}-p{j}" for j in range(2)]
        devices = [f"{acc}-d{j}" for j in range(2)]
        for _ in range(events_per_member):
            ts = next(ts_iter)
            kind = rnd.random()
            prof, dev = rnd.choice(profiles), rnd.choice(devices)
            dtype = rnd.choice(["PHONE", "TV", "WEB"])
            if kind < 0.3:
                out.append(SourceEvent("member.login", acc, {
                    "event_id": f"e{ts}", "event_time": ts, "account_id": acc,
                    "profile_id": rnd.choice([None, prof]), "device_id": dev, "device_type": dtype,
                    "country": rnd.choice([None, "US", "NL"]), "app_version": rnd.choice([None, "1.2"]),
                    "plan": rnd.choice([None, "premium", "ads"])}, ts))
            elif kind < 0.75:
                out.append(SourceEvent("member.playback", acc, {
                    "event_id": f"e{ts}", "event_time": ts, "account_id": acc, "profile_id": prof,
                    "device_id": dev, "device_type": dtype, "title_id": rnd.choice(titles),
                    "episode_id": rnd.choice([None, "ep1"]), "action": rnd.choice(["START", "HEARTBEAT", "STOP"]),
                    "position_ms": rnd.randrange(0, 10_000_000), "is_live": rnd.random() < 0.1}, ts))
            else:
                out.append(SourceEvent("member.gaming", acc, {
                    "event_id": f"e{ts}", "event_time": ts, "account_id": acc, "profile_id": prof,
                    "device_id": dev, "device_type": dtype, "game_id": rnd.choice(games),
                    "action": rnd.choice(["LAUNCH", "HEARTBEAT", "EXIT"]), "session_id": f"s{rnd.randrange(1000)}"}, ts))
    return out


def _unique_times(hour_start_ms: int, rnd: random.Random) -> Iterator[int]:
    used: set[int] = set()
    while True:
        t = hour_start_ms + 1 + rnd.randrange(HOUR_MS - 2)
        if t not in used:
            used.add(t)
            yield t
