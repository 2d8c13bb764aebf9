"""Helpers for streaming integration tests and the benchmark: an isolated pipeline and workloads.

:class:`LocalPipeline` runs the real apps under the real supervisor, isolated from anything else on
the shared services: its own keyspace, consumer groups, state dir and metrics ports, and
``auto_offset_reset=latest`` (it only processes what is produced after it is assigned). Workloads
use unique ids per run, and :func:`expected_graph` computes, with the same pure mapping the apps
use, the graph a correct pipeline must converge to, so tests compare *exact* final states.
"""

from __future__ import annotations

import random
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cassandra import OperationTimedOut
from cassandra.cluster import NoHostAvailable
from confluent_kafka import Producer

from rdg_platform.avro import AvroSerde
from rdg_platform.kafka_client import client_config
from rdg_platform.kv import GraphStore, KVError
from rdg_platform.model.mapping import GraphRecord
from rdg_platform.model.spec import GraphSpec
from rdg_platform.settings import KafkaSettings, Settings, load_settings
from rdg_platform.streaming.apps import app_specs
from rdg_platform.streaming.runtime import provision_topics, wait_groups_assigned
from rdg_platform.streaming.supervisor import AppSupervisor
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.oracle import expected_state

Event = tuple[str, str, dict[str, Any]]  # (topic, key, Avro record)


def free_port_block(n: int) -> int:
    """A base port with ``n`` consecutive free ports (best effort, for per-test metrics ports)."""
    for _ in range(50):
        base = random.randint(20000, 60000 - n)
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


@dataclass
class LocalPipeline:
    """Every streaming app of the registry, supervised, isolated by keyspace/groups/ports."""

    settings: Settings
    spec: GraphSpec
    supervisor: AppSupervisor

    def groups(self) -> list[str]:
        return [a.consumer_group for a in self.supervisor.apps()]


def pipeline_settings(base: Settings, *, keyspace: str, state_dir: Path, name: str, window_s: float,
                      extra: Mapping[str, str] | None = None) -> Settings:
    """``base`` moved to its own keyspace, state dir, consumer groups and metrics ports, starting
    at the end of the topics (it only sees what is produced once it is assigned); ``extra`` RDG_*
    values on top."""
    env = base.child_env(base={})
    n_apps = len(app_specs(isolated_spec(keyspace, base), base.streaming, base.topics_file))
    env.update({"RDG_CASSANDRA_KEYSPACE": keyspace, "RDG_STATE_DIR": str(state_dir),
                "RDG_STREAMING_METRICS_BASE_PORT": str(free_port_block(n_apps)),
                "RDG_STREAMING_GROUP_PREFIX": f"rdgtest-{name}-{uuid.uuid4().hex[:8]}",
                "RDG_STREAMING_OFFSET_RESET": "latest", "RDG_STREAMING_DEDUP_WINDOW_S": str(window_s),
                "RDG_STREAMING_SINK_COMMIT_S": "0.5", "RDG_STREAMING_SINK_BACKPRESSURE_S": "3"})
    env.update(extra or {})
    return load_settings(env)


@contextmanager
def local_pipeline(base: Settings, window_s: float = 2.0, name: str = "stream",
                   extra: Mapping[str, str] | None = None, assign_timeout_s: float = 120.0) -> Iterator[LocalPipeline]:
    """Start the apps in a fresh keyspace (tables and topics provisioned first, as an operator
    would); yield once every consumer group is assigned; tear down."""
    keyspace = unique_keyspace(f"rdg_test_{name}")
    state = Path(tempfile.mkdtemp(prefix=f"rdg-{name}-"))
    settings = pipeline_settings(base, keyspace=keyspace, state_dir=state, name=name, window_s=window_s, extra=extra)
    spec = settings.load_spec()
    provision_topics(settings, spec)
    store = GraphStore.from_spec(spec, settings.cassandra)
    store.ensure_schema()
    sup = AppSupervisor(settings)
    pipe = LocalPipeline(settings, spec, sup)
    try:
        sup.up(wait_s=60)
        wait_groups_assigned(settings.kafka, pipe.groups(), assign_timeout_s)
        yield pipe
    finally:
        sup.down()
        try:
            store.kv.drop_keyspaces()
        except (NoHostAvailable, OperationTimedOut, KVError):  # Cassandra may be what the test stopped
            pass
        store.close()


# ---------------------------------------------------------------------------------- workloads
def catalog_events(run: str, t0: int, n_titles: int = 3, n_games: int = 2) -> list[Event]:
    out: list[Event] = []
    for i in range(n_titles):
        tid = f"t-{run}-{i}"
        out.append(("catalog.titles", tid, {"title_id": tid, "name": f"Title {run} {i}", "kind": "SHOW",
                                            "runtime_min": 40 + i, "genres": ["drama", f"g{i}"], "maturity": "13+",
                                            "updated_at": t0 - 86_400_000}))
    for i in range(n_games):
        gid = f"g-{run}-{i}"
        out.append(("catalog.games", gid, {"game_id": gid, "name": f"Game {run} {i}", "franchise_title_id": f"t-{run}-0",
                                           "updated_at": t0 - 86_400_000}))
    return out


def journey_events(run: str, t0: int, accounts: int = 3, heartbeats: int = 20, n_titles: int = 3,
                   n_games: int = 2) -> list[Event]:
    """Per account: a login, a playback START + heartbeats + STOP, a game session. Deterministic."""
    out: list[Event] = []
    for a in range(accounts):
        acc, prof, dev = f"acc-{run}-{a}", f"p-{run}-{a}", f"d-{run}-{a}"
        title, game = f"t-{run}-{a % n_titles}", f"g-{run}-{a % n_games}"
        t = t0 + a * 1000
        out.append(("member.login", acc, {"event_id": f"l-{run}-{a}", "event_time": t, "account_id": acc,
                                          "profile_id": prof, "device_id": dev, "device_type": "TV", "country": "NL",
                                          "app_version": "9.1", "plan": "premium"}))
        actions = ["START"] + ["HEARTBEAT"] * heartbeats + ["STOP"]
        for i, action in enumerate(actions):
            out.append(("member.playback", acc, {"event_id": f"pb-{run}-{a}-{i}", "event_time": t + 10 + i * 10,
                                                 "account_id": acc, "profile_id": prof, "device_id": dev,
                                                 "device_type": "TV", "title_id": title, "episode_id": None,
                                                 "action": action, "position_ms": i * 10_000, "is_live": False}))
        for i, action in enumerate(["LAUNCH", "HEARTBEAT", "EXIT"]):
            out.append(("member.gaming", acc, {"event_id": f"gm-{run}-{a}-{i}", "event_time": t + 500 + i,
                                               "account_id": acc, "profile_id": prof, "device_id": dev,
                                               "device_type": "TV", "game_id": game, "session_id": f"s-{run}-{a}",
                                               "action": action}))
    return out


def expected_graph(events: Iterable[Event]) -> dict[str, GraphRecord]:
    """The graph the pipeline must converge to: what the events mean (:mod:`tests.support.oracle`,
    written down by hand, not the mapping the apps run), last write wins per property."""
    return expected_state(events)


def read_graph(store: GraphStore, keys: Iterable[GraphRecord]) -> dict[str, GraphRecord]:
    """Read back every node/edge of ``keys`` from the store (absent ones are missing from the result)."""
    out: dict[str, GraphRecord] = {}
    edges_needed: dict[tuple[str, str], set[str]] = {}
    for r in keys:
        if r.kind == "node":
            n = store.get_node(r.type, r.id)
            if n is not None:
                out[r.dedup_key] = GraphRecord("node", r.type, r.id, None, n.properties, n.updated_at)
        else:
            edges_needed.setdefault((r.type, r.id), set()).add(r.dst or "")
    for (etype, src), dsts in edges_needed.items():
        page = store.edges(etype, src, "out", limit=1000, order="any")
        for e in page.edges:
            if e.dst in dsts:
                g = GraphRecord("edge", etype, src, e.dst, e.properties, e.updated_at)
                out[g.dedup_key] = g
    return out


def diff_graph(expected: Mapping[str, GraphRecord], actual: Mapping[str, GraphRecord]) -> list[str]:
    """Human-readable differences (empty when the graphs are equal)."""
    problems = []
    for k, e in expected.items():
        a = actual.get(k)
        if a is None:
            problems.append(f"missing {k.replace(chr(31), '/')}")
        elif dict(a.properties) != dict(e.properties) or a.updated_at != e.updated_at:
            problems.append(f"differs {k.replace(chr(31), '/')}: expected {dict(e.properties)}@{e.updated_at}, "
                            f"got {dict(a.properties)}@{a.updated_at}")
    return problems


def wait_graph(store: GraphStore, expected: Mapping[str, GraphRecord], timeout_s: float, poll_s: float = 1.0) -> list[str]:
    """Poll until the store holds exactly ``expected`` (returns [] ) or the timeout (returns the diff).

    ``poll_s`` is the resolution of the wait: latency measurements (the benchmark's freshness) poll
    fast so the measurement does not add up to a second of its own."""
    deadline = time.monotonic() + timeout_s
    problems: list[str] = ["not checked"]
    while time.monotonic() < deadline:
        try:
            problems = diff_graph(expected, read_graph(store, expected.values()))
        except (NoHostAvailable, OperationTimedOut, KVError) as exc:  # Cassandra restarting: poll again
            problems = [f"store unavailable: {exc}"]
        if not problems:
            return []
        time.sleep(poll_s)
    return problems


def produce_events(kafka: KafkaSettings, serde: AvroSerde, events: Sequence[Event], rate: float | None = None,
                   raw: Sequence[tuple[str, str, bytes]] = ()) -> None:
    """Encode and produce ``events`` (paced to ``rate``/s when given), plus raw (bad) messages."""
    p = Producer(client_config(kafka, **{"linger.ms": 5, "enable.idempotence": True}))
    start = time.monotonic()
    for i, (topic, key, rec) in enumerate(events):
        p.produce(topic, key=key.encode(), value=serde.encode(topic, rec))
        if rate:
            ahead = (i + 1) / rate - (time.monotonic() - start)
            if ahead > 0:
                p.poll(0)
                time.sleep(ahead)
        if i % 1000 == 0:
            p.poll(0)
    for topic, key, value in raw:
        p.produce(topic, key=key.encode(), value=value)
    if p.flush(60):
        raise RuntimeError("test events not delivered")
