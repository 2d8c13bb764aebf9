"""The dedup buffer's leading-edge plus trailing semantics on an injected clock (``now`` is an
argument): leading emission, trailing fold, significant changes, nothing emitted when nothing
changed, exact write equivalence with writing every input, and bounded memory.

The oracle of write equivalence is :func:`_cells`, written here from what Cassandra does (per cell,
the latest write time wins, ties to the larger stored text), not the LWW code under test.
"""

from __future__ import annotations

import random
from typing import Literal

import pytest

from rdg_platform.kv.codec import encode_props
from rdg_platform.model import GraphRecord
from rdg_platform.streaming.dedup import DedupBuffer, Significant

T0 = 1_700_000_000_000
SIG: Significant = {("edge", "started_watching"): frozenset({"action"})}


def watch(i: int, action: str = "HEARTBEAT", ts: int | None = None) -> GraphRecord:
    """Playback update ``i`` of profile p1 watching title t1 (heartbeats: position moves 5 s each)."""
    return GraphRecord("edge", "started_watching", "p1", "t1",
                       {"action": action, "position_ms": i * 5000, "last_watch_ts": T0 + i * 5000},
                       T0 + i * 5000 if ts is None else ts)


def test_first_update_is_emitted_at_once() -> None:
    buf = DedupBuffer(window_s=30, significant=SIG)
    out = buf.add(watch(0, "START"), now=100.0)
    assert [(r.properties["action"], r.updated_at) for r in out] == [("START", T0)]
    other = GraphRecord("node", "account", "a1", None, {"plan": "basic"}, T0)
    assert buf.add(other, now=100.5) == [other]  # every new key: its own leading edge
    assert len(buf) == 2 and buf.pending() == 0


def test_later_updates_fold_into_one_trailing_emission_at_the_window_end() -> None:
    buf = DedupBuffer(window_s=30, significant=SIG)
    buf.add(watch(0, "HEARTBEAT"), now=100.0)
    for i in range(1, 6):  # same action: not significant, folds
        assert buf.add(watch(i), now=100.0 + i) == []
    assert buf.pop_due(129.9) == []
    (trail,) = buf.pop_due(130.0)
    assert trail.properties == {"action": "HEARTBEAT", "position_ms": 25_000, "last_watch_ts": T0 + 25_000}
    assert trail.updated_at == T0 + 25_000
    assert buf.updates_in == 6 and buf.records_out == 2 and buf.suppressed == 4
    # the key changed in that window, so its window re-armed: the next update folds again
    assert buf.add(watch(6), now=131.0) == [] and len(buf) == 1
    (trail2,) = buf.pop_due(160.0)
    assert trail2.properties["position_ms"] == 30_000


def test_trailing_emission_carries_only_what_changed_with_each_cells_write_time() -> None:
    buf = DedupBuffer(window_s=10)
    buf.add(GraphRecord("node", "account", "a1", None, {"country": "NL", "plan": "basic"}, T0), now=0)
    # a late, older event carries a property the newer one did not, and loses the one it shares
    buf.add(GraphRecord("node", "account", "a1", None, {"country": "US", "last_seen_ts": T0 - 5}, T0 - 5), now=1)
    (late,) = buf.pop_due(10)
    assert (late.properties, late.updated_at) == ({"last_seen_ts": T0 - 5}, T0 - 5)


def test_significant_change_is_emitted_at_once() -> None:
    buf = DedupBuffer(window_s=30, significant=SIG)
    buf.add(watch(0, "START"), now=100.0)
    (hb,) = buf.add(watch(1, "HEARTBEAT"), now=101.0)  # START -> HEARTBEAT: the action changed
    assert hb.properties["action"] == "HEARTBEAT"
    assert buf.add(watch(2), now=102.0) == [] and buf.add(watch(3), now=103.0) == []
    (stop,) = buf.add(watch(4, "STOP"), now=104.0)
    # the emission carries every change folded since the last one, at its own write time
    assert stop.properties == {"action": "STOP", "position_ms": 20_000, "last_watch_ts": T0 + 20_000}
    # the significant emission re-opened the window (deadline 104 + 30); nothing changed after STOP:
    # no trailing emission, and the quiet window releases the key
    assert buf.pop_due(133.9) == [] and len(buf) == 1
    assert buf.pop_due(134.0) == [] and len(buf) == 0


def test_a_change_of_a_property_not_marked_significant_waits_for_the_window() -> None:
    buf = DedupBuffer(window_s=30)  # no significance declared
    buf.add(watch(0, "START"), now=0)
    assert buf.add(watch(1, "STOP"), now=1) == []
    assert [r.properties["action"] for r in buf.pop_due(30)] == ["STOP"]


def test_older_significant_value_that_loses_is_not_emitted() -> None:
    buf = DedupBuffer(window_s=30, significant=SIG)
    buf.add(watch(2, "HEARTBEAT"), now=0)
    assert buf.add(watch(1, "START"), now=1) == []  # older: loses every cell, changes nothing
    assert buf.pop_due(30) == []


def test_no_trailing_emission_when_nothing_changed() -> None:
    buf = DedupBuffer(window_s=30, significant=SIG)
    first = watch(0, "START")
    buf.add(first, now=0)
    for _ in range(5):  # the same event re-read (a replay after a crash): identical cells
        assert buf.add(first, now=1) == []
    assert buf.pop_due(30) == [] and len(buf) == 0
    assert buf.records_out == 1 and buf.suppressed == 5
    assert buf.add(watch(1), now=31)  # released: the next update is a leading edge again


def test_drain_emits_pending_changes_and_keeps_the_windows() -> None:
    buf = DedupBuffer(window_s=30)
    buf.add(watch(0), now=0)
    buf.add(watch(1), now=1)
    assert [r.properties["position_ms"] for r in buf.drain()] == [5000]
    assert buf.drain() == [] and len(buf) == 1
    assert buf.add(watch(2), now=2) == []  # still in its window: folds, no new leading edge
    assert buf.pop_due(30)[0].properties["position_ms"] == 10_000


def test_memory_is_bounded_by_max_keys_and_evicted_keys_emit_their_changes() -> None:
    buf = DedupBuffer(window_s=30, max_keys=3)
    emitted: list[GraphRecord] = []
    for i in range(3):
        emitted += buf.add(GraphRecord("node", "device", f"d{i}", None, {"n": 0}, T0), now=0)
    emitted += buf.add(GraphRecord("node", "device", "d0", None, {"n": 1}, T0 + 1), now=1)  # pending change
    for i in range(3, 6):
        emitted += buf.add(GraphRecord("node", "device", f"d{i}", None, {"n": 0}, T0), now=2)
    assert len(buf) == 3
    assert [(r.id, r.properties) for r in emitted if r.id == "d0"] == [("d0", {"n": 0}), ("d0", {"n": 1})]
    # many keys, one update each: the buffer never holds more than max_keys
    for i in range(10_000):
        buf.add(GraphRecord("node", "device", f"x{i}", None, {}, T0), now=3)
        assert len(buf) <= 3


def _cells(records: list[GraphRecord]) -> dict[tuple[str, str], tuple[int, str]]:
    """What Cassandra holds after writing ``records`` one by one: per cell, (write time, stored text),
    the latest write time winning (ties: the larger value, as Cassandra compares equal timestamps)."""
    cells: dict[tuple[str, str], tuple[int, str]] = {}
    for r in records:
        upd = (r.updated_at, str(r.updated_at))
        cur = cells.get((r.dedup_key, "\x00updated_at"))
        if cur is None or upd > cur:
            cells[(r.dedup_key, "\x00updated_at")] = upd
        for k, v in encode_props(r.properties).items():
            cur = cells.get((r.dedup_key, k))
            if cur is None or (r.updated_at, v) > cur:
                cells[(r.dedup_key, k)] = (r.updated_at, v)
    return cells


@pytest.mark.parametrize("seed", range(8))
def test_output_writes_exactly_like_every_input(seed: int) -> None:
    """Writing the buffer's output == writing every input one by one: per property, the same value
    AND the same write time, whatever the arrival order, significance, windows and evictions."""
    rnd = random.Random(seed)
    recs = []
    for _ in range(300):
        props = {p: rnd.choice([rnd.randrange(4), f"v{rnd.randrange(3)}", ["x", "é"], 1.5e20])
                 for p in ("a", "b", "c", "d") if rnd.random() < 0.4}
        kind: Literal["node", "edge"] = rnd.choice(["node", "edge"])
        recs.append(GraphRecord(kind, "t", f"k{rnd.randrange(6)}", f"d{rnd.randrange(2)}" if kind == "edge" else None,
                                props, T0 + rnd.randrange(50)))  # few distinct times: many ties
    want = _cells(recs)
    for order in range(4):
        rnd.shuffle(recs)
        sig: Significant | None = {("edge", "t"): frozenset({"a"})} if order == 3 else None
        buf = DedupBuffer(window_s=10, max_keys=1_000 if order < 2 else 4, significant=sig)
        out: list[GraphRecord] = []
        for i, r in enumerate(recs):
            now = i * (0.01 if order == 0 else 0.1)  # order 0: one window; others: windows close mid-stream
            out += buf.pop_due(now)
            out += buf.add(r, now)
            if i % 97 == 0:
                out += buf.drain()  # checkpoints
        out += buf.drain()
        assert _cells(out) == want
        assert buf.updates_in == len(recs) and buf.records_out == len(out)
        assert buf.suppressed == len(recs) - len(out) > 0


def heartbeats(buf: DedupBuffer, start: int, end: int, step_s: float = 5.0) -> list[tuple[float, GraphRecord]]:
    """Heartbeats ``start`` .. ``end - 1`` of :func:`watch` at ``i * step_s`` seconds, the timer
    ticking every second in between; returns what was emitted, with when."""
    out: list[tuple[float, GraphRecord]] = []
    t = start * step_s
    for i in range(start, end):
        while t < i * step_s:
            out += [(t, r) for r in buf.pop_due(t)]
            t += 1.0
        out += [(i * step_s, r) for r in buf.add(watch(i), i * step_s)]
    return out


def test_a_busy_keys_window_doubles_after_each_trailing_emission_up_to_the_maximum() -> None:
    buf = DedupBuffer(window_s=10, max_window_s=40, significant=SIG)
    assert buf.sizes == (10, 20, 40)
    emitted = heartbeats(buf, 0, 60)  # one heartbeat every 5 s for 300 s
    # leading at 0, then trailing at 10, 10+20, 30+40 and every 40 s after
    assert [t for t, _ in emitted] == [0, 10, 30, 70, 110, 150, 190, 230, 270]
    assert buf.window_of(watch(0).dedup_key) == 40
    # each emission carries the latest state folded so far, at its own write time
    assert [r.properties["position_ms"] for _, r in emitted] == [0, 10_000, 30_000, 70_000, 110_000, 150_000,
                                                                  190_000, 230_000, 270_000]


def test_without_a_maximum_the_window_stays_fixed() -> None:
    buf = DedupBuffer(window_s=10, significant=SIG)
    assert buf.sizes == (10,)
    assert [t for t, _ in heartbeats(buf, 0, 12)] == [0, 10, 20, 30, 40, 50]


def test_a_window_closing_quiet_releases_the_key_and_it_comes_back_at_the_base_window() -> None:
    buf = DedupBuffer(window_s=10, max_window_s=80, significant=SIG)
    heartbeats(buf, 0, 20)  # busy until 95 s: trailing at 10, 30, 70; the 80 s window closes at 150
    key = watch(0).dedup_key
    assert buf.window_of(key) == 80
    (last,) = buf.pop_due(150)  # closes with heartbeats 15..19 folded
    assert last.properties["position_ms"] == 95_000
    assert buf.window_of(key) == 80  # re-armed at the maximum: closes at 230
    assert buf.pop_due(229.9) == [] and len(buf) == 1
    assert buf.pop_due(230) == [] and len(buf) == 0  # closed quiet: released
    (lead,) = buf.add(watch(48), now=240)  # a leading edge again, with the base window
    assert lead.properties["position_ms"] == 240_000 and buf.window_of(key) == 10
    assert buf.add(watch(49), now=245) == []
    assert [r.properties["position_ms"] for r in buf.pop_due(250)] == [245_000]


def test_a_significant_change_is_emitted_at_once_and_resets_the_window_to_the_base() -> None:
    buf = DedupBuffer(window_s=10, max_window_s=40, significant=SIG)
    heartbeats(buf, 0, 20)  # grown: 40 s window open since 70
    key = watch(0).dedup_key
    assert buf.window_of(key) == 40
    (stop,) = buf.add(watch(20, "STOP"), now=100)
    assert stop.properties == {"action": "STOP", "position_ms": 100_000, "last_watch_ts": T0 + 100_000}
    assert buf.window_of(key) == 10
    assert buf.pop_due(109.9) == [] and len(buf) == 1  # the 40 s window's deadline (110) is gone
    assert buf.pop_due(110) == [] and len(buf) == 0   # the fresh base window closed quiet


def test_a_checkpoint_counts_as_the_window_closing() -> None:
    buf = DedupBuffer(window_s=10, max_window_s=40)
    key = watch(0).dedup_key
    buf.add(watch(0), now=0)
    buf.add(watch(1), now=5)
    (ck,) = buf.drain(now=6)  # the checkpoint emits the pending change ...
    assert ck.properties["position_ms"] == 5000
    assert buf.window_of(key) == 20  # ... and the window re-arms from it, grown (deadline 26)
    buf.add(watch(2), now=9)
    assert buf.pop_due(10) == [] and buf.pop_due(25.9) == []
    assert [r.properties["position_ms"] for r in buf.pop_due(26)] == [10_000]
    assert buf.window_of(key) == 40
    buf.add(watch(6), now=30)
    assert [r.properties["position_ms"] for r in buf.drain()] == [30_000]  # shutdown: windows kept
    assert buf.window_of(key) == 40 and buf.pop_due(65.9) == []
    assert buf.pop_due(66) == [] and len(buf) == 0  # nothing changed since the drain: released


def test_max_window_below_the_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_window_s"):
        DedupBuffer(window_s=10, max_window_s=5)


@pytest.mark.parametrize("seed", range(6))
def test_staleness_is_bounded_by_the_maximum_window(seed: int) -> None:
    """At every instant T, the cells the output has written are at least (in last-write-wins order)
    those that writing every update processed by T - max_window_s gives: no folded change waits
    longer than the largest window, whatever the keys' window sizes and the checkpoints."""
    rnd = random.Random(seed)
    window, cap, tick = 10.0, 80.0, 1.0
    buf = DedupBuffer(window_s=window, max_window_s=cap, significant=SIG)
    inputs: list[tuple[float, GraphRecord]] = []
    out: list[GraphRecord] = []
    t = 0.0
    for step in range(1500):
        t += tick
        out += buf.pop_due(t)
        if step % 170 == 169:
            out += buf.drain(t)  # checkpoints, at a period that is not the windows'
        for _ in range(rnd.randrange(3)):  # a few keys busy throughout, some only now and then
            k = rnd.randrange(3) if rnd.random() < 0.8 else 3 + rnd.randrange(20)
            rec = GraphRecord("edge", "started_watching", f"p{k}", "t1",
                              {"action": rnd.choice(["HEARTBEAT"] * 30 + ["PAUSE"]), "position_ms": step,
                               "last_watch_ts": T0 + step}, T0 + step - rnd.randrange(5))
            inputs.append((t, rec))
            out += buf.add(rec, t)
        if step % 25 == 0:
            due = _cells([r for when, r in inputs if when <= t - cap - tick])
            have = _cells(out)
            assert all(have.get(c, (0, "")) >= v for c, v in due.items()), f"stale cell at {t}"
    assert {buf.window_of(f"edge|started_watching|p{k}|t1") for k in range(3)} != {window}  # windows grew


@pytest.mark.parametrize("seed", range(8))
def test_output_with_growing_windows_and_checkpoints_writes_exactly_like_every_input(seed: int) -> None:
    rnd = random.Random(seed)
    recs = []
    for _ in range(400):
        props = {p: rnd.choice([rnd.randrange(4), f"v{rnd.randrange(3)}", ["x", "é"], 1.5e20])
                 for p in ("a", "b", "c", "d") if rnd.random() < 0.4}
        kind: Literal["node", "edge"] = rnd.choice(["node", "edge"])
        recs.append(GraphRecord(kind, "t", f"k{rnd.randrange(6)}", f"d{rnd.randrange(2)}" if kind == "edge" else None,
                                props, T0 + rnd.randrange(50)))
    want = _cells(recs)
    for order in range(4):
        rnd.shuffle(recs)
        sig: Significant | None = {("edge", "t"): frozenset({"a"})} if order % 2 else None
        buf = DedupBuffer(window_s=2, max_window_s=16, max_keys=1_000 if order < 2 else 4, significant=sig)
        out: list[GraphRecord] = []
        grown = 0.0
        for i, r in enumerate(recs):
            now = i * 0.25
            out += buf.pop_due(now)
            out += buf.add(r, now)
            if i % 61 == 0:
                out += buf.drain(now)  # checkpoints re-arm the windows
            grown = max(grown, *(buf.window_of(k) or 0.0 for k in {x.dedup_key for x in recs[:i + 1]}))
        out += buf.drain()
        assert _cells(out) == want
        assert buf.updates_in == len(recs) and buf.records_out == len(out)
        assert grown > 2  # some windows grew


def test_memory_stays_bounded_across_window_sizes() -> None:
    """Keys at every window size count against max_keys; the window nearest its deadline closes
    first, emitting its pending change."""
    buf = DedupBuffer(window_s=10, max_window_s=40, max_keys=5)
    out: list[GraphRecord] = []
    for i in range(5):
        out += buf.add(GraphRecord("node", "device", f"d{i}", None, {"n": 0}, T0), now=0)
    for t in range(1, 31):  # d0..d3 keep changing: their windows grow; d4 stays quiet
        for i in range(4):
            out += buf.add(GraphRecord("node", "device", f"d{i}", None, {"n": t}, T0 + t), now=t)
        out += buf.pop_due(t)
    d0 = GraphRecord("node", "device", "d0", None, {}, T0).dedup_key
    assert len(buf) == 4 and buf.window_of(d0) == 40  # d4 released, the busy keys grown
    for j in range(1000):
        out += buf.add(GraphRecord("node", "device", f"x{j}", None, {}, T0), now=31)
        assert len(buf) <= 5 and sum(len(q) for q in buf._queues) == len(buf)
    # the grown keys were closed early with their pending change, nothing lost
    assert _cells(out)[(d0, "n")][0] == T0 + 30
