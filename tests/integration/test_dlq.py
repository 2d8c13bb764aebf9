"""Dead-letter operations on the real services: a record is dead-lettered, its cause is fixed, and
``rdg dlq redrive`` sends it back once; a second re-drive sends nothing; the record lands once.

The scenario (a realistic one): a fleet of devices runs its clock 10 minutes ahead, and the
processors allow only 60 s of skew, so their logins go to ``member.login.dlq`` with reason
``event_time_in_future``. The operator decides 10 minutes is acceptable, restarts the processors
with ``RDG_STREAMING_MAX_CLOCK_SKEW_S=900`` (same keyspace and consumer groups: they resume where
they committed, past the dead-lettered record), inspects the dead letter with ``rdg dlq show`` and
re-drives it. What the login means is written here by hand: the account's plan, country and
last_seen_ts become the event's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from rdg_platform.avro import AvroSerde, SchemaRegistry
from rdg_platform.cli import app
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.settings import Settings
from rdg_platform.streaming.dlq import DeadLetter, read_topics, redriven
from rdg_platform.streaming.runtime import wait_groups_assigned
from rdg_platform.streaming.supervisor import AppSupervisor
from tests.support.poll import wait_for
from tests.support.streaming import LocalPipeline, local_pipeline, produce_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipe(services: object, cfg: Settings) -> Iterator[LocalPipeline]:
    with local_pipeline(cfg, window_s=2.0, name="dlq", extra={"RDG_STREAMING_MAX_CLOCK_SKEW_S": "60"}) as p:
        yield p


def rdg(settings: Settings, *args: str) -> str:
    """Run the ``rdg`` CLI as an operator would, with these settings as its environment."""
    res = CliRunner().invoke(app, list(args), env=settings.child_env(base={}), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_dead_letter_redriven_after_the_fix_lands_once(pipe: LocalPipeline) -> None:
    run = uuid.uuid4().hex[:8]
    acc, dev = f"acc-{run}", f"d-{run}"
    ahead = int(time.time() * 1000) + 600_000  # the device clock: 10 minutes ahead
    event = {"event_id": f"l-{run}", "event_time": ahead, "account_id": acc, "profile_id": None, "device_id": dev,
             "device_type": "TV", "country": "PT", "app_version": "9.1", "plan": "standard"}
    serde = AvroSerde(SchemaRegistry.from_settings(pipe.settings.registry))
    produce_events(pipe.settings.kafka, serde, [("member.login", acc, event)])

    def mine() -> list[DeadLetter]:
        return [d for d in read_topics(pipe.settings, ["member.login.dlq"]) if d.key == acc.encode()]

    (letter,) = wait_for(mine, 60)
    assert letter.reason == "event_time_in_future"
    store = GraphStore.from_spec(pipe.spec, pipe.settings.cassandra)
    try:
        assert store.get_node("account", acc) is None

        # inspect: headers and the decoded payload
        shown = rdg(pipe.settings, "dlq", "show", "member.login.dlq", str(letter.partition), str(letter.offset))
        assert "rdg.dlq.reason: event_time_in_future" in shown and f'"account_id": "{acc}"' in shown
        listed = json.loads(rdg(pipe.settings, "dlq", "list", "--topic", "member.login", "--json"))
        assert listed["member.login.dlq"]["event_time_in_future"]["records"] >= 1

        # the fix: the processors restart allowing 15 minutes of skew (same groups, same keyspace)
        pipe.supervisor.down()
        fixed = pipe.settings.model_copy(update={"streaming": pipe.settings.streaming.model_copy(
            update={"max_clock_skew_s": 900.0})})
        sup = AppSupervisor(fixed)
        try:
            sup.up(wait_s=60)
            wait_groups_assigned(fixed.kafka, pipe.groups(), 120)
            since = int(time.time() * 1000)

            coords = ["--topic", "member.login.dlq", "--reason", "event_time_in_future",
                      "--partition", str(letter.partition), "--from-offset", str(letter.offset),
                      "--to-offset", str(letter.offset)]
            first = rdg(fixed, "dlq", "redrive", *coords)
            assert "re-drove 1;" in first and "-> member.login: 1" in first, first
            second = rdg(fixed, "dlq", "redrive", *coords)
            assert "re-drove 0; skipped 1 already re-driven" in second, second

            node = wait_for(lambda: store.get_node("account", acc), 60)
            assert node is not None, "the re-driven login never reached the graph"
            assert dict(node.properties) == {"plan": "standard", "country": "PT", "last_seen_ts": ahead}
            assert node.updated_at == ahead
            assert [e.dst for e in store.edges("logged_in_from", acc, "out", limit=10, order="any").edges] == [dev]

            # exactly one copy went back to the source topic, carrying where it came from
            back = [d for d in read_topics(fixed, ["member.login"], partition=None)
                    if d.key == acc.encode() and d.timestamp_ms >= since]
            assert len(back) == 1, back
            assert back[0].header_text()["rdg.redrive.from"] == letter.coordinates
            assert back[0].header_text()["rdg.redrive.reason"] == "event_time_in_future"
            assert back[0].value == letter.value
            assert redriven(fixed)[letter.coordinates]["target"] == "member.login"
            # and it was not dead-lettered again
            assert len(mine()) == 1
        finally:
            sup.down()
    finally:
        store.close()
