"""Exact last-write-wins compaction of graph records, per property.

Cassandra resolves each cell independently by write timestamp: the props map is one cell per
property, written with ``USING TIMESTAMP <event time>``, and ``updated_at`` is one more cell. So the
state after writing N records of one node/edge is, per property, the value of the record with the
latest event time that carried it, and ``updated_at`` = the latest event time overall.
:func:`lww_compact` computes exactly that state in memory and emits it as the fewest records that
reproduce it *including each cell's write time*: one record per distinct winning event time. Writing
its output is therefore indistinguishable (values and WRITETIMEs) from writing every input record,
in any order and in any number of chunks - which is what lets backfill and the Spark rebuild process
history in parallel pieces and still match the live namespace checksum.

(``merge_records`` - the streaming dedup window - stamps every merged property with the newest
time, which is cheaper on the wire but coarsens per-property write times; see the lakehouse notes.)

Ties (two records with the same event time and different values for a property) are broken by the
larger JSON encoding, which is deterministic; Cassandra's own tie-break for equal timestamps is not
(expiring cells compare local deletion times), so ties are avoided upstream by millisecond times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rdg_platform.kv.codec import encode_props
from rdg_platform.model.mapping import GraphRecord
from rdg_platform.model.spec import RecordKind

# A property cell: (event time ms, JSON encoding used for tie-breaks and checksums, decoded value)
Cell = tuple[int, str, Any]


@dataclass
class KeyState:
    """The LWW state of one node/edge: newest event time and the winning cell per property."""

    kind: RecordKind
    type: str
    id: str
    dst: str | None
    max_ts: int = -1
    cells: dict[str, Cell] = field(default_factory=dict)

    def add(self, rec: GraphRecord) -> None:
        if rec.updated_at > self.max_ts:
            self.max_ts = rec.updated_at
        enc = encode_props(rec.properties)
        for name, value in rec.properties.items():
            if value is None:
                continue
            cell = (rec.updated_at, enc[name], value)
            cur = self.cells.get(name)
            if cur is None or cell[:2] > cur[:2]:
                self.cells[name] = cell

    def merge(self, other: KeyState) -> KeyState:
        self.max_ts = max(self.max_ts, other.max_ts)
        for name, cell in other.cells.items():
            cur = self.cells.get(name)
            if cur is None or cell[:2] > cur[:2]:
                self.cells[name] = cell
        return self

    def records(self) -> list[GraphRecord]:
        by_ts: dict[int, dict[str, Any]] = {self.max_ts: {}}
        for name, (ts, _enc, value) in self.cells.items():
            by_ts.setdefault(ts, {})[name] = value
        return [GraphRecord(self.kind, self.type, self.id, self.dst, props, ts)
                for ts, props in sorted(by_ts.items())]


def state_of(rec: GraphRecord) -> KeyState:
    st = KeyState(rec.kind, rec.type, rec.id, rec.dst)
    st.add(rec)
    return st


def lww_states(records: Iterable[GraphRecord], into: dict[str, KeyState] | None = None) -> dict[str, KeyState]:
    """Fold records into per-``dedup_key`` states (optionally continuing ``into``)."""
    states = into if into is not None else {}
    for r in records:
        st = states.get(r.dedup_key)
        if st is None:
            states[r.dedup_key] = state_of(r)
        else:
            st.add(r)
    return states


def lww_compact(records: Iterable[GraphRecord]) -> list[GraphRecord]:
    """The fewest records whose writes give the same cells (values and write times) as ``records``."""
    out: list[GraphRecord] = []
    for st in lww_states(records).values():
        out.extend(st.records())
    return out
