"""The dedup buffer: leading-edge plus trailing emission per node/edge, per wall-clock window.

Why not a Quix Streams window: Quix's time windows close on *event time* carried by later records;
when a topic or a key goes quiet, nothing advances event time and the last window never closes. The
buffer keeps its own wall-clock deadlines and is driven by a timer (see
:class:`rdg_platform.streaming.processor.GraphEmitSink`).

Semantics, per key (``GraphRecord.dedup_key``):
- **leading edge**: the first update of a key not in the buffer is emitted at once and opens the
  key's window (deadline = now + window). A new node or edge is therefore written within the
  pipeline's latency, not a window later;
- **fold**: every later update inside the window is folded into the key's exact per-property
  last-write-wins state (:class:`rdg_platform.model.lww.KeyState`, the rule backfill and the Spark
  rebuild apply), remembering which cells it changed (a new value or a newer write time). An update
  that changes nothing (a duplicate, or an older event that loses every cell) is absorbed;
- **significant change**: an update that changes the value of a property the spec marks
  ``significant`` for the type (``spec.yaml``, e.g. the playback ``action``) emits the changed cells
  at once, so START/STOP land immediately while heartbeats fold;
- **trailing edge**: when the window closes, the cells changed since the last emission (if any) are
  emitted as :meth:`KeyState.changed_records` and the window re-arms (a key that keeps changing
  emits about once per window); a window that closes with nothing changed releases the key, so its
  next update is a leading edge again.

Writing the emitted records gives exactly the cells (values AND write times) that writing every
input update would have given, in any arrival order: each emission writes the cells changed since
the previous one, with their winning values and event times. Property staleness is bounded by the
window: a property folded into a window reaches Kafka at the latest when the window closes.

Bounds: a key stays only while it keeps changing (each window that closes quiet releases it), and at
most ``max_keys`` keys are held; past that the oldest windows are closed early (their pending
changes emitted), so memory is bounded under any key cardinality.

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


@dataclass(slots=True)
class _Entry:
    state: KeyState
    deadline: float
    changed: set[str] = field(default_factory=set)  # cells changed since the last emission
    ts_changed: bool = False                        # updated_at advanced since the last emission
    updates: int = 1                                # updates since the last accounting
    emitted: int = 0                                # records emitted since the last accounting


class DedupBuffer:
    """Insertion-ordered map dedup_key -> LWW state with its window.

    Insertion order equals deadline order (every deadline is ``now + window`` with a monotonic clock
    when a key enters or its window re-arms, and a re-armed key moves to the end), so finding due
    keys is a scan from the front that stops at the first entry not yet due: O(due), not O(held).
    """

    def __init__(self, window_s: float, max_keys: int = 200_000, on_close: OnClose | None = None,
                 significant: Significant | None = None) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.window_s = window_s
        self.max_keys = max_keys
        self.on_close = on_close
        self.significant: Significant = dict(significant or {})
        self._entries: dict[str, _Entry] = {}
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

    def add(self, record: GraphRecord, now: float) -> list[GraphRecord]:
        """Buffer ``record``; returns the records to emit now (leading edge, significant change,
        windows closed early by the size bound)."""
        return self.add_rows(((record.dedup_key, record.kind, record.type, record.id, record.dst,
                               dict(record.properties), record.updated_at),), now)

    def add_rows(self, rows: Sequence[MappedRow], now: float) -> list[GraphRecord]:
        """Buffer mapped rows (:meth:`EventMapper.rows`), exactly like :meth:`add` of each row's
        record without building the records that fold; returns the records to emit now."""
        entries = self._entries
        out: list[GraphRecord] = []
        opened = False
        significant = self.significant
        for key, kind, type_, rid, dst, props, ts in rows:
            entry = entries.get(key)
            if entry is None:
                state = KeyState(kind, type_, rid, dst).add_props(props, ts)
                entries[key] = _Entry(state, now + self.window_s, emitted=1)
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
        """Close the oldest windows early while more than ``max_keys`` keys are held."""
        evicted: list[GraphRecord] = []
        entries = self._entries
        while len(entries) > self.max_keys:
            evicted.extend(self._release(entries.pop(next(iter(entries)))))
        return evicted

    def pop_due(self, now: float) -> list[GraphRecord]:
        """Close every window due at ``now``: trailing emissions of the keys that changed (their
        windows re-arm), release of the keys that did not."""
        out: list[GraphRecord] = []
        entries = self._entries
        while entries:
            key = next(iter(entries))
            entry = entries[key]
            if entry.deadline > now:
                break
            del entries[key]
            if entry.changed or entry.ts_changed:
                recs = self._emit_changes(entry)
                self.records_out += len(recs)
                out.extend(recs)
                self._account(entry)
                entry.deadline = now + self.window_s
                entries[key] = entry  # re-armed: moves to the end, keeping deadline order
            else:
                self._account(entry)
        return out

    def drain(self) -> list[GraphRecord]:
        """Every pending change, now (before a checkpoint commits, and at shutdown). The keys keep
        their windows: what they emitted stays the baseline, so a flush does not turn the next
        update of every key into a leading edge."""
        out: list[GraphRecord] = []
        for e in self._entries.values():
            if e.changed or e.ts_changed:
                out.extend(self._emit_changes(e))
            self._account(e)
        self.records_out += len(out)
        return out

    def clear(self) -> list[GraphRecord]:
        """:meth:`drain`, then forget every key (memory back to zero)."""
        out = self.drain()
        self._entries.clear()
        return out
