"""The dedup buffer: fold updates to the same node/edge for a window, emit them once per window.

Why not a Quix Streams window: Quix's time windows close on *event time* carried by later records
(``closing_strategy="key"`` waits for the same key, ``"partition"`` for any key of the partition).
When a topic or a key goes quiet, nothing advances event time and the last window never closes. The
issue requires emission within window + small delay by the *wall clock*, so the buffer keeps its own
wall-clock deadlines and is driven by a timer (see :class:`rdg_platform.streaming.processor.GraphEmitSink`).

Semantics (a per-key wall-clock window that opens on the first update):
- the first update of a key (``GraphRecord.dedup_key``) opens its window: deadline = now + window;
- every update inside the window is folded into the key's exact per-property last-write-wins state
  (:class:`rdg_platform.model.lww.KeyState`, the same algorithm backfill and the Spark rebuild use);
- at the deadline the state is emitted as :meth:`KeyState.records`: one record per distinct winning
  event time - usually one, more only when properties were last set by different events (e.g. a late
  older event that carried a property the newer ones did not). Writing them gives exactly the cells
  (values AND write times) that writing every input would have given, in any arrival order;
- the key then leaves the buffer; the next update opens a new window.
``suppressed`` counts input updates minus emitted records (what the window saved), accounted when a
key's window closes. Bounds: no entry outlives its window (the window is the state TTL), and at most
``max_keys`` keys are held: past that the oldest windows are closed early, so memory is bounded
under any key cardinality.

Pure and clock-injected (``now`` is a parameter) so the semantics are unit-tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rdg_platform.model.lww import KeyState, state_of
from rdg_platform.model.mapping import GraphRecord, MappedRow

# Called when a key's window closes with (kind, type, updates folded in, records emitted).
OnClose = Callable[[str, str, int, int], None]


@dataclass(slots=True)
class _Entry:
    state: KeyState
    deadline: float
    updates: int = 1


class DedupBuffer:
    """Insertion-ordered map dedup_key -> pending LWW state.

    Insertion order equals deadline order (every deadline is ``first_seen + window`` with a
    monotonic clock, and an emitted key re-enters at the end), so finding due keys is a scan from
    the front that stops at the first entry not yet due: O(emitted), not O(buffered).
    """

    def __init__(self, window_s: float, max_keys: int = 200_000, on_close: OnClose | None = None) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.window_s = window_s
        self.max_keys = max_keys
        self.on_close = on_close
        self._entries: dict[str, _Entry] = {}
        self.updates_in = 0
        self.records_out = 0
        self.suppressed = 0

    def __len__(self) -> int:
        """Number of buffered keys (each emits one or more records when its window closes)."""
        return len(self._entries)

    def add(self, record: GraphRecord, now: float) -> tuple[bool, list[GraphRecord]]:
        """Buffer ``record``. Returns (folded into an open window?, records emitted by the size bound)."""
        self.updates_in += 1
        key = record.dedup_key
        entry = self._entries.get(key)
        if entry is not None:
            entry.state.add(record)
            entry.updates += 1
            return True, []
        self._entries[key] = _Entry(state_of(record), now + self.window_s)
        return False, self._evict()

    def add_rows(self, rows: Sequence[MappedRow], now: float) -> list[GraphRecord]:
        """Buffer mapped rows (:meth:`EventMapper.rows`), exactly like :meth:`add` of each row's
        record, without building the records; returns the records emitted by the size bound.

        This is the processor's per-event path: most rows fold into an open window, so building a
        GraphRecord for each (and hashing its key again) would be wasted work.
        """
        entries = self._entries
        opened = False
        for key, kind, type_, rid, dst, props, ts in rows:
            entry = entries.get(key)
            if entry is not None:
                entry.state.add_props(props, ts)
                entry.updates += 1
            else:
                entries[key] = _Entry(KeyState(kind, type_, rid, dst).add_props(props, ts), now + self.window_s)
                opened = True
        self.updates_in += len(rows)
        return self._evict() if opened else []

    def _evict(self) -> list[GraphRecord]:
        """Close the oldest windows early while more than ``max_keys`` keys are held."""
        evicted: list[GraphRecord] = []
        entries = self._entries
        while len(entries) > self.max_keys:
            evicted.extend(self._close(entries.pop(next(iter(entries)))))
        return evicted

    def _close(self, entry: _Entry) -> list[GraphRecord]:
        recs = entry.state.records()
        self.records_out += len(recs)
        self.suppressed += entry.updates - len(recs)
        if self.on_close is not None:
            self.on_close(entry.state.kind, entry.state.type, entry.updates, len(recs))
        return recs

    def pop_due(self, now: float) -> list[GraphRecord]:
        """Remove every key whose window has closed at ``now``; return their records."""
        out: list[GraphRecord] = []
        entries = self._entries
        while entries:
            key = next(iter(entries))
            if entries[key].deadline > now:
                break
            out.extend(self._close(entries.pop(key)))
        return out

    def drain(self) -> list[GraphRecord]:
        """Remove every key and return the records (before a checkpoint commits, and at shutdown)."""
        out: list[GraphRecord] = []
        for e in self._entries.values():
            out.extend(self._close(e))
        self._entries.clear()
        return out
