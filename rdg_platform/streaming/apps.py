"""The registry of streaming apps: what ``rdg apps`` runs, and what Dagster's launchers deploy.

One processor per source topic that has a mapping (member topics and the catalog topics, whose
records are title/game nodes and ``based_on`` edges), and one sink per *group of namespaces*: each
sink group is its own process and consumer group, so a slow namespace (say a hot edge table) only
delays its own group. Groups are configuration (``RDG_SINK_GROUPS``), not code.

Runtime knobs, all from the environment so the supervisor passes them to child processes unchanged:
- ``RDG_DEDUP_WINDOW_S`` (default 10): dedup window of the processors.
- ``RDG_APP_GROUP_PREFIX`` (default ``rdg``): consumer-group prefix (tests use a unique one).
- ``RDG_APPS_OFFSET_RESET`` (default ``earliest``): where a *new* consumer group starts.
- ``RDG_PROCESSOR_COMMIT_S`` (default 3 x the dedup window): processor checkpoint interval. Each
  checkpoint must first emit every buffered key (at-least-once), which cuts the windows open at that
  moment short; with a commit every window, every key's window was cut (to half a window on
  average), so the configured window was not the window applied. Three windows per commit leaves two
  thirds of the windows whole. Costs: up to that much input is re-read after a crash (re-emitted
  records are idempotent writes), and records wait their full window (freshness = window + ~1.5 s
  instead of less). Set it to the window to get the old behaviour.
- ``RDG_SINK_COMMIT_S`` (default 1.0): sink checkpoint interval = how often Cassandra is written.
- ``RDG_SINK_GROUPS``: JSON ``{"group": ["node.account", "edge.plays", ...], ...}``.
- ``RDG_SPEC``: path of the model spec YAML (default: the packaged one).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Literal

from rdg_platform.config import Settings
from rdg_platform.config import settings as load_settings
from rdg_platform.model.spec import GraphSpec, load_spec

AppKind = Literal["processor", "sink"]

# Default sink groups: nodes together (small, hot rows), member edges, activity edges.
DEFAULT_SINK_GROUPS: dict[str, list[str]] = {
    "nodes": ["node.*"],
    "edges-member": ["edge.has_profile", "edge.logged_in_from", "edge.streamed_from"],
    "edges-activity": ["edge.*"],  # everything not claimed by an earlier group
}


@dataclass(frozen=True)
class StreamingConfig:
    """Streaming knobs read from the environment (see the module docstring)."""

    window_s: float = 10.0
    group_prefix: str = "rdg"
    offset_reset: str = "earliest"
    sink_commit_s: float = 1.0
    processor_commit_s: float = 30.0
    sink_groups: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_SINK_GROUPS))
    spec_path: str | None = None
    sink_chunk: int = 500
    sink_retries: int = 3
    backpressure_retry_s: float = 5.0

    @classmethod
    def from_env(cls) -> StreamingConfig:
        env = os.environ
        groups = DEFAULT_SINK_GROUPS
        if env.get("RDG_SINK_GROUPS"):
            raw = json.loads(env["RDG_SINK_GROUPS"])
            if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
                raise ValueError("RDG_SINK_GROUPS must be a JSON object of group -> list of namespaces")
            groups = {str(k): [str(x) for x in v] for k, v in raw.items()}
        window_s = float(env.get("RDG_DEDUP_WINDOW_S") or 10.0)
        return cls(window_s=window_s,
                   group_prefix=env.get("RDG_APP_GROUP_PREFIX") or "rdg",
                   offset_reset=env.get("RDG_APPS_OFFSET_RESET") or "earliest",
                   sink_commit_s=float(env.get("RDG_SINK_COMMIT_S") or 1.0),
                   processor_commit_s=float(env.get("RDG_PROCESSOR_COMMIT_S") or max(1.0, 3 * window_s)),
                   sink_groups=dict(groups), spec_path=env.get("RDG_SPEC") or None,
                   sink_chunk=int(env.get("RDG_SINK_CHUNK") or 500),
                   sink_retries=int(env.get("RDG_SINK_RETRIES") or 3),
                   backpressure_retry_s=float(env.get("RDG_SINK_BACKPRESSURE_S") or 5.0))

    def spec(self) -> GraphSpec:
        return load_spec(self.spec_path)


@dataclass(frozen=True)
class AppSpec:
    """One streaming app: a process with its own consumer group and metrics port."""

    name: str
    kind: AppKind
    input_topics: tuple[str, ...]
    consumer_group: str
    metrics_port: int
    index: int
    partitions: int = 1
    source_topic: str | None = None  # processors: the source topic
    sink_group: str | None = None  # sinks: the namespace group
    namespaces: tuple[str, ...] = ()

    @property
    def command(self) -> tuple[str, ...]:
        """How one replica is started (the same entry point locally and in a container)."""
        return (sys.executable, "-m", "rdg_platform.streaming", "run", self.name)

    @property
    def topic(self) -> str:
        return self.input_topics[0]


def resolve_sink_groups(spec: GraphSpec, groups: dict[str, list[str]]) -> dict[str, list[str]]:
    """Expand ``node.*`` / ``edge.*`` patterns; each namespace goes to the first group naming it.

    Every namespace must land in exactly one group: an unassigned namespace would never be written,
    so it is an error, as is a name that matches no namespace.
    """
    remaining = [n for n in spec.namespaces]
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
        raise ValueError(f"sink groups leave namespaces {remaining} unwritten; add them to RDG_SINK_GROUPS")
    return claimed


def _slug(topic: str) -> str:
    return topic.replace(".", "_")


def app_specs(spec: GraphSpec | None = None, cfg: Settings | None = None,
              scfg: StreamingConfig | None = None) -> list[AppSpec]:
    """Every app, in a stable order (processors by source, then sinks); index -> metrics port."""
    cfg = cfg or load_settings()
    scfg = scfg or StreamingConfig.from_env()
    spec = spec or scfg.spec()
    out: list[AppSpec] = []
    for topic, src in spec.sources.items():
        if topic not in spec.mappings:
            continue
        i = len(out)
        name = f"{_slug(topic)}-processor"
        out.append(AppSpec(name, "processor", (topic,), f"{scfg.group_prefix}-{name}", cfg.metrics_base_port + i, i,
                           partitions=src.partitions, source_topic=topic))
    for group, namespaces in resolve_sink_groups(spec, scfg.sink_groups).items():
        i = len(out)
        name = f"sink-{group}"
        topics = tuple(f"graph.{n}" for n in namespaces)  # namespace "node.account" -> "graph.node.account"
        out.append(AppSpec(name, "sink", topics, f"{scfg.group_prefix}-{name}", cfg.metrics_base_port + i, i,
                           partitions=GRAPH_TOPIC_PARTITIONS, sink_group=group, namespaces=tuple(namespaces)))
    return out


GRAPH_TOPIC_PARTITIONS = 4


def get_app(name: str, spec: GraphSpec | None = None, cfg: Settings | None = None,
            scfg: StreamingConfig | None = None) -> AppSpec:
    apps = app_specs(spec, cfg, scfg)
    for a in apps:
        if a.name == name:
            return a
    raise KeyError(f"unknown app {name!r} (known: {[a.name for a in apps]})")
