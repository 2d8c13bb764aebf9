"""Erasure against the live pipeline: the real processors and sinks (``local_pipeline``) keep running
while a member is erased, and a late event of the member still in Kafka reaches the sinks afterwards.

What the events mean, written down here: a playback of profile P on title T is the edge
``P -started_watching-> T`` (and T's in-edge from P). After the erasure of P's account, a playback
of P on a title it never watched, dated before the erasure, must not appear anywhere (not as P's
out-edge, not in the title's in-edges: the erasure fence), and the edge sink counts it as fenced;
a playback dated after the erasure is new activity and lands.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rdg_platform.avro import AvroSerde, SchemaRegistry
from rdg_platform.erasure import ErasureEngine
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.settings import Settings
from rdg_platform.streaming.supervisor import scrape_metrics
from tests.support.poll import poll_until
from tests.support.streaming import LocalPipeline, local_pipeline, produce_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipe(services: object, cfg: Settings) -> Iterator[LocalPipeline]:
    with local_pipeline(cfg, window_s=2.0, name="erasefence") as p:
        yield p


@pytest.fixture(scope="module")
def store(pipe: LocalPipeline) -> Iterator[GraphStore]:
    s = GraphStore.from_spec(pipe.spec, pipe.settings.cassandra, erasure=pipe.settings.erasure)
    yield s
    s.close()


def playback(acc: str, profile: str, device: str, title: str, t: int) -> tuple[str, str, dict[str, Any]]:
    return ("member.playback", acc, {"event_id": f"w-{profile}-{title}-{t}", "event_time": t, "account_id": acc,
                                     "profile_id": profile, "device_id": device, "device_type": "TV",
                                     "title_id": title, "episode_id": None, "action": "START", "position_ms": 0,
                                     "is_live": False})


def watchers(store: GraphStore, title: str) -> set[str]:
    return {e.src for e in store.edges("started_watching", title, "in", limit=100, order="any").edges}


def watched(store: GraphStore, profile: str) -> set[str]:
    return {e.dst for e in store.edges("started_watching", profile, "out", limit=100, order="any").edges}


def fenced(pipe: LocalPipeline) -> float:
    """Records the activity-edge sink dropped at the erasure fence so far."""
    return sum(scrape_metrics(s.metrics_port or 0).get("rdg_erasure_fenced_total", 0.0)
               for s in pipe.supervisor.status() if s.name == "sink-edges-activity")


def test_a_late_event_of_an_erased_member_stays_out_and_new_activity_lands(pipe: LocalPipeline,
                                                                           store: GraphStore) -> None:
    run = uuid.uuid4().hex[:8]
    acc, prof, dev = f"acc-{run}", f"p-{run}", f"d-{run}"
    t1, t2, t3 = f"t-{run}-1", f"t-{run}-2", f"t-{run}-3"
    serde = AvroSerde(SchemaRegistry.from_settings(pipe.settings.registry))
    before = int(time.time() * 1000) - 600_000
    produce_events(pipe.settings.kafka, serde, [playback(acc, prof, dev, t1, before)])
    poll_until(lambda: watchers(store, t1), lambda w: w == {prof}, what="the first playback in the graph",
               timeout_s=60, interval_s=0.5)

    no_grace = pipe.settings.erasure.model_copy(update={"archive_grace_s": 0})  # finish now, not in 7 days
    engine = ErasureEngine.from_settings(store, pipe.settings.model_copy(update={"erasure": no_grace}))
    engine.ensure_schema()
    done = engine.run(engine.request("account", acc).erasure_id)
    assert done.status == "done", done.error
    # the playback's has_profile edge named the profile, so it was erased with its edges
    assert watchers(store, t1) == set() and store.get_node("profile", prof) is None

    fenced_before = fenced(pipe)
    late = done.erasure_time_ms - 5_000  # still in Kafka / on a device queue: dated before the erasure
    produce_events(pipe.settings.kafka, serde, [playback(acc, prof, dev, t2, late)])
    poll_until(lambda: fenced(pipe), lambda n: n > fenced_before, what="the edge sink fencing the late event",
               timeout_s=60, interval_s=0.5)
    assert watchers(store, t2) == set()  # no ghost in-edge on a title the profile never watched before
    assert watched(store, prof) == set() and store.get_node("profile", prof) is None

    after = int(time.time() * 1000)
    produce_events(pipe.settings.kafka, serde, [playback(acc, prof, dev, t3, after)])
    poll_until(lambda: watchers(store, t3), lambda w: w == {prof}, what="activity after the erasure landing",
               timeout_s=60, interval_s=0.5)
    assert watched(store, prof) == {t3}
