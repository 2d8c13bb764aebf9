"""The graph model spec: node/edge types, namespaces, sources and event-to-graph mappings.

The spec is data (``spec.yaml``) validated into frozen dataclasses. Validation happens once, at load
time, so a typo in the model fails loudly with the offending name instead of silently dropping
records in a streaming app hours later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from rdg_platform.topology import dlq_topic, graph_topic

RecordKind = Literal["node", "edge"]
PROPERTY_TYPES = frozenset({"string", "int", "long", "double", "boolean", "timestamp", "list<string>"})
EVENT_TIME = "event_time"
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_CQL_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


# Cassandra 5.0's compaction strategies: the only values a spec may name (they reach DDL).
COMPACTION_CLASSES = frozenset({"SizeTieredCompactionStrategy", "LeveledCompactionStrategy",
                                "TimeWindowCompactionStrategy", "UnifiedCompactionStrategy"})


class SpecError(ValueError):
    """The model spec is invalid; the message names the offending element."""


@dataclass(frozen=True)
class SpecDefaults:
    """What the caller fills in where the spec is silent: the keyspace of namespaces that name none,
    and the contact points, port and data centre of clusters that name none. The entry points build it
    from settings (``Settings.spec_defaults()``); the spec itself reads no environment."""

    keyspace: str | None = None
    contact_points: tuple[str, ...] = ("127.0.0.1",)
    port: int = 9042
    local_dc: str = "datacenter1"


@dataclass(frozen=True)
class Cluster:
    """A Cassandra cluster a namespace can be routed to."""

    name: str
    contact_points: tuple[str, ...]
    port: int
    local_dc: str


@dataclass(frozen=True)
class Namespace:
    """Where one node or edge type is stored: KVDAL's namespace = one table on one cluster."""

    name: str  # e.g. "node.account", "edge.plays"
    kind: RecordKind
    type: str
    cluster: str
    keyspace: str
    table: str
    ttl_s: int
    compaction: str
    reverse_table: str | None = None  # edges only: the in-edge adjacency list

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,) if self.reverse_table is None else (self.table, self.reverse_table)


@dataclass(frozen=True)
class NodeType:
    name: str
    properties: Mapping[str, str]
    # Properties whose change the streaming dedup emits at once instead of folding it into the
    # window's trailing emission (e.g. a playback action: START/STOP matter now, heartbeats can wait).
    significant: tuple[str, ...] = ()

    @property
    def topic(self) -> str:
        return graph_topic("node", self.name)


@dataclass(frozen=True)
class EdgeType:
    name: str
    src: str
    dst: str
    properties: Mapping[str, str]
    ttl_s: int | None = None
    significant: tuple[str, ...] = ()  # as NodeType.significant

    @property
    def topic(self) -> str:
        return graph_topic("edge", self.name)


@dataclass(frozen=True)
class Source:
    """A source topic, its Avro schema and the topic-level settings used to provision it."""

    topic: str
    schema_file: str
    schema: Mapping[str, Any]
    key: str
    kind: Literal["event", "side_input"]
    partitions: int
    retention_hours: int | None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.schema["fields"])

    @property
    def dlq_topic(self) -> str:
        return dlq_topic(self.topic)


@dataclass(frozen=True)
class Enrichment:
    alias: str
    topic: str
    key: str  # field of the event holding the side-input key


@dataclass(frozen=True)
class RecordRule:
    """One graph record produced from an event: a node (``id``) or an edge (``src`` -> ``dst``)."""

    kind: RecordKind
    type: str
    id_field: str  # node id, or edge src
    dst_field: str | None
    properties: Mapping[str, str]  # property name -> event field / alias.field / event_time
    when_present: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceMapping:
    """How one source topic's events become graph records."""

    source: str
    require: tuple[str, ...]
    event_time_field: str
    enrich: Mapping[str, Enrichment]
    records: tuple[RecordRule, ...]
    drop_when_absent: tuple[str, ...] = ()
    drop_when_present: tuple[str, ...] = ()

    @property
    def fields_read(self) -> tuple[str, ...]:
        """Every event field the mapping reads, in a stable order (for projection)."""
        seen: dict[str, None] = {}
        for f in (*self.require, self.event_time_field, *self.drop_when_absent, *self.drop_when_present):
            seen[f] = None
        for e in self.enrich.values():
            seen[e.key] = None
        for r in self.records:
            seen[r.id_field] = None
            if r.dst_field:
                seen[r.dst_field] = None
            for f in r.when_present:
                seen[f] = None
            for ref in r.properties.values():
                if "." not in ref and ref != EVENT_TIME:
                    seen[ref] = None
        return tuple(seen)


@dataclass(frozen=True)
class ArchivePolicy:
    """How long the Iceberg archive keeps each topic-hour (``archive:`` in the spec).

    ``retention_days`` None keeps the archive forever. A rebuild recomputes a namespace from the
    archive, so an archive shorter than a namespace's TTL silently loses the older part of that
    namespace in every rebuild; loading such a spec fails unless ``allow_shorter_than_ttl`` says the
    loss is accepted on purpose.
    """

    retention_days: int | None
    allow_shorter_than_ttl: bool = False

    @property
    def retention_s(self) -> int | None:
        return None if self.retention_days is None else self.retention_days * 86_400


@dataclass(frozen=True)
class GraphSpec:
    """The validated model. Lookups are by type name; iteration order follows the YAML."""

    clusters: Mapping[str, Cluster]
    nodes: Mapping[str, NodeType]
    edges: Mapping[str, EdgeType]
    sources: Mapping[str, Source]
    mappings: Mapping[str, SourceMapping]
    namespaces: Mapping[str, Namespace] = field(default_factory=dict)
    replication_factor: int = 1
    archive: ArchivePolicy = field(default_factory=lambda: ArchivePolicy(None))

    def namespace(self, kind: RecordKind, type_name: str) -> Namespace:
        key = f"{kind}.{type_name}"
        try:
            return self.namespaces[key]
        except KeyError:
            raise KeyError(f"unknown {kind} type {type_name!r}") from None

    def graph_topics(self) -> list[str]:
        return [n.topic for n in self.nodes.values()] + [e.topic for e in self.edges.values()]

    def significant_properties(self) -> dict[tuple[RecordKind, str], frozenset[str]]:
        """(kind, type) -> the properties the spec marks ``significant`` (types without any omitted)."""
        out: dict[tuple[RecordKind, str], frozenset[str]] = {}
        for n in self.nodes.values():
            if n.significant:
                out[("node", n.name)] = frozenset(n.significant)
        for e in self.edges.values():
            if e.significant:
                out[("edge", e.name)] = frozenset(e.significant)
        return out

    def event_sources(self) -> list[Source]:
        return [s for s in self.sources.values() if s.kind == "event"]

    def side_inputs(self) -> list[Source]:
        return [s for s in self.sources.values() if s.kind == "side_input"]


def schemas_dir() -> Path:
    """The project's own copy of the Avro contract (``rdg_platform/schemas``)."""
    return Path(str(resources.files("rdg_platform") / "schemas"))


def default_spec_path() -> Path:
    return Path(str(resources.files("rdg_platform.model") / "spec.yaml"))


def load_avro_schema(name: str) -> dict[str, Any]:
    path = schemas_dir() / name
    if not path.exists():
        raise SpecError(f"Avro schema file {name!r} not found in {schemas_dir()}")
    with path.open() as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def _req(d: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise SpecError(f"{where}: missing required key {key!r}")
    return d[key]


def _check_ident(name: str, where: str) -> None:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise SpecError(f"{where}: {name!r} is not a valid name (lowercase letters, digits, underscores)")


def _parse_props(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: properties must be a mapping of name -> type")
    out: dict[str, str] = {}
    for name, typ in raw.items():
        _check_ident(name, f"{where} property")
        if typ not in PROPERTY_TYPES:
            raise SpecError(f"{where}: property {name!r} has unknown type {typ!r} (known: {sorted(PROPERTY_TYPES)})")
        out[name] = typ
    return out


def _parse_significant(raw: Any, properties: Mapping[str, str], where: str) -> tuple[str, ...]:
    """``significant: [prop, ...]``: each a declared property of the type."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise SpecError(f"{where}: significant must be a list of property names")
    for p in raw:
        if p not in properties:
            raise SpecError(f"{where}: significant property {p!r} is not declared on the type "
                            f"(declared: {sorted(properties)})")
    return tuple(raw)


def parse_spec(doc: Mapping[str, Any], local: SpecDefaults | None = None) -> GraphSpec:
    """Validate a spec document (the parsed YAML) into a :class:`GraphSpec`.

    ``local`` fills in the keyspace and the clusters' contact points, port and data centre when the
    spec leaves them empty, so the same YAML runs locally and, with hosts filled in, in production.
    """
    local = local or SpecDefaults()
    if not isinstance(doc, Mapping):
        raise SpecError("spec: top level must be a mapping")
    defaults = doc.get("defaults") or {}
    default_keyspace = local.keyspace or defaults.get("keyspace", "rdg")
    default_cluster = defaults.get("cluster", "default")
    node_ttl = int(defaults.get("node_ttl_s", 0))
    edge_ttl = int(defaults.get("edge_ttl_s", 0))

    clusters: dict[str, Cluster] = {}
    for cname, c in (doc.get("clusters") or {"default": {}}).items():
        c = c or {}
        points = tuple(c.get("contact_points") or ()) or local.contact_points
        clusters[cname] = Cluster(cname, points, int(c.get("port") or local.port), c.get("local_dc", local.local_dc))
    if default_cluster not in clusters:
        raise SpecError(f"defaults.cluster: cluster {default_cluster!r} is not defined (known: {sorted(clusters)})")

    nodes: dict[str, NodeType] = {}
    for name, nd in (_req(doc, "nodes", "spec") or {}).items():
        _check_ident(name, "node type")
        nprops = _parse_props((nd or {}).get("properties"), f"node {name!r}")
        nodes[name] = NodeType(name, nprops, _parse_significant((nd or {}).get("significant"), nprops, f"node {name!r}"))

    edges: dict[str, EdgeType] = {}
    for name, ed in (_req(doc, "edges", "spec") or {}).items():
        _check_ident(name, "edge type")
        if name in nodes:
            raise SpecError(f"edge {name!r}: a node type already has this name")
        where = f"edge {name!r}"
        src, dst = _req(ed, "src", where), _req(ed, "dst", where)
        for end, val in (("src", src), ("dst", dst)):
            if val not in nodes:
                raise SpecError(f"{where}: {end} node type {val!r} is not defined (known node types: {sorted(nodes)})")
        ttl = ed.get("ttl_s")
        eprops = _parse_props(ed.get("properties"), where)
        edges[name] = EdgeType(name, src, dst, eprops, None if ttl is None else int(ttl),
                               _parse_significant(ed.get("significant"), eprops, where))

    sources: dict[str, Source] = {}
    for topic, sd in (_req(doc, "sources", "spec") or {}).items():
        where = f"source {topic!r}"
        schema_file = _req(sd, "schema", where)
        schema = load_avro_schema(schema_file)
        kind = sd.get("kind", "event")
        if kind not in ("event", "side_input"):
            raise SpecError(f"{where}: kind must be 'event' or 'side_input', not {kind!r}")
        key = _req(sd, "key", where)
        src = Source(topic, schema_file, schema, key, kind, int(sd.get("partitions", 1)), sd.get("retention_hours"))
        if key not in src.field_names:
            raise SpecError(f"{where}: key field {key!r} is not in schema {schema_file} (fields: {list(src.field_names)})")
        sources[topic] = src

    mappings: dict[str, SourceMapping] = {}
    for topic, md in (doc.get("mappings") or {}).items():
        mappings[topic] = _parse_mapping(topic, md, sources, nodes, edges)

    namespaces = _build_namespaces(doc.get("namespaces") or {}, nodes, edges, clusters, default_cluster,
                                   default_keyspace, node_ttl, edge_ttl)
    archive = _parse_archive(doc.get("archive"), namespaces)
    return GraphSpec(clusters, nodes, edges, sources, mappings, namespaces, int(defaults.get("replication_factor", 1)),
                     archive)


def _parse_archive(raw: Any, namespaces: Mapping[str, Namespace]) -> ArchivePolicy:
    """``archive: {retention_days, allow_shorter_than_ttl}``; the retention must cover the longest
    namespace TTL (TTL 0 = no expiry, not compared: such namespaces keep what the archive holds)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError("archive: must be a mapping with retention_days (and optionally allow_shorter_than_ttl)")
    unknown = set(raw) - {"retention_days", "allow_shorter_than_ttl"}
    if unknown:
        raise SpecError(f"archive: unknown keys {sorted(unknown)} (known: retention_days, allow_shorter_than_ttl)")
    days = raw.get("retention_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days <= 0):
        raise SpecError(f"archive.retention_days: {days!r} must be a positive number of days (or null: forever)")
    opt_out = raw.get("allow_shorter_than_ttl", False)
    if not isinstance(opt_out, bool):
        raise SpecError(f"archive.allow_shorter_than_ttl: {opt_out!r} must be true or false")
    policy = ArchivePolicy(days, opt_out)
    if policy.retention_s is not None and not opt_out:
        longest = max((ns for ns in namespaces.values() if ns.ttl_s > 0), key=lambda ns: ns.ttl_s, default=None)
        if longest is not None and longest.ttl_s > policy.retention_s:
            need = -(-longest.ttl_s // 86_400)
            raise SpecError(
                f"archive.retention_days: {days} days is shorter than the TTL of namespace {longest.name!r} "
                f"({longest.ttl_s} s = {longest.ttl_s / 86_400:g} days): a rebuild from the archive would drop "
                f"the {longest.name} records older than {days} days that are still live. Set "
                f"archive.retention_days >= {need}, or archive.allow_shorter_than_ttl: true to accept that loss")
    return policy


def _parse_mapping(topic: str, md: Mapping[str, Any], sources: Mapping[str, Source],
                   nodes: Mapping[str, NodeType], edges: Mapping[str, EdgeType]) -> SourceMapping:
    where = f"mapping {topic!r}"
    if topic not in sources:
        raise SpecError(f"{where}: topic is not a declared source (known: {sorted(sources)})")
    src = sources[topic]
    fields = set(src.field_names)

    def check_field(fname: str, ctx: str) -> None:
        if fname not in fields:
            raise SpecError(f"{ctx}: field {fname!r} is not in schema {src.schema_file} of {topic} "
                            f"(fields: {list(src.field_names)})")

    require = tuple(md.get("require") or ())
    for f in require:
        check_field(f, f"{where} require")
    et_field = md.get("event_time", EVENT_TIME)
    check_field(et_field, f"{where} event_time")

    enrich: dict[str, Enrichment] = {}
    for alias, ed in (md.get("enrich") or {}).items():
        ctx = f"{where} enrich {alias!r}"
        side_topic = _req(ed, "topic", ctx)
        if side_topic not in sources or sources[side_topic].kind != "side_input":
            raise SpecError(f"{ctx}: {side_topic!r} is not a side_input source")
        key = _req(ed, "key", ctx)
        check_field(key, ctx)
        enrich[alias] = Enrichment(alias, side_topic, key)

    rules: list[RecordRule] = []
    for i, rd in enumerate(md.get("records") or ()):
        if "node" in rd:
            kind: RecordKind = "node"
            tname = rd["node"]
            ctx = f"{where} record {i} (node {tname!r})"
            if tname not in nodes:
                raise SpecError(f"{ctx}: node type {tname!r} is not defined (known: {sorted(nodes)})")
            declared = nodes[tname].properties
            id_field, dst_field = _req(rd, "id", ctx), None
        elif "edge" in rd:
            kind = "edge"
            tname = rd["edge"]
            ctx = f"{where} record {i} (edge {tname!r})"
            if tname not in edges:
                raise SpecError(f"{ctx}: edge type {tname!r} is not defined (known: {sorted(edges)})")
            declared = edges[tname].properties
            id_field, dst_field = _req(rd, "src", ctx), _req(rd, "dst", ctx)
        else:
            raise SpecError(f"{where} record {i}: needs a 'node' or 'edge' key")
        check_field(id_field, ctx)
        if dst_field is not None:
            check_field(dst_field, ctx)
        props: dict[str, str] = {}
        for pname, ref in (rd.get("properties") or {}).items():
            if pname not in declared:
                raise SpecError(f"{ctx}: property {pname!r} is not declared on the type (declared: {sorted(declared)})")
            if "." in ref:
                alias, sfield = ref.split(".", 1)
                if alias not in enrich:
                    raise SpecError(f"{ctx}: property {pname!r} reads {ref!r} but enrichment {alias!r} is not declared")
                side = sources[enrich[alias].topic]
                if sfield not in side.field_names:
                    raise SpecError(f"{ctx}: property {pname!r} reads {ref!r} but field {sfield!r} is not in "
                                    f"schema {side.schema_file} (fields: {list(side.field_names)})")
            elif ref != EVENT_TIME:
                check_field(ref, f"{ctx} property {pname!r}")
            props[pname] = ref
        when = tuple(rd.get("when_present") or ())
        for f in when:
            check_field(f, f"{ctx} when_present")
        rules.append(RecordRule(kind, tname, id_field, dst_field, props, when))
    drop_absent = tuple(md.get("drop_when_absent") or ())
    drop_present = tuple(md.get("drop_when_present") or ())
    for f in (*drop_absent, *drop_present):
        check_field(f, f"{where} drop_when")
    return SourceMapping(topic, require, et_field, enrich, tuple(rules), drop_absent, drop_present)


def _build_namespaces(overrides: Mapping[str, Any], nodes: Mapping[str, NodeType], edges: Mapping[str, EdgeType],
                      clusters: Mapping[str, Cluster], default_cluster: str, default_keyspace: str,
                      node_ttl: int, edge_ttl: int) -> dict[str, Namespace]:
    known = {f"node.{n}" for n in nodes} | {f"edge.{e}" for e in edges}
    for key in overrides:
        if key not in known:
            raise SpecError(f"namespaces: {key!r} names no node or edge type (use node.<type> or edge.<type>)")
    out: dict[str, Namespace] = {}
    used: dict[tuple[str, str, str], str] = {}

    def claim(ns_name: str, cluster: str, keyspace: str, table: str) -> None:
        slot = (cluster, keyspace, table)
        if slot in used:
            raise SpecError(f"duplicate namespace: {ns_name!r} and {used[slot]!r} both use table "
                            f"{keyspace}.{table} on cluster {cluster!r}")
        used[slot] = ns_name

    for kind, types in (("node", nodes), ("edge", edges)):
        for tname, t in types.items():
            ns_name = f"{kind}.{tname}"
            ov = overrides.get(ns_name) or {}
            cluster = ov.get("cluster", default_cluster)
            if cluster not in clusters:
                raise SpecError(f"namespace {ns_name!r}: cluster {cluster!r} is not defined (known: {sorted(clusters)})")
            keyspace = ov.get("keyspace", default_keyspace)
            table = ov.get("table", f"{kind}_{tname}")
            for ident, what in ((keyspace, "keyspace"), (table, "table")):
                if not _CQL_IDENT.match(ident):
                    raise SpecError(f"namespace {ns_name!r}: {what} {ident!r} is not a valid CQL identifier")
            if kind == "node":
                ttl = int(ov.get("ttl_s", node_ttl))
            else:
                et = t.ttl_s if isinstance(t, EdgeType) else None
                ttl = int(ov.get("ttl_s", edge_ttl if et is None else et))
            if ttl < 0:
                raise SpecError(f"namespace {ns_name!r}: ttl_s must be >= 0")
            compaction = ov.get("compaction") or (
                "TimeWindowCompactionStrategy" if kind == "edge" and ttl > 0 else "SizeTieredCompactionStrategy")
            if compaction not in COMPACTION_CLASSES:
                raise SpecError(f"namespace {ns_name!r}: compaction {compaction!r} is not one of "
                                f"{sorted(COMPACTION_CLASSES)} (it reaches DDL, so only these are allowed)")
            reverse = f"{table}_in" if kind == "edge" else None
            claim(ns_name, cluster, keyspace, table)
            if reverse:
                claim(ns_name + " (reverse)", cluster, keyspace, reverse)
            out[ns_name] = Namespace(ns_name, kind, tname, cluster, keyspace, table, ttl, compaction, reverse)  # type: ignore[arg-type]
    return out


def load_spec(path: str | Path | None = None, local: SpecDefaults | None = None) -> GraphSpec:
    """Load and validate a spec file (the packaged default when ``path`` is None)."""
    p = Path(path) if path else default_spec_path()
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise SpecError(f"{p}: cannot read spec: {exc}") from exc
    return parse_spec(doc, local)


@cache
def default_spec() -> GraphSpec:
    """The packaged default model with local defaults (cached per process). Its types, topics and
    mappings are what callers use it for; code that talks to Cassandra loads the spec with the
    settings' :class:`SpecDefaults` instead."""
    return load_spec()
