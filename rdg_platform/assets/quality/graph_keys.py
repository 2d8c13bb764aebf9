"""Asset keys of the graph namespaces (``graph/<node|edge>/<type>``), from the model spec.

Shared by the streaming control domain (which declares the namespaces as assets written by the
sink apps) and the quality domain (which attaches its checks to them); kept free of both so either
imports without the other.
"""

from __future__ import annotations

from dagster import AssetKey

from rdg_platform.model.spec import GraphSpec


def graph_namespace_key(kind: str, type_name: str) -> AssetKey:
    return AssetKey(["graph", kind, type_name])


def graph_keys(spec: GraphSpec) -> dict[tuple[str, str], AssetKey]:
    return {(kind, name): graph_namespace_key(kind, name)
            for kind, types in (("node", spec.nodes), ("edge", spec.edges)) for name in types}
