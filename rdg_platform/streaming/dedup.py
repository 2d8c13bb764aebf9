"""The dedup buffer: leading-edge plus trailing emission per node/edge, per wall-clock window, the
window growing while a key stays busy.

Why not a Quix Streams window: Quix's time windows close on *event time* carried by later records;
when a topic or a key goes quiet, nothing advances event time and the last window never closes. The
buffer keeps its own wall-clock deadlines and is driven by a timer (see
:class:`rdg_platform.streaming.processor.GraphEmitSink`).

Semantics, per key (``GraphRecord.dedup_key``), with a base window ``window_s`` and a maximum
window ``max_window_s`` (``window_s`` unless set):
- **leading edge**: the first update of a key not in the buffer is emitted at once and opens the
  key's window at the base size (deadline = now + ``window_s``). A new node or edge is therefore
  written within the pipeline's latency, not a window later;
- **fold**: every later update inside the window is folded into the key's exact per-property
  last-write-wins state (:class:`rdg_platform.model.lww.KeyState`, the rule backfill and the Spark
  rebuild apply), remembering which cells it changed (a new value or a newer write time). An update
  that changes nothing (a duplicate, or an older event that loses every cell) is absorbed;
- **significant change**: an update that changes the value of a property the spec marks
  ``significant`` for the type (``spec.yaml``, e.g. the playback ``action``) emits the changed cells
  at once, so START/STOP land immediately while heartbeats fold; like a leading edge, it re-opens
  the key's window at the base size;
- **trailing edge**: when the window closes, the cells changed since the last emission (if any) are
  emitted as :meth:`KeyState.changed_records` and the window re-arms **twice as long** as the one
  that closed, up to ``max_window_s`` (sizes ``window_s``, 2×, 4×, … capped): a key that keeps
  changing (a heartbeat every few seconds for an hour) is emitted about once per ``max_window_s``
  once its window has grown. A window that closes with nothing changed releases the key, so its
  next update is a leading edge again, with the base window;
- **checkpoint** (:meth:`drain` with ``now``): every pending change is emitted now, and a key that
  emitted counts as a window closed now (re-armed from now, grown), so a checkpoint replaces a
  trailing emission rather than adding one; keys stay held (what was emitted stays the baseline),
  so a flush does not turn the next update of every key into a leading edge. The processor's
  checkpoint interval defaults to the maximum window, or checkpoints would cap the growth.

Writing the emitted records gives exactly the cells (values AND write times) that writing every
input update would have given, in any arrival order: each emission writes the cells changed since
the previous one, with their winning values and event times. Only *when* a change is emitted
depends on the window sizes, never *what*.

**Staleness bound**: a change that is not significant reaches Kafka at the latest when the window it
was folded into closes, and every window is at most ``max_window_s`` long, opened no later than the
change; so at most ``max_window_s`` after the update was processed (plus the timer tick), sooner at
a checkpoint. New keys and significant changes are emitted at once.

Bounds: a key stays only while it keeps changing (each window that closes quiet releases it), and at
most ``max_keys`` keys are held; past that the windows closest to their deadline are closed early
(their pending changes emitted), so memory is bounded under any key cardinality. Per key: its LWW
state and a constant-size entry (one slot in the lookup map, one in its window size's queue).

``suppressed`` = input updates minus emitted records. Pure and clock-injected (``now`` is a
parameter), so the semantics are unit-tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rdg_platform.model.lww import Cell, KeyState
from rdg_platform.model.mapping import GraphRecord, MappedRow
from rdg_platform.model.spec import RecordKind

# Called when a key's accounting period ends with (kind, type, updates folded in, records emitted).
OnClose = Callable[[str, str, int, int], None]
# (kind, type) -> properties whose change is emitted at once (GraphSpec.significant_properties()).
Significant = Mapping[tuple[RecordKind, str], frozenset[str]]


def window_sizes(window_s: float, max_window_s: float) -> tuple[float, ...]:
    """The window sizes a busy key goes through: ``window_s`` doubling up to ``max_window_s``."""
    sizes = [window_s]
    while sizes[-1] < max_window_s:
        sizes.append(min(max_window_s, sizes[-1] * 2) if sizes[-1] > 0 else max_window_s)
    return tuple(sizes)


@dataclass(slots=True)
class _Entry:
    state: KeyState
    deadline: float
    level: int = 0                                  # index of the current window size
    changed: set[str] = field(default_factory=set)  # cells changed since the last emission
    ts_changed: bool = False                        # updated_at advanced since the last emission
    updates: int = 1                                # updates since the last accounting
    emitted: int = 0                                # records emitted since the last accounting


class DedupBuffer:
    """Map dedup_key -> LWW state with its window, plus one insertion-ordered queue per window size.

    Within a queue, insertion order equals deadline order (every deadline is ``now + size`` with a
    monotonic clock when a key enters the queue, and a re-armed key moves to the end of its new
    queue), so finding due keys is a scan from the front of each queue that stops at the first entry
    not yet due: O(due + sizes), not O(held).
    """

    def __init__(self, window_s: float, max_keys: int = 200_000, on_close: OnClose | None = None,
                 significant: Significant | None = None, max_window_s: float | None = None) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        if max_window_s is not None and max_window_s < window_s:
            raise ValueError("max_window_s must be >= window_s")
        self.window_s = window_s
        self.max_window_s = window_s if max_window_s is None else max_window_s
        self.sizes = window_sizes(window_s, self.max_window_s)
        self.max_keys = max_keys
        self.on_close = on_close
        self.significant: Significant = dict(significant or {})
        self._entries: dict[str, _Entry] = {}
        self._queues: tuple[dict[str, _Entry], ...] = tuple({} for _ in self.sizes)
        self.updates_in = 0
        self.records_out = 0

    @property
    def suppressed(self) -> int:
        """Input updates that did not become an emitted record (so far)."""
        return self.updates_in - self.records_out

    def __len__(self) -> int:
        """Number of keys held (each with an open window)."""
        return len(self._entries)

    def pending(self) -> int:
        """Keys with changes not yet emitted (what a trailing emission or a flush would write)."""
        return sum(1 for e in self._entries.values() if e.changed or e.ts_changed)

    def window_of(self, key: str) -> float | None:
        """The size of ``key``'s open window (None when the key is not held)."""
        entry = self._entries.get(key)
        return None if entry is None else self.sizes[entry.level]

    def add(self, record: GraphRecord, now: float) -> list[GraphRecord]:
        """Buffer ``record``; returns the records to emit now (leading edge, significant change,
        windows closed early by the size bound)."""
        return self.add_rows(((record.dedup_key, record.kind, record.type, record.id, record.dst,
                               dict(record.properties), record.updated_at),), now)

    def add_rows(self, rows: Sequence[MappedRow], now: float) -> list[GraphRecord]:
        """Buffer mapped rows (:meth:`EventMapper.rows`), exactly like :meth:`add` of each row's
        record without building the records that fold; returns the records to emit now."""
        entries = self._entries
        base = self._queues[0]
        out: list[GraphRecord] = []
        opened = False
        significant = self.significant
        for key, kind, type_, rid, dst, props, ts in rows:
            entry = entries.get(key)
            if entry is None:
                state = KeyState(kind, type_, rid, dst).add_props(props, ts)
                entries[key] = base[key] = _Entry(state, now + self.window_s, emitted=1)
                out.append(GraphRecord(kind, type_, rid, dst, {n: c[2] for n, c in state.cells.items()}, ts))
                opened = True
                continue
            entry.updates += 1
            sig = significant.get((kind, type_)) if significant else None
            if sig is None:
                if entry.state.fold(props, ts, entry.changed):
                    entry.ts_changed = True
                continue
            cells = entry.state.cells
            before: dict[str, Cell | None] = {n: cells.get(n) for n in sig if n in props}
            if entry.state.fold(props, ts, entry.changed):
                entry.ts_changed = True
            for name, old in before.items():
                new = cells.get(name)
                if new is not old and new is not None and (old is None or old[2] != new[2]):
                    out.extend(self._emit_changes(entry))
                    # like a leading edge: a fresh window at the base size
                    del self._queues[entry.level][key]
                    entry.level = 0
                    entry.deadline = now + self.window_s
                    base[key] = entry
                    break
        self.updates_in += len(rows)
        self.records_out += len(out)
        if opened and len(entries) > self.max_keys:
            out.extend(self._evict())
        return out

    def _emit_changes(self, entry: _Entry) -> list[GraphRecord]:
        """The entry's changes since its last emission as records (the caller counts them)."""
        recs = entry.state.changed_records(entry.changed, entry.ts_changed)
        entry.changed = set()
        entry.ts_changed = False
        entry.emitted += len(recs)
        return recs

    def _account(self, entry: _Entry) -> None:
        if self.on_close is not None and entry.updates:
            self.on_close(entry.state.kind, entry.state.type, entry.updates, entry.emitted)
        entry.updates = entry.emitted = 0

    def _release(self, entry: _Entry) -> list[GraphRecord]:
        """Close ``entry`` for good: its pending changes (if any), accounted."""
        recs = self._emit_changes(entry) if entry.changed or entry.ts_changed else []
        self.records_out += len(recs)
        self._account(entry)
        return recs

    def _evict(self) -> list[GraphRecord]:
        """Close the windows nearest their deadline early while more than ``max_keys`` keys are held."""
        evicted: list[GraphRecord] = []
        entries = self._entries
        queues = self._queues
        while len(entries) > self.max_keys:
            q = min((q for q in queues if q), key=lambda q: next(iter(q.values())).deadline)
            key = next(iter(q))
            del entries[key]
            evicted.extend(self._release(q.pop(key)))
        return evicted

    def pop_due(self, now: float) -> list[GraphRecord]:
        """Close every window due at ``now``: trailing emissions of the keys that changed (their
        windows re-arm, twice as long up to the maximum), release of the keys that did not."""
        out: list[GraphRecord] = []
        entries = self._entries
        queues = self._queues
        top = len(queues) - 1
        for q in queues:
            while q:
                key = next(iter(q))
                entry = q[key]
                if entry.deadline > now:
                    break
                del q[key]
                if entry.changed or entry.ts_changed:
                    recs = self._emit_changes(entry)
                    self.records_out += len(recs)
                    out.extend(recs)
                    self._account(entry)
                    if entry.level < top:
                        entry.level += 1
                    entry.deadline = now + self.sizes[entry.level]
                    queues[entry.level][key] = entry  # re-armed: the end of its queue, deadline order kept
                else:
                    self._account(entry)
                    del entries[key]
        return out

    def drain(self, now: float | None = None) -> list[GraphRecord]:
        """Every pending change, now (before a checkpoint commits, and at shutdown). The keys stay
        held: what they emitted is the baseline, so a flush does not turn the next update of every
        key into a leading edge. With ``now`` (a checkpoint), a key that emitted counts as a window
        closed at ``now``: its window re-arms from ``now``, twice as long up to the maximum, so
        checkpoints replace trailing emissions instead of adding to them. Without, the windows are
        kept as they are."""
        out: list[GraphRecord] = []
        queues = self._queues
        top = len(queues) - 1
        moved: list[tuple[str, _Entry]] = []
        for q in queues:
            for key, e in q.items():
                if e.changed or e.ts_changed:
                    out.extend(self._emit_changes(e))
                    if now is not None:
                        moved.append((key, e))
                self._account(e)
        if now is not None:
            for key, e in moved:
                del queues[e.level][key]
                if e.level < top:
                    e.level += 1
                e.deadline = now + self.sizes[e.level]
                queues[e.level][key] = e
        self.records_out += len(out)
        return out

    def clear(self) -> list[GraphRecord]:
        """:meth:`drain`, then forget every key (memory back to zero)."""
        out = self.drain()
        self._entries.clear()
        for q in self._queues:
            q.clear()
        return out
