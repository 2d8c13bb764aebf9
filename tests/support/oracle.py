"""What the source events mean, written down by hand: the tests' oracle of the graph.

This deliberately does not use the model spec or ``rdg_platform.model`` (mapping, LWW folding): the
streaming apps, the backfill and the Spark rebuild all run that code, so an expected graph computed
with it would agree with any bug in it. Here every event type's meaning is spelled out once, in plain
Python, from the contract (DESIGN.md: the default graph model), and the state after all events is the
per-property last-write-wins fold by event time that Cassandra applies.

A property whose value is absent (None) is not written. Catalog enrichment uses the catalog record
with the id in the events given (tests send the catalog first and never change it afterwards).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rdg_platform.model import GraphRecord

Event = tuple[str, str, Mapping[str, Any]]  # (topic, key, decoded value)
Rec = tuple[str, str, str, str | None, dict[str, Any]]  # (kind, type, id, dst, properties)


def _props(**kv: Any) -> dict[str, Any]:
    return {k: v for k, v in kv.items() if v is not None}


def meaning(topic: str, e: Mapping[str, Any], titles: Mapping[str, Mapping[str, Any]],
            games: Mapping[str, Mapping[str, Any]]) -> tuple[int, list[Rec]]:
    """The event time and the node/edge updates one event stands for."""
    if topic == "catalog.titles":
        return e["updated_at"], [("node", "title", e["title_id"], None, _props(
            name=e["name"], kind=e.get("kind"), runtime_min=e.get("runtime_min"), genres=e.get("genres"),
            maturity=e.get("maturity")))]
    if topic == "catalog.games":
        out: list[Rec] = [("node", "game", e["game_id"], None, _props(
            name=e["name"], franchise_title_id=e.get("franchise_title_id")))]
        if e.get("franchise_title_id") is not None:
            out.append(("edge", "based_on", e["game_id"], e["franchise_title_id"], {}))
        return e["updated_at"], out
    t = e["event_time"]
    acct, dev, prof = e["account_id"], e["device_id"], e.get("profile_id")
    device = ("node", "device", dev, None, _props(device_type=e.get("device_type"), last_seen_ts=t))
    if topic == "member.login":
        out = [("node", "account", acct, None, _props(country=e.get("country"), plan=e.get("plan"), last_seen_ts=t)),
               device,
               ("edge", "logged_in_from", acct, dev, _props(
                   last_login_ts=t, device_type=e.get("device_type"), country=e.get("country"),
                   app_version=e.get("app_version"), profile_id=prof))]
        if prof is not None:
            out += [("node", "profile", prof, None, _props(account_id=acct, last_seen_ts=t)),
                    ("edge", "has_profile", acct, prof, _props(last_seen_ts=t))]
        return t, out
    prof = str(prof)  # required on playback and gaming events
    common: list[Rec] = [("node", "account", acct, None, _props(last_seen_ts=t)),
                         ("node", "profile", prof, None, _props(account_id=acct, last_seen_ts=t)),
                         device,
                         ("edge", "has_profile", acct, prof, _props(last_seen_ts=t))]
    if topic == "member.playback":
        title = titles.get(e["title_id"], {})
        return t, common + [
            ("node", "title", e["title_id"], None, _props(
                name=title.get("name"), kind=title.get("kind"), runtime_min=title.get("runtime_min"),
                genres=title.get("genres"), maturity=title.get("maturity"))),
            ("edge", "streamed_from", acct, dev, _props(
                last_watch_ts=t, device_type=e.get("device_type"), profile_id=prof, title_id=e["title_id"])),
            ("edge", "started_watching", prof, e["title_id"], _props(
                last_watch_ts=t, device_id=dev, position_ms=e.get("position_ms"), episode_id=e.get("episode_id"),
                action=e.get("action"), is_live=e.get("is_live")))]
    if topic == "member.gaming":
        game = games.get(e["game_id"], {})
        return t, common + [
            ("node", "game", e["game_id"], None, _props(name=game.get("name"),
                                                        franchise_title_id=game.get("franchise_title_id"))),
            ("edge", "plays", prof, e["game_id"], _props(
                last_play_ts=t, device_id=dev, session_id=e.get("session_id"), action=e.get("action")))]
    raise ValueError(f"no meaning written down for topic {topic!r}")


def updates(events: Iterable[Event]) -> list[GraphRecord]:
    """Every event's node/edge updates, one by one and unmerged (what a sink writing each event's
    meaning as it arrives would write)."""
    evs = list(events)
    titles = {str(v["title_id"]): v for t, _k, v in evs if t == "catalog.titles"}
    games = {str(v["game_id"]): v for t, _k, v in evs if t == "catalog.games"}
    out: list[GraphRecord] = []
    for topic, _key, e in evs:
        ts, recs = meaning(topic, e, titles, games)
        out += [GraphRecord(kind, type_, str(rid), None if dst is None else str(dst), props, ts)  # type: ignore[arg-type]
                for kind, type_, rid, dst, props in recs]
    return out


def expected_state(events: Iterable[Event]) -> dict[str, GraphRecord]:
    """The graph after every event: per node/edge, each property's value at its latest event time
    (last write wins by event time), keyed like the store's dedup keys."""
    evs = list(events)
    titles = {str(v["title_id"]): v for t, _k, v in evs if t == "catalog.titles"}
    games = {str(v["game_id"]): v for t, _k, v in evs if t == "catalog.games"}
    cells: dict[tuple[str, str, str, str | None], dict[str, tuple[int, Any]]] = {}
    times: dict[tuple[str, str, str, str | None], int] = {}
    for topic, _key, e in evs:
        ts, recs = meaning(topic, e, titles, games)
        for kind, type_, rid, dst, props in recs:
            k = (kind, type_, str(rid), None if dst is None else str(dst))
            row = cells.setdefault(k, {})
            times[k] = max(times.get(k, ts), ts)
            for name, value in props.items():
                if name not in row or ts >= row[name][0]:
                    row[name] = (ts, value)
    out: dict[str, GraphRecord] = {}
    for k, row in cells.items():
        rec = GraphRecord(k[0], k[1], k[2], k[3], {n: v for n, (_t, v) in row.items()}, times[k])  # type: ignore[arg-type]
        out[rec.dedup_key] = rec
    return out
