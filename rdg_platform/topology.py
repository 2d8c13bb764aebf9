"""The one owner of the platform's topology: every topic, consumer group and table name, and every
topic's size (partitions, retention, cleanup policy).

Names: :func:`graph_topic`, :func:`dlq_topic`, :func:`consumer_group`, :func:`archive_table` and
:func:`kv_table` are the only places those names are spelled; everything else asks this module.

Which topics exist follows from the model spec: its sources (event topics and compacted catalog side
inputs), ``graph.node.<type>`` / ``graph.edge.<type>`` for every type, and ``<topic>.dlq`` for every
source and graph topic. How each is sized comes from ``rdg_platform/topology.yaml`` (the reasoning per
topic is in its comments), the spec's ``sources:``, and an optional override file (``RDG_TOPICS_FILE``,
passed in by the entry point). :func:`ensure_topics` makes the broker match, idempotently.

This module imports the model only for typing, so the model may use the naming functions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

if TYPE_CHECKING:
    from rdg_platform.model.spec import GraphSpec

Role = Literal["source", "catalog", "graph_node", "graph_edge", "dlq"]
ROLES: tuple[Role, ...] = ("source", "catalog", "graph_node", "graph_edge", "dlq")
_HOUR_MS = 3_600_000
GraphKind = Literal["node", "edge"]
DLQ_SUFFIX = ".dlq"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def graph_topic(kind: GraphKind, type_name: str) -> str:
    """The topic carrying one node or edge type's records: ``graph.node.<type>`` / ``graph.edge.<type>``."""
    return f"graph.{kind}.{type_name}"


def namespace_topic(namespace: str) -> str:
    """The graph topic of a KV namespace name (``node.account`` -> ``graph.node.account``)."""
    return f"graph.{namespace}"


def dlq_topic(topic: str) -> str:
    """Where the bad records read from ``topic`` go."""
    return f"{topic}{DLQ_SUFFIX}"


# The compacted ledger of re-driven dead letters (``rdg dlq redrive``), keyed by DLQ coordinates.
REDRIVE_LEDGER_TOPIC = "rdg.dlq.redriven"


def consumer_group(prefix: str, app_name: str) -> str:
    """The consumer group of one streaming app (all its replicas share it)."""
    return f"{prefix}-{app_name}"


def archive_table(topic: str) -> str:
    """The Iceberg table (within the archive namespace) holding one source topic's raw history."""
    return topic.replace(".", "_").replace("-", "_")


def kv_table(kind: GraphKind, type_name: str, *, reverse: bool = False, version: int | None = None) -> str:
    """The Cassandra table of a namespace (``<kind>_<type>``, ``_v<N>`` for a blue/green rebuild version,
    then ``_in`` for the reverse adjacency of an edge type: ``edge_plays_v2_in``). ``type_name`` must be
    a safe identifier: these names reach DDL."""
    if not _NAME.match(type_name):
        raise ValueError(f"type name {type_name!r} is not a safe identifier ([a-z][a-z0-9_]*, at most 48)")
    base = f"{kind}_{type_name}" + ("" if version is None else f"_v{int(version)}")
    return base + ("_in" if reverse else "")


def check_identifier(name: str, what: str = "identifier") -> str:
    """Reject anything but a plain lower-case CQL identifier (names that reach DDL come from here)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", name):
        raise ValueError(f"{what} {name!r} is not a safe identifier ([a-z][a-z0-9_]*, at most 48 characters)")
    return name


class TopicConfigError(ValueError):
    """The topic configuration is invalid; the message names the topic and key."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic as it should exist on the broker."""

    name: str
    role: Role
    partitions: int
    replication_factor: int
    retention_hours: int | None  # None = keep forever (retention.ms=-1)
    cleanup_policy: str
    extra_configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def configs(self) -> dict[str, str]:
        """The Kafka topic configs to set (strings, as the admin API wants them)."""
        out = dict(self.extra_configs)
        out["cleanup.policy"] = self.cleanup_policy
        out["retention.ms"] = "-1" if self.retention_hours is None else str(int(self.retention_hours) * _HOUR_MS)
        return out


@dataclass
class EnsureResult:
    """What :func:`ensure_topics` did."""

    created: list[str] = field(default_factory=list)
    altered: dict[str, dict[str, str]] = field(default_factory=dict)  # topic -> configs changed
    partitions_added: dict[str, tuple[int, int]] = field(default_factory=dict)  # topic -> (old, new)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.altered or self.partitions_added)


def default_topics_file() -> Path:
    return Path(str(resources.files("rdg_platform") / "topology.yaml"))


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open() as fh:
            doc = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise TopicConfigError(f"topic config file {path} not found") from None
    if not isinstance(doc, dict):
        raise TopicConfigError(f"{path}: top level must be a mapping")
    return doc


_ALLOWED_KEYS = {"partitions", "retention_hours", "cleanup_policy", "replication_factor", "configs"}


def _layer(into: dict[str, Any], raw: Any, where: str) -> None:
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        raise TopicConfigError(f"{where}: must be a mapping")
    for k, v in raw.items():
        if k not in _ALLOWED_KEYS:
            raise TopicConfigError(f"{where}: unknown key {k!r} (allowed: {sorted(_ALLOWED_KEYS)})")
        if k == "configs":
            if not isinstance(v, Mapping):
                raise TopicConfigError(f"{where}.configs: must be a mapping of Kafka config -> value")
            into.setdefault("configs", {}).update({str(ck): str(cv) for ck, cv in v.items()})
        else:
            into[k] = v


def _topic_roles(spec: GraphSpec) -> list[tuple[str, Role]]:
    out: list[tuple[str, Role]] = []
    for src in spec.sources.values():
        out.append((src.topic, "catalog" if src.kind == "side_input" else "source"))
    out += [(graph_topic("node", n), "graph_node") for n in spec.nodes]
    out += [(graph_topic("edge", e), "graph_edge") for e in spec.edges]
    out += [(dlq_topic(name), "dlq") for name, _role in list(out)]
    return out


def topic_specs(spec: GraphSpec, overrides: Path | str | Mapping[str, Any] | None = None, *,
                base: Path | None = None) -> list[TopicSpec]:
    """Every topic the platform needs for ``spec``, sized from config (see ``topics.yaml``).

    ``overrides`` is a path to (or the parsed content of) a YAML with the same shape as
    ``topology.yaml`` (the entry points pass ``settings.topics_file``).
    """
    doc = _load_yaml(base or default_topics_file())
    over: Mapping[str, Any] = {}
    if isinstance(overrides, (str, Path)):
        over = _load_yaml(Path(overrides))
    elif overrides is not None:
        over = overrides
    for d, where in ((doc, "topology.yaml"), (over, "override")):
        for k in d:
            if k not in ("defaults", "topics"):
                raise TopicConfigError(f"{where}: unknown top-level key {k!r} (expected defaults, topics)")

    names = _topic_roles(spec)
    known = {n for n, _ in names}
    for d, where in ((over, "override"),):
        for t in (d.get("topics") or {}):
            if t not in known:
                raise TopicConfigError(f"{where}: topic {t!r} is not a topic of this model (known: {sorted(known)})")

    out: list[TopicSpec] = []
    for name, role in names:
        eff: dict[str, Any] = {}
        for d, where in ((doc, "topology.yaml"), (over, "override")):
            defaults = d.get("defaults") or {}
            if "replication_factor" in defaults:
                eff["replication_factor"] = defaults["replication_factor"]
            _layer(eff, defaults.get(role), f"{where} defaults.{role}")
        _layer(eff, (doc.get("topics") or {}).get(name), f"topology.yaml topics.{name}")
        if role in ("source", "catalog"):
            src = spec.sources[name]
            eff["partitions"] = src.partitions
            if src.retention_hours is not None:
                eff["retention_hours"] = src.retention_hours
        _layer(eff, (over.get("topics") or {}).get(name), f"override topics.{name}")
        out.append(_make_spec(name, role, eff))
    return out


def _make_spec(name: str, role: Role, eff: Mapping[str, Any]) -> TopicSpec:
    try:
        partitions = int(eff.get("partitions", 1))
        rf = int(eff.get("replication_factor", 1))
        rh = eff.get("retention_hours")
        retention = None if rh is None or int(rh) < 0 else int(rh)
    except (TypeError, ValueError) as exc:
        raise TopicConfigError(f"topic {name!r}: {exc}") from None
    if partitions < 1 or rf < 1:
        raise TopicConfigError(f"topic {name!r}: partitions and replication_factor must be >= 1")
    policy = str(eff.get("cleanup_policy", "delete")).replace(" ", "")
    if set(policy.split(",")) - {"delete", "compact"} or not policy:
        raise TopicConfigError(f"topic {name!r}: cleanup_policy {policy!r} must be delete, compact or compact,delete")
    return TopicSpec(name, role, partitions, rf, retention, policy, dict(eff.get("configs") or {}))


def _admin(bootstrap: str | AdminClient, conf: Mapping[str, Any] | None) -> AdminClient:
    if isinstance(bootstrap, AdminClient):
        return bootstrap
    return AdminClient({"bootstrap.servers": bootstrap, **(conf or {})})


def describe_topics(bootstrap: str | AdminClient, names: Sequence[str], *, timeout_s: float = 30.0,
                    admin_conf: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Existing topics among ``names``: ``{name: {"partitions": n, "configs": {key: value}}}``."""
    admin = _admin(bootstrap, admin_conf)
    md = admin.list_topics(timeout=timeout_s)
    present = [n for n in names if n in md.topics and md.topics[n].error is None]
    out: dict[str, dict[str, Any]] = {n: {"partitions": len(md.topics[n].partitions), "configs": {}} for n in present}
    if present:
        futs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present],
                                      request_timeout=timeout_s)
        for res, fut in futs.items():
            entries = fut.result(timeout=timeout_s)
            out[res.name]["configs"] = {k: e.value for k, e in entries.items()}
    return out


def ensure_topics(bootstrap: str | AdminClient, spec: GraphSpec, *,
                  overrides: Path | str | Mapping[str, Any] | None = None,
                  admin_conf: Mapping[str, Any] | None = None, timeout_s: float = 30.0,
                  dry_run: bool = False) -> EnsureResult:
    """Create missing topics and bring existing ones to their configured configs. Idempotent.

    Partition counts only grow (Kafka cannot shrink a topic; a smaller configured count is a warning,
    and growing one re-maps keys to partitions, also warned). Replication factor is not changed on
    existing topics (a reassignment is an operator's job).
    """
    admin = _admin(bootstrap, admin_conf)
    wanted = topic_specs(spec, overrides)
    res = EnsureResult()
    current = describe_topics(admin, [t.name for t in wanted], timeout_s=timeout_s)

    missing = [t for t in wanted if t.name not in current]
    if missing and not dry_run:
        futs = admin.create_topics([NewTopic(t.name, t.partitions, t.replication_factor, config=t.configs)
                                    for t in missing], request_timeout=timeout_s)
        for name, fut in futs.items():
            try:
                fut.result(timeout=timeout_s)
                res.created.append(name)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                    raise
                # Created concurrently (another test session / process): converge it below.
                res.unchanged.append(name)
        if res.unchanged:
            current.update(describe_topics(admin, res.unchanged, timeout_s=timeout_s))
            res.unchanged = []
    elif missing:
        res.created = [t.name for t in missing]

    alters: list[ConfigResource] = []
    grow: dict[str, NewPartitions] = {}
    for t in wanted:
        cur = current.get(t.name)
        if cur is None:
            continue
        diff = {k: v for k, v in t.configs.items() if cur["configs"].get(k) != v}
        if diff:
            res.altered[t.name] = diff
            alters.append(ConfigResource(ResourceType.TOPIC, t.name, incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in diff.items()]))
        if cur["partitions"] < t.partitions:
            res.partitions_added[t.name] = (cur["partitions"], t.partitions)
            grow[t.name] = NewPartitions(t.name, t.partitions)
            res.warnings.append(f"{t.name}: partitions {cur['partitions']} -> {t.partitions}; keys map to "
                                "partitions differently from now on")
        elif cur["partitions"] > t.partitions:
            res.warnings.append(f"{t.name}: has {cur['partitions']} partitions, config says {t.partitions}; "
                                "Kafka cannot shrink a topic, left as is")
        if not diff and cur["partitions"] >= t.partitions:
            res.unchanged.append(t.name)
    if dry_run:
        return res
    if alters:
        for _res, fut in admin.incremental_alter_configs(alters, request_timeout=timeout_s).items():
            fut.result(timeout=timeout_s)
    if grow:
        for _name, fut in admin.create_partitions(list(grow.values()), request_timeout=timeout_s).items():
            fut.result(timeout=timeout_s)
    _wait_converged(admin, [t for t in wanted if t.name in res.altered or t.name in res.created
                            or t.name in res.partitions_added], timeout_s)
    return res


def _wait_converged(admin: AdminClient, topics: Sequence[TopicSpec], timeout_s: float) -> None:
    """Config changes propagate to the broker's metadata asynchronously (KRaft); wait until a read
    shows them, so a caller that describes the topics right after sees what was set."""
    deadline = time.monotonic() + timeout_s
    pending = list(topics)
    while pending:
        cur = describe_topics(admin, [t.name for t in pending], timeout_s=timeout_s)
        lag: dict[str, str] = {}
        for t in pending:
            now = cur.get(t.name)
            if now is None:
                lag[t.name] = "not listed yet"
                continue
            diffs = [f"{k}={now['configs'].get(k)!r} (want {v!r})" for k, v in t.configs.items()
                     if now["configs"].get(k) != v]
            if now["partitions"] < t.partitions:
                diffs.append(f"partitions={now['partitions']} (want {t.partitions})")
            if diffs:
                lag[t.name] = ", ".join(diffs)
        pending = [t for t in pending if t.name in lag]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic configs not visible after {timeout_s}s: {lag}")
        time.sleep(0.2)


def partitions_of(spec: GraphSpec, topic: str, overrides: Path | str | Mapping[str, Any] | None = None) -> int:
    """The configured partition count of one topic (apps cap their replicas at it)."""
    for t in topic_specs(spec, overrides):
        if t.name == topic:
            return t.partitions
    raise KeyError(f"{topic!r} is not a topic of this model")
