"""Pure functions from source events to graph records.

These run unchanged in the streaming processors, the Iceberg backfill and the Spark rebuild, which is
what makes a rebuilt namespace byte-identical to the live one. Nothing here does I/O: side-input
lookups are passed in as a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rdg_platform.model.spec import EVENT_TIME, GraphSpec, RecordKind, RecordRule, SourceMapping

# (side-input topic, key) -> the latest side-input record, or None when unknown.
Lookup = Callable[[str, str], Mapping[str, Any] | None]
KEY_SEP = "\x1f"


class BadEventError(ValueError):
    """An event the mapping cannot use. ``reason`` is a short machine-readable code for the DLQ."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class GraphRecord:
    """A node or edge update as it travels on ``graph.node.<type>`` / ``graph.edge.<type>``.

    ``id`` is the node id, or the edge's source node id; ``dst`` is set for edges only.
    ``updated_at`` is the event time in epoch milliseconds: it becomes the Cassandra write timestamp.
    """

    kind: RecordKind
    type: str
    id: str
    dst: str | None
    properties: Mapping[str, Any] = field(default_factory=dict)
    updated_at: int = 0

    @property
    def topic(self) -> str:
        return f"graph.{self.kind}.{self.type}"

    @property
    def key(self) -> str:
        """The Kafka key and KV record id: the node id, or the edge's origin (adjacency list owner)."""
        return self.id

    @property
    def dedup_key(self) -> str:
        """Identity of the node/edge across updates, used by the dedup window."""
        return KEY_SEP.join((self.kind, self.type, self.id, self.dst or ""))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "type": self.type}
        if self.kind == "node":
            out["id"] = self.id
        else:
            out["src"] = self.id
            out["dst"] = self.dst
        out["properties"] = dict(self.properties)
        out["updated_at"] = self.updated_at
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GraphRecord:
        try:
            kind = d["kind"]
            if kind == "node":
                rid, dst = d["id"], None
            elif kind == "edge":
                rid, dst = d["src"], d["dst"]
            else:
                raise BadEventError("bad_record", f"kind must be node or edge, got {kind!r}")
            props = d.get("properties") or {}
            if not isinstance(props, Mapping):
                raise BadEventError("bad_record", "properties must be an object")
            return cls(kind, str(d["type"]), str(rid), None if dst is None else str(dst), dict(props), int(d["updated_at"]))
        except KeyError as exc:
            raise BadEventError("bad_record", f"graph record lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, BadEventError):
                raise
            raise BadEventError("bad_record", str(exc)) from None


def to_epoch_ms(value: Any) -> int:
    """Avro timestamp-millis arrives as an aware datetime from fastavro, or as int from raw JSON."""
    if isinstance(value, datetime):
        return int(round(value.timestamp() * 1000))
    if isinstance(value, bool):
        raise TypeError("a boolean is not a timestamp")
    return int(value)


def _coerce(value: Any, typ: str) -> Any:
    if typ == "timestamp":
        return to_epoch_ms(value)
    if typ in ("int", "long"):
        return int(value)
    if typ == "double":
        return float(value)
    if typ == "boolean":
        return bool(value)
    if typ == "list<string>":
        return [str(v) for v in value]
    return str(value)


def check_event(mapping: SourceMapping, event: Mapping[str, Any]) -> str | None:
    """Return a drop reason if the event is noise for this mapping, else None.

    Raises :class:`BadEventError` when a required field is missing: that is a bad event (DLQ), not
    noise.
    """
    for f in mapping.require:
        if event.get(f) is None or event.get(f) == "":
            raise BadEventError("missing_field", f"required field {f!r} is missing or empty")
    for f in mapping.drop_when_absent:
        if event.get(f) is None:
            return f"absent:{f}"
    for f in mapping.drop_when_present:
        if event.get(f) is not None:
            return f"present:{f}"
    return None


def project_event(mapping: SourceMapping, event: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the fields the mapping reads, so later steps (and state) carry less."""
    return {f: event.get(f) for f in mapping.fields_read}


def map_event(spec: GraphSpec, topic: str, event: Mapping[str, Any], lookup: Lookup | None = None) -> list[GraphRecord]:
    """Map one decoded source event to its graph records (possibly none).

    Raises :class:`BadEventError` for an event that cannot be mapped (missing required field,
    unparseable event time); the caller routes it to the dead-letter topic.
    """
    mapping = spec.mappings.get(topic)
    if mapping is None:
        raise BadEventError("unknown_topic", f"no mapping for topic {topic!r}")
    check_event(mapping, event)
    try:
        ts = to_epoch_ms(event[mapping.event_time_field])
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadEventError("bad_event_time", f"{mapping.event_time_field}={event.get(mapping.event_time_field)!r}: {exc}") from None

    side: dict[str, Mapping[str, Any] | None] = {}
    for alias, enr in mapping.enrich.items():
        key = event.get(enr.key)
        side[alias] = lookup(enr.topic, str(key)) if (lookup is not None and key is not None) else None

    out: list[GraphRecord] = []
    for rule in mapping.records:
        if any(event.get(f) is None for f in rule.when_present):
            continue
        rid = event.get(rule.id_field)
        dst = event.get(rule.dst_field) if rule.dst_field else None
        if rid is None or (rule.kind == "edge" and dst is None):
            continue
        declared = (spec.nodes[rule.type].properties if rule.kind == "node" else spec.edges[rule.type].properties)
        props = _resolve_props(rule, declared, event, side, ts)
        out.append(GraphRecord(rule.kind, rule.type, str(rid), None if dst is None else str(dst), props, ts))
    return out


def _resolve_props(rule: RecordRule, declared: Mapping[str, str], event: Mapping[str, Any],
                   side: Mapping[str, Mapping[str, Any] | None], ts: int) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for pname, ref in rule.properties.items():
        if ref == EVENT_TIME:
            value: Any = ts
        elif "." in ref:
            alias, sfield = ref.split(".", 1)
            rec = side.get(alias)
            value = None if rec is None else rec.get(sfield)
        else:
            value = event.get(ref)
        if value is None:
            continue
        try:
            props[pname] = _coerce(value, declared[pname])
        except (TypeError, ValueError) as exc:
            raise BadEventError("bad_field", f"property {pname!r} from {ref!r}={value!r}: {exc}") from None
    return props


def merge_records(older: GraphRecord, newer: GraphRecord) -> GraphRecord:
    """Merge two updates of the same node/edge: per property, the later event time wins.

    This is the same rule Cassandra applies with ``USING TIMESTAMP``, so merging in a dedup window
    before writing gives the state that writing both would give. Ties keep ``newer``'s values.
    """
    if older.dedup_key != newer.dedup_key:
        raise ValueError(f"cannot merge different records {older.dedup_key!r} and {newer.dedup_key!r}")
    if newer.updated_at < older.updated_at:
        older, newer = newer, older
    props = dict(older.properties)
    props.update(newer.properties)
    return GraphRecord(newer.kind, newer.type, newer.id, newer.dst, props, newer.updated_at)
