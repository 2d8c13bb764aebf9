"""Exact per-property last-write-wins (LWW), the rule Cassandra applies cell by cell.

Cassandra resolves each cell independently by write timestamp: the props map is one cell per
property, written with ``USING TIMESTAMP <event time>``, and ``updated_at`` is one more cell. So the
state after writing N records of one node/edge is, per property, the value of the record with the
latest event time that carried it, and ``updated_at`` = the latest event time overall.
:class:`KeyState` folds records into exactly that state and :meth:`KeyState.records` emits it as the
fewest records that reproduce it *including each cell's write time*: one record per distinct winning
event time (usually one). Writing that output is therefore indistinguishable (values and
WRITETIMEs) from writing every input record, in any order and in any number of chunks.

This lives in the model layer because three paths must apply the *same* rule: the streaming dedup
window (:mod:`rdg_platform.streaming.dedup`), the Iceberg backfill and the Spark rebuild
(:mod:`rdg_platform.lakehouse.lww` re-exports it). If they differed, a namespace rebuilt from
history would not match the live one.

Ties (two records with the same event time and different values for a property) are broken by the
larger encoded value - the stored JSON text, produced by :func:`encode_value`, which is also what
:func:`rdg_platform.kv.codec.encode_props` writes (kv imports it from here), so the tie-break sees
the very bytes Cassandra compares for equal timestamps (non-expiring cells: larger value wins).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rdg_platform.model.mapping import GraphRecord
from rdg_platform.model.spec import RecordKind

try:  # orjson is a pinned dependency (fast hot path); the stdlib fallback only matters without it.
    import orjson as _orjson
except Exception:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]

if _orjson is not None:
    _OPTS = _orjson.OPT_SORT_KEYS

    def encode_value(value: Any) -> str:
        """Deterministic JSON text of one property value (sorted object keys, no whitespace, UTF-8).

        The single encoder for stored property values and LWW tie-breaks.
        """
        return _orjson.dumps(value, option=_OPTS).decode()
else:  # pragma: no cover
    def encode_value(value: Any) -> str:
        """Deterministic JSON text of one property value (sorted object keys, no whitespace, UTF-8)."""
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_values(props: Mapping[str, Any]) -> dict[str, str]:
    """Property dict -> name -> :func:`encode_value` text (None values are dropped: never written)."""
    return {k: encode_value(v) for k, v in props.items() if v is not None}


# A property cell: (event time ms, encoded value for tie-breaks or None until one is needed, value).
# The encoding is computed lazily (:func:`cell_text`): only equal event times compare it, and
# encoding every property of every update was most of the cost of folding a record in.
Cell = tuple[int, str | None, Any]


def cell_text(cell: Cell) -> str:
    """The cell's :func:`encode_value` text (computed now if the cell was stored without it)."""
    enc = cell[1]
    return encode_value(cell[2]) if enc is None else enc


def _tie(value: Any, cur: Cell) -> Cell | None:
    """``value`` written at the same event time as ``cur``: the larger encoding wins (as in
    Cassandra); returns the new cell, or None when ``cur`` stays."""
    enc = encode_value(value)
    return (cur[0], enc, value) if enc > cell_text(cur) else None


@dataclass
class KeyState:
    """The LWW state of one node/edge: newest event time and the winning cell per property."""

    kind: RecordKind
    type: str
    id: str
    dst: str | None
    max_ts: int = -1
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        return GraphRecord(self.kind, self.type, self.id, self.dst).dedup_key

    def add(self, rec: GraphRecord) -> KeyState:
        """Fold one record in (order-independent: the result never depends on arrival order)."""
        return self.add_props(rec.properties, rec.updated_at)

    def add_props(self, props: Mapping[str, Any], ts: int) -> KeyState:
        """Fold one update (its properties, written at event time ``ts``) in; see :meth:`add`."""
        cells = self.cells
        if ts > self.max_ts:
            self.max_ts = ts
            # Newer than everything folded so far: every property wins outright (the common case:
            # a stream of updates in event-time order).
            for name, value in props.items():
                if value is not None:
                    cells[name] = (ts, None, value)
            return self
        for name, value in props.items():
            if value is None:
                continue
            cur = cells.get(name)
            if cur is None or ts > cur[0]:  # the common case, inlined: a newer write wins outright
                cells[name] = (ts, None, value)
            elif ts == cur[0]:
                won = _tie(value, cur)
                if won is not None:
                    cells[name] = won
        return self

    def fold(self, props: Mapping[str, Any], ts: int, changed: set[str]) -> bool:
        """:meth:`add_props`, also adding to ``changed`` every property whose cell it replaced (a
        new value or a newer write time); returns whether ``max_ts`` (the ``updated_at`` cell)
        advanced. What the streaming dedup uses to emit only what changed since its last emission."""
        cells = self.cells
        if ts > self.max_ts:
            self.max_ts = ts
            for name, value in props.items():
                if value is not None:
                    cells[name] = (ts, None, value)
                    changed.add(name)
            return True
        for name, value in props.items():
            if value is None:
                continue
            cur = cells.get(name)
            if cur is None or ts > cur[0]:
                cells[name] = (ts, None, value)
                changed.add(name)
            elif ts == cur[0]:
                won = _tie(value, cur)
                if won is not None:
                    cells[name] = won
                    changed.add(name)
        return False

    def changed_records(self, changed: Iterable[str], ts_changed: bool) -> list[GraphRecord]:
        """The fewest records that write the cells named in ``changed`` (plus ``updated_at`` when
        ``ts_changed``) with their values and write times, oldest first. Writing them after the
        records of an earlier state of this key gives the cells that writing every update would."""
        by_ts: dict[int, dict[str, Any]] = {self.max_ts: {}} if ts_changed else {}
        cells = self.cells
        for name in changed:
            ts, _enc, value = cells[name]
            by_ts.setdefault(ts, {})[name] = value
        return [GraphRecord(self.kind, self.type, self.id, self.dst, props, ts)
                for ts, props in sorted(by_ts.items())]

    def merge(self, other: KeyState) -> KeyState:
        """Fold another state of the same key in (associative and commutative)."""
        self.max_ts = max(self.max_ts, other.max_ts)
        for name, cell in other.cells.items():
            cur = self.cells.get(name)
            if cur is None or cell[0] > cur[0] or (cell[0] == cur[0] and cell_text(cell) > cell_text(cur)):
                self.cells[name] = cell
        return self

    def records(self) -> list[GraphRecord]:
        """The fewest records reproducing this state's cells: one per distinct winning event time,
        oldest first; the newest always exists (it carries ``updated_at`` = ``max_ts``)."""
        by_ts: dict[int, dict[str, Any]] = {self.max_ts: {}}
        for name, (ts, _enc, value) in self.cells.items():
            by_ts.setdefault(ts, {})[name] = value
        return [GraphRecord(self.kind, self.type, self.id, self.dst, props, ts)
                for ts, props in sorted(by_ts.items())]

    def merged(self) -> GraphRecord:
        """The state as one record, as a reader sees it (per-property write times are lost)."""
        return GraphRecord(self.kind, self.type, self.id, self.dst,
                           {n: c[2] for n, c in self.cells.items()}, self.max_ts)


def state_of(rec: GraphRecord) -> KeyState:
    return KeyState(rec.kind, rec.type, rec.id, rec.dst).add(rec)


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
