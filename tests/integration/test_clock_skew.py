"""Clock skew on the real services: a login dated ten years ahead (a device with a wrong clock), then
a normal one, through the real processors and sinks (``local_pipeline``).

What the events mean, written down here (not computed with the mapping under test): the normal
login is the account's state; the future one is in ``member.login.dlq`` with reason
``event_time_in_future`` and counted in the processor's metrics; a login older than the edge TTL
(100 days) writes its nodes but not its edges (born expired), and is counted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rdg_platform.avro import AvroSerde, SchemaRegistry
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.settings import Settings
from rdg_platform.streaming.dlq import read_topics
from rdg_platform.streaming.supervisor import scrape_metrics
from tests.support.poll import wait_for
from tests.support.streaming import LocalPipeline, local_pipeline, produce_events

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def pipe(services: object, cfg: Settings) -> Iterator[LocalPipeline]:
    with local_pipeline(cfg, window_s=2.0, name="skew") as p:
        yield p


@pytest.fixture(scope="module")
def store(pipe: LocalPipeline) -> Iterator[GraphStore]:
    s = GraphStore.from_spec(pipe.spec, pipe.settings.cassandra)
    yield s
    s.close()


def login(run: str, acc: str, dev: str, t: int, plan: str, country: str) -> tuple[str, str, dict[str, Any]]:
    return ("member.login", acc, {"event_id": f"l-{run}-{t}", "event_time": t, "account_id": acc, "profile_id": None,
                                  "device_id": dev, "device_type": "TV", "country": country, "app_version": "9.1",
                                  "plan": plan})


def test_future_dated_event_is_dead_lettered_and_the_normal_one_is_the_state(
        pipe: LocalPipeline, store: GraphStore) -> None:
    run = uuid.uuid4().hex[:8]
    acc = f"acc-{run}"
    now = int(time.time() * 1000)
    future = now + 10 * 365 * DAY_MS
    serde = AvroSerde(SchemaRegistry.from_settings(pipe.settings.registry))
    produce_events(pipe.settings.kafka, serde, [login(run, acc, f"d-{run}-x", future, "future-plan", "XX"),
                                                login(run, acc, f"d-{run}", now, "premium", "NL")])

    node = wait_for(lambda: (n := store.get_node("account", acc)) is not None and n.properties.get("plan") and n)
    assert node, "the normal login never reached the graph"
    assert dict(node.properties) == {"plan": "premium", "country": "NL", "last_seen_ts": now}
    assert node.updated_at == now
    # the future event wrote nothing at all: not its device, not its edge
    assert store.get_node("device", f"d-{run}-x") is None
    # the edges sink may run behind the nodes sink: wait for the normal login's edge
    out = wait_for(lambda: store.edges("logged_in_from", acc, "out", limit=10, order="any").edges, 30)
    assert [e.dst for e in out] == [f"d-{run}"]

    def dead() -> list[Any]:
        return [d for d in read_topics(pipe.settings, ["member.login.dlq"]) if d.key == acc.encode()]

    letters = wait_for(dead, 30)
    assert len(letters) == 1, letters
    h = letters[0].header_text()
    assert h["rdg.dlq.reason"] == "event_time_in_future" and h["rdg.source.topic"] == "member.login"
    assert "allowed clock skew 300 s" in h["rdg.dlq.detail"]
    _sid, payload = serde.decode_for_topic("member.login", letters[0].value or b"")
    assert payload["plan"] == "future-plan"  # the original bytes, kept for inspection or re-drive

    port = next(s.metrics_port for s in pipe.supervisor.status() if s.name == "member_login-processor")
    assert scrape_metrics(port or 0).get("rdg_dlq_records_total", 0) >= 1


def test_event_older_than_the_edge_ttl_writes_its_nodes_but_no_edge(pipe: LocalPipeline, store: GraphStore) -> None:
    run = uuid.uuid4().hex[:8]
    acc = f"acc-{run}"
    now = int(time.time() * 1000)
    old = now - 101 * DAY_MS  # the spec's edges live 100 days
    serde = AvroSerde(SchemaRegistry.from_settings(pipe.settings.registry))
    # the same key (one partition, in order): once the second login's edge is there, the first login's
    # edge was processed by the same (edges) sink
    produce_events(pipe.settings.kafka, serde, [login(run, acc, f"d-{run}-old", old, "basic", "DE"),
                                                login(run, acc, f"d-{run}-new", now, "premium", "NL")])

    def edges() -> list[str]:
        return [e.dst for e in store.edges("logged_in_from", acc, "out", limit=10, order="any").edges]

    assert wait_for(lambda: f"d-{run}-new" in edges()), "the current login never reached the graph"
    assert edges() == [f"d-{run}-new"]  # the 101-day-old edge would be born expired: not written
    # nodes do not expire (node_ttl_s 0): written, by the nodes sink, which may run behind the edges sink
    dev = wait_for(lambda: store.get_node("device", f"d-{run}-old"), 30)
    assert dev is not None and dev.updated_at == old
    port = next(s.metrics_port for s in pipe.supervisor.status() if s.name == "member_login-processor")
    assert scrape_metrics(port or 0).get("rdg_records_expired_total", 0) >= 1
