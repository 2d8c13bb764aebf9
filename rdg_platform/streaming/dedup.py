"""The dedup buffer: merge updates to the same node/edge for a window, emit once per key per window.

Why not a Quix Streams window: Quix's time windows close on *event time* carried by later records
(``closing_strategy="key"`` waits for the same key, ``"partition"`` for any key of the partition).
When a topic or a key goes quiet, nothing advances event time and the last window never closes. The
issue requires emission within window + small delay by the *wall clock*, so the buffer keeps its own
wall-clock deadlines and is driven by a timer (see :class:`rdg_platform.streaming.processor.GraphEmitSink`).

Semantics (a per-key wall-clock window that opens on the first update):
- the first update of a key (``GraphRecord.dedup_key``) opens its window: deadline = now + window;
- later updates inside the window merge into it with :func:`merge_records` (per property, the later
  event time wins; the same rule Cassandra applies), each counted as suppressed;
- at the deadline the merged record is emitted once and the key leaves the buffer; the next update
  opens a new window.
Bounds: no entry outlives its window (the window is the state TTL), and at most ``max_keys`` keys are
held: past that the oldest windows are closed early, so memory is bounded under any key cardinality.

Pure and clock-injected (``now`` is a parameter) so the semantics are unit-tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rdg_platform.model.mapping import GraphRecord, merge_records


@dataclass(slots=True)
class _Entry:
    record: GraphRecord
    deadline: float
    merged: int = 0


class DedupBuffer:
    """Insertion-ordered map dedup_key -> pending merged record.

    Insertion order equals deadline order (every deadline is ``first_seen + window`` with a
    monotonic clock, and an emitted key re-enters at the end), so finding due keys is a scan from
    the front that stops at the first entry not yet due: O(emitted), not O(buffered).
    """

    def __init__(self, window_s: float, max_keys: int = 200_000) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.window_s = window_s
        self.max_keys = max_keys
        self._entries: dict[str, _Entry] = {}
        self.suppressed = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, record: GraphRecord, now: float) -> tuple[bool, list[GraphRecord]]:
        """Buffer ``record``. Returns (merged into an open window?, records evicted by the size bound)."""
        key = record.dedup_key
        entry = self._entries.get(key)
        if entry is not None:
            entry.record = merge_records(entry.record, record)
            entry.merged += 1
            self.suppressed += 1
            return True, []
        self._entries[key] = _Entry(record, now + self.window_s)
        evicted: list[GraphRecord] = []
        while len(self._entries) > self.max_keys:
            evicted.append(self._pop_first())
        return False, evicted

    def _pop_first(self) -> GraphRecord:
        key = next(iter(self._entries))
        return self._entries.pop(key).record

    def pop_due(self, now: float) -> list[GraphRecord]:
        """Remove and return every record whose window has closed at ``now``."""
        out: list[GraphRecord] = []
        entries = self._entries
        while entries:
            key = next(iter(entries))
            if entries[key].deadline > now:
                break
            out.append(entries.pop(key).record)
        return out

    def drain(self) -> list[GraphRecord]:
        """Remove and return everything (before a checkpoint commits, and at shutdown)."""
        out = [e.record for e in self._entries.values()]
        self._entries.clear()
        return out

    def next_deadline(self) -> float | None:
        for e in self._entries.values():
            return e.deadline
        return None

    def __iter__(self) -> Iterator[GraphRecord]:
        return (e.record for e in self._entries.values())
