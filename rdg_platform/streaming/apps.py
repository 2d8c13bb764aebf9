"""The registry of streaming apps: the one description of an app that ``rdg apps``, the launchers
(local processes, Kubernetes) and the Dagster control plane all use.

One processor per source topic that has a mapping (member topics and the catalog topics, whose
records are title/game nodes and ``based_on`` edges), and one sink per *group of namespaces*: each
sink group is its own process and consumer group, so a slow namespace (say a hot edge table) only
delays its own group. Groups are configuration (``RDG_STREAMING_SINK_GROUPS``), not code.

Names come from :mod:`rdg_platform.topology` (graph topics, consumer groups) and partition counts
from its topic layout, so an app's replica cap is the partition count its input topics really have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rdg_platform.model.spec import GraphSpec
from rdg_platform.settings import StreamingSettings
from rdg_platform.topology import consumer_group, namespace_topic, topic_specs

AppKind = Literal["processor", "sink"]

# Default sink groups: nodes together (small, hot rows), member edges, activity edges.
DEFAULT_SINK_GROUPS: dict[str, list[str]] = {
    "nodes": ["node.*"],
    "edges-member": ["edge.has_profile", "edge.logged_in_from", "edge.streamed_from"],
    "edges-activity": ["edge.*"],  # everything not claimed by an earlier group
}


@dataclass(frozen=True)
class AppSpec:
    """One streaming app: a process (or a Deployment of replicas) with its own consumer group.

    ``partitions`` is the largest partition count of its input topics: more replicas than that
    would sit idle in the consumer group, so launchers cap replicas at it. ``metrics_port`` is where
    a locally run app serves Prometheus metrics.
    """

    name: str
    kind: AppKind
    input_topics: tuple[str, ...]
    consumer_group: str
    partitions: int = 1
    metrics_port: int | None = None
    source_topic: str | None = None  # processors: the source topic
    sink_group: str | None = None  # sinks: the namespace group
    namespaces: tuple[str, ...] = ()  # sinks: the namespaces written

    @property
    def command(self) -> tuple[str, ...]:
        """How one replica is started in a container image (locally the supervisor runs the same
        module with this interpreter)."""
        return ("python", "-m", "rdg_platform.streaming", "run", self.name)


def resolve_sink_groups(spec: GraphSpec, groups: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Expand ``node.*`` / ``edge.*`` patterns; each namespace goes to the first group naming it.

    Every namespace must land in exactly one group: an unassigned namespace would never be written,
    so it is an error, as is a name that matches no namespace.
    """
    remaining = list(spec.namespaces)
    claimed: dict[str, list[str]] = {}
    explicit = {p for pats in groups.values() for p in pats if not p.endswith(".*")}
    for p in explicit:
        if p not in spec.namespaces:
            raise ValueError(f"sink groups: {p!r} is not a namespace (known: {sorted(spec.namespaces)})")
    for g, pats in groups.items():
        mine: list[str] = []
        for p in pats:
            if p.endswith(".*"):
                kind = p[:-2]
                mine += [n for n in remaining if n.startswith(kind + ".") and n not in explicit and n not in mine]
            elif p in remaining:
                mine.append(p)
        remaining = [n for n in remaining if n not in mine]
        if mine:
            claimed[g] = mine
    if remaining:
        raise ValueError(f"sink groups leave namespaces {remaining} unwritten; add them to RDG_STREAMING_SINK_GROUPS")
    return claimed


def _slug(topic: str) -> str:
    return topic.replace(".", "_")


def app_specs(spec: GraphSpec, streaming: StreamingSettings, topics_file: Path | None = None) -> list[AppSpec]:
    """Every app, in a stable order (processors by source, then sinks); the n-th app's metrics port
    is ``metrics_base_port + n``. ``topics_file``: the topic layout overrides (``RDG_TOPICS_FILE``)."""
    partitions = {t.name: t.partitions for t in topic_specs(spec, topics_file)}
    out: list[AppSpec] = []

    def port() -> int:
        return streaming.metrics_base_port + len(out)

    for topic in spec.sources:
        if topic not in spec.mappings:
            continue
        name = f"{_slug(topic)}-processor"
        out.append(AppSpec(name, "processor", (topic,), consumer_group(streaming.group_prefix, name),
                           partitions=partitions[topic], metrics_port=port(), source_topic=topic))
    for group, namespaces in resolve_sink_groups(spec, streaming.sink_groups or DEFAULT_SINK_GROUPS).items():
        name = f"sink-{group}"
        topics = tuple(namespace_topic(n) for n in namespaces)
        out.append(AppSpec(name, "sink", topics, consumer_group(streaming.group_prefix, name),
                           partitions=max(partitions[t] for t in topics), metrics_port=port(),
                           sink_group=group, namespaces=tuple(namespaces)))
    return out


def get_app(apps: Sequence[AppSpec], name: str) -> AppSpec:
    """The app called ``name`` (KeyError naming the known ones otherwise)."""
    for a in apps:
        if a.name == name:
            return a
    raise KeyError(f"unknown app {name!r} (known: {[a.name for a in apps]})")
