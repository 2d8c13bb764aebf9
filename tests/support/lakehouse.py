"""Deterministic source events for lakehouse tests and benchmarks (all inside one chosen hour), and a
real PostgreSQL server for the Postgres catalog test.

Events carry millisecond event times that are unique per node/edge property, so per-property
last-write-wins has no ties (Cassandra's tie-break on equal timestamps is not deterministic).
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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


@contextmanager
def postgres_server(workdir: Path, port: int | None = None) -> Iterator[tuple[str, int]]:
    """A real PostgreSQL on 127.0.0.1 for the Postgres catalog test (the binaries of the ``pgserver``
    wheel, a dev dependency); yields ``(host, port)`` and stops the server on exit.

    ``pgserver.get_server`` only listens on a Unix socket, and Spark's JDBC driver needs TCP, so the
    server is run here. Postgres refuses to run as root: as root (CI), it runs as the system user
    ``pgserver`` (created, as pgserver itself does), from a copy of the binaries under ``workdir``
    that this user can reach (the venv under /root is not), with its data in ``workdir/pgdata``.
    """
    try:
        import pgserver
        from pgserver.utils import ensure_user_exists, find_suitable_port
    except ImportError as exc:
        raise RuntimeError("the Postgres catalog test needs the dev extra (pip install -e '.[dev]'): "
                           f"{exc}") from exc
    pkg = Path(pgserver.__file__).parent
    # The binaries find their libraries at $ORIGIN/../../../pgserver.libs: keep the wheel's layout.
    install, pgdata, log = workdir / "pgserver" / "pginstall", workdir / "pgdata", workdir / "server.log"
    workdir.mkdir(parents=True, exist_ok=True)
    for src, dst in [*((pkg / "pginstall" / p, install / p) for p in ("bin", "lib", "share")),
                     (pkg.parent / "pgserver.libs", workdir / "pgserver.libs")]:
        if not dst.exists():
            shutil.copytree(src, dst, symlinks=True)
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        entry = ensure_user_exists("pgserver")
        assert entry is not None
        # Its own group only: with root's groups, group bits (not "other") would decide access.
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        for d in (workdir, *workdir.parents):  # let the user reach workdir
            d.chmod(d.stat().st_mode | stat.S_IXOTH)
        for path in (workdir, *workdir.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def run(tool: str, *args: str) -> None:
        proc = subprocess.run([str(install / "bin" / tool), *args], capture_output=True, text=True, timeout=120,
                              **as_user)
        if proc.returncode != 0:
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                               f"\n{proc.stderr[-2000:]}\n{tail}")

    if not (pgdata / "PG_VERSION").exists():
        run("initdb", "-D", str(pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres")
    port = port or find_suitable_port("127.0.0.1")
    # TCP only: no Unix socket (its path under a deep temp dir can exceed the 107-byte limit).
    run("pg_ctl", "-D", str(pgdata), "-w", "-t", "60", "-l", str(log), "-o",
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''", "start")
    try:
        yield "127.0.0.1", port
    finally:
        run("pg_ctl", "-D", str(pgdata), "-w", "-m", "fast", "stop")
