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

from rdg_platform.model.spec import EVENT_TIME, GraphSpec, RecordKind, SourceMapping
from rdg_platform.topology import graph_topic

# (side-input topic, key) -> the latest side-input record, or None when unknown.
Lookup = Callable[[str, str], Mapping[str, Any] | None]
KEY_SEP = "\x1f"


# How far an event time may lie ahead of its reference clock (RDG_STREAMING_MAX_CLOCK_SKEW_S's default).
DEFAULT_MAX_CLOCK_SKEW_MS = 300_000


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
        return graph_topic(self.kind, self.type)

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


@dataclass(frozen=True, slots=True)
class TimeGuard:
    """Bounds on an event's time, judged against a *reference* time: when the event was ingested.

    Why: writes are last-write-wins by event time, so one event dated years ahead (a device with a
    wrong clock) would win every property it carries until that date, and no real event could
    replace it. And a record whose age already exceeds its namespace's TTL would be born expired.

    - ``event time > reference + max_future_skew_ms``: the event is bad (:class:`BadEventError`
      ``event_time_in_future``): it goes to the DLQ and none of its records is written;
    - ``reference - event time >= ttl`` of a record's namespace (TTL > 0): that record is dropped
      (and counted by the caller); records of namespaces without TTL are kept.

    The reference is the wall clock at processing in the stream, and the archived Kafka timestamp of
    the record in the backfill and the Spark rebuild, so a replay decides exactly as the stream did
    when it first saw the record (the Kafka timestamp is the produce time, within seconds of the
    stream's processing time when the stream keeps up). Pure: the caller supplies the reference.
    """

    max_future_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS

    def check(self, event_ms: int, reference_ms: int) -> None:
        """Raise ``event_time_in_future`` when ``event_ms`` is beyond the allowed skew."""
        if event_ms > reference_ms + self.max_future_skew_ms:
            raise BadEventError("event_time_in_future",
                                f"event time {event_ms} is {(event_ms - reference_ms) / 1000:.0f} s after the "
                                f"reference time {reference_ms} (allowed clock skew "
                                f"{self.max_future_skew_ms / 1000:.0f} s)")


DEFAULT_GUARD = TimeGuard()


def map_event(spec: GraphSpec, topic: str, event: Mapping[str, Any], lookup: Lookup | None = None, *,
              reference_ms: int | None = None, guard: TimeGuard = DEFAULT_GUARD) -> list[GraphRecord]:
    """Map one decoded source event to its graph records (possibly none).

    Raises :class:`BadEventError` for an event that cannot be mapped (missing required field,
    unparseable event time, and with ``reference_ms`` an event time beyond the allowed skew); the
    caller routes it to the dead-letter topic. With ``reference_ms`` (the time the event was
    ingested), records that would be born expired are left out (:class:`TimeGuard`); without it, no
    time bound is applied. The rules are compiled once per (spec, topic) by :func:`compile_mapping`;
    this is a thin wrapper over it.
    """
    mapper = compile_mapping(spec, topic)
    if reference_ms is None:
        return mapper.map(event, lookup)
    live, _expired = mapper.guarded_rows(event, lookup, reference_ms, guard)
    return [GraphRecord(k, t, i, d, p, ts) for _key, k, t, i, d, p, ts in live]


# One mapped record before it becomes a GraphRecord:
# (dedup_key, kind, type, id, dst, properties, updated_at). The streaming dedup folds these straight
# into its LWW state, so only the records a window actually emits are built as GraphRecord objects.
MappedRow = tuple[str, RecordKind, str, str, str | None, dict[str, Any], int]

# Where a property's value comes from: the event time, a side-input field, or an event field.
_FROM_EVENT_TIME, _FROM_SIDE, _FROM_EVENT = 0, 1, 2


def _str_list(value: Any) -> list[str]:
    return [str(v) for v in value]


# Declared type -> (the Python type that needs no conversion, the converter). A value of exactly that
# type converts to itself, so skipping the call changes nothing; everything else is converted (and a
# failure is a ``bad_field``). Unknown declared types convert with ``str``.
_COERCERS: dict[str, tuple[type | None, Callable[[Any], Any]]] = {
    "timestamp": (int, to_epoch_ms), "int": (int, int), "long": (int, int), "double": (float, float),
    "boolean": (bool, bool), "list<string>": (None, _str_list), "string": (str, str),
}

# A compiled property: (name, source, event field or side alias, side field, exact type, converter, ref)
_PropPlan = tuple[str, int, str, str, type | None, Callable[[Any], Any], str]
# A compiled rule: (kind, type, dedup-key prefix, id field, dst field, when_present, properties)
_RulePlan = tuple[RecordKind, str, str, str, str | None, tuple[str, ...], tuple[_PropPlan, ...]]


def _convert(conv: Callable[[Any], Any], pname: str, ref: str, value: Any) -> Any:
    try:
        return conv(value)
    except (TypeError, ValueError) as exc:
        raise BadEventError("bad_field", f"property {pname!r} from {ref!r}={value!r}: {exc}") from None


def _bad_time(field: str, value: Any, exc: Exception) -> BadEventError:
    return BadEventError("bad_event_time", f"{field}={value!r}: {exc}")


def _compile_rows(time_field: str, enrich: tuple[tuple[str, str, str], ...],
                  rules: tuple[_RulePlan, ...]) -> Callable[[Mapping[str, Any], Lookup | None], list[MappedRow]]:
    """Generate straight-line Python for one topic's rules (what :meth:`EventMapper.rows` runs).

    Why generated: a loop over rule and property plans pays tuple unpacking, branches on the
    property source and repeated ``event.get`` of the same field for every property of every
    event; the generated function reads each field once and does only the work its rules need
    (about half the time). Every name, field and literal enters the source through ``repr`` or as
    a numbered local, so no spec content can change the code's structure. Semantics are those of
    the rules read one by one: rules in order, a property's value from the event field, the event
    time or the side-input record, ``None`` skipped, conversion to the declared type (a value already
    of exactly that type is kept as is), the first failing conversion raising ``bad_field``.
    """
    ns: dict[str, Any] = {"_bad_time": _bad_time, "to_epoch_ms": to_epoch_ms, "_convert": _convert}
    fields: dict[str, str] = {}

    def field(name: str) -> str:
        if name not in fields:
            fields[name] = f"f{len(fields)}"
        return fields[name]

    def const(value: Any) -> str:
        name = f"c{len(ns)}"
        ns[name] = value
        return name

    body: list[str] = []
    aliases: dict[str, str] = {}
    for i, (alias, topic, key_field) in enumerate(enrich):
        aliases[alias] = f"s{i}"
        k = field(key_field)
        body.append(f"    s{i} = lookup({topic!r}, str({k})) if (lookup is not None and {k} is not None) else None")
    for kind, type_, prefix, id_field, dst_field, when_present, plans in rules:
        conds = [f"{field(f)} is not None" for f in when_present]
        rid = field(id_field)
        conds.append(f"{rid} is not None")
        dst = field(dst_field) if dst_field else None
        if kind == "edge":
            conds.append(f"{dst} is not None" if dst else "False")
        body.append(f"    if {' and '.join(conds)}:")
        body.append("        p = {}")
        for pname, source, name, sfield, exact, conv, ref in plans:
            if source == _FROM_SIDE and name not in aliases:
                continue  # an alias without an enrichment never has a value
            if source == _FROM_EVENT_TIME:
                if exact is int:
                    body.append(f"        p[{pname!r}] = ts")
                    continue
                value = "ts"
            elif source == _FROM_EVENT:
                value = field(name)
            else:
                s = aliases[name]
                value = f"({s}.get({sfield!r}) if {s} is not None else None)"
            body.append(f"        v = {value}")
            check = f"type(v) is {const(exact)}" if exact is not None else "False"
            body.append(f"        if v is not None: p[{pname!r}] = v if {check} "
                        f"else _convert({const(conv)}, {pname!r}, {ref!r}, v)")
        body.append(f"        sid = {rid} if type({rid}) is str else str({rid})")
        if dst:
            body.append(f"        sdst = None if {dst} is None else ({dst} if type({dst}) is str else str({dst}))")
        else:
            body.append("        sdst = None")
        body.append(f"        out.append(({prefix!r} + sid + {KEY_SEP!r} + (sdst or ''), {kind!r}, {type_!r}, sid, sdst, p, ts))")
    head = ["def rows(event, lookup):", "    get = event.get", "    try:",
            f"        ts = event[{time_field!r}]", "        if type(ts) is not int:", "            ts = to_epoch_ms(ts)",
            "    except (TypeError, ValueError, OverflowError) as exc:",
            f"        raise _bad_time({time_field!r}, get({time_field!r}), exc) from None"]
    head += [f"    {var} = get({name!r})" for name, var in fields.items()]
    head.append("    out = []")
    src = "\n".join(head + body + ["    return out", ""])
    exec(compile(src, f"<rdg mapping of {time_field}>", "exec"), ns)  # noqa: S102 - source built above from repr'd literals
    fn: Callable[[Mapping[str, Any], Lookup | None], list[MappedRow]] = ns["rows"]
    return fn


class EventMapper:
    """The mapping of one source topic, compiled once: what :func:`map_event` runs per event.

    Why compiled: the mapping runs for every event of every processor (and in the backfill and the
    Spark rebuild), ~7 records per event. Resolving property references (``alias.field``,
    ``event_time``), declared types and key prefixes once instead of per event is most of the
    mapping's cost; the results are identical to interpreting the rules event by event.
    """

    __slots__ = ("_min_ttl_ms", "_rows", "_ttl_ms", "drop_absent", "drop_present", "enrich", "mapping", "require",
                 "rules", "time_field")

    def __init__(self, spec: GraphSpec, mapping: SourceMapping) -> None:
        self.mapping = mapping
        self.require = mapping.require
        self.drop_absent = mapping.drop_when_absent
        self.drop_present = mapping.drop_when_present
        self.time_field = mapping.event_time_field
        self.enrich = tuple((alias, e.topic, e.key) for alias, e in mapping.enrich.items())
        rules: list[_RulePlan] = []
        for rule in mapping.records:
            declared = (spec.nodes[rule.type].properties if rule.kind == "node" else spec.edges[rule.type].properties)
            props: list[_PropPlan] = []
            for pname, ref in rule.properties.items():
                exact, conv = _COERCERS.get(declared[pname], (str, str))
                if ref == EVENT_TIME:
                    props.append((pname, _FROM_EVENT_TIME, "", "", exact, conv, ref))
                elif "." in ref:
                    alias, sfield = ref.split(".", 1)
                    props.append((pname, _FROM_SIDE, alias, sfield, exact, conv, ref))
                else:
                    props.append((pname, _FROM_EVENT, ref, "", exact, conv, ref))
            rules.append((rule.kind, rule.type, f"{rule.kind}{KEY_SEP}{rule.type}{KEY_SEP}", rule.id_field,
                          rule.dst_field, rule.when_present, tuple(props)))
        self.rules = tuple(rules)
        self._rows = _compile_rows(self.time_field, self.enrich, self.rules)
        # Per produced type, its namespace's TTL in ms (0: never expires), for TimeGuard's expiry rule.
        self._ttl_ms = {(r.kind, r.type): spec.namespace(r.kind, r.type).ttl_s * 1000 for r in mapping.records}
        positive = [t for t in self._ttl_ms.values() if t > 0]
        self._min_ttl_ms = min(positive) if positive else None

    def check(self, event: Mapping[str, Any]) -> str | None:
        """:func:`check_event` for this topic: a drop reason for noise, else None; raises
        :class:`BadEventError` (``missing_field``) when a required field is missing or empty."""
        get = event.get
        for f in self.require:
            v = get(f)
            if v is None or v == "":
                raise BadEventError("missing_field", f"required field {f!r} is missing or empty")
        for f in self.drop_absent:
            if get(f) is None:
                return f"absent:{f}"
        for f in self.drop_present:
            if get(f) is not None:
                return f"present:{f}"
        return None

    def rows(self, event: Mapping[str, Any], lookup: Lookup | None = None, *, checked: bool = False) -> list[MappedRow]:
        """The event's records as :data:`MappedRow` tuples (``checked``: :meth:`check` already passed)."""
        if not checked:
            self.check(event)
        return self._rows(event, lookup)

    def guarded_rows(self, event: Mapping[str, Any], lookup: Lookup | None, reference_ms: int,
                     guard: TimeGuard = DEFAULT_GUARD, *, checked: bool = False
                     ) -> tuple[list[MappedRow], list[MappedRow]]:
        """:meth:`rows` under :class:`TimeGuard` with ``reference_ms``: (records to write, records
        left out because they would be born expired). Raises :class:`BadEventError`
        (``event_time_in_future``) when the event time is beyond the allowed skew.

        An event that maps to no record writes nothing, so it is not judged.
        """
        rows = self.rows(event, lookup, checked=checked)
        if not rows:
            return rows, []
        ts = rows[0][6]  # every record of an event carries the event's time
        guard.check(ts, reference_ms)
        min_ttl = self._min_ttl_ms
        if min_ttl is None or reference_ms - ts < min_ttl:
            return rows, []
        age = reference_ms - ts
        ttl_ms = self._ttl_ms
        live: list[MappedRow] = []
        expired: list[MappedRow] = []
        for row in rows:
            ttl = ttl_ms[row[1], row[2]]
            (expired if ttl and age >= ttl else live).append(row)
        return live, expired

    def map(self, event: Mapping[str, Any], lookup: Lookup | None = None) -> list[GraphRecord]:
        """:func:`map_event` for this topic."""
        return [GraphRecord(k, t, i, d, p, ts) for _key, k, t, i, d, p, ts in self.rows(event, lookup)]


_COMPILED: dict[tuple[int, str], tuple[GraphSpec, EventMapper]] = {}
_COMPILED_MAX = 256


def compile_mapping(spec: GraphSpec, topic: str) -> EventMapper:
    """The compiled mapping of ``topic`` in ``spec``, cached per spec object (specs are immutable).

    Raises :class:`BadEventError` (``unknown_topic``) when the spec has no mapping for ``topic``.
    """
    hit = _COMPILED.get((id(spec), topic))
    if hit is not None and hit[0] is spec:  # the entry holds the spec, so its id cannot be reused
        return hit[1]
    mapping = spec.mappings.get(topic)
    if mapping is None:
        raise BadEventError("unknown_topic", f"no mapping for topic {topic!r}")
    mapper = EventMapper(spec, mapping)
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    _COMPILED[(id(spec), topic)] = (spec, mapper)
    return mapper


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
