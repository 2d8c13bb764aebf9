"""The graph model: one declarative spec plus pure mapping functions (no I/O, no other layers)."""

from rdg_platform.model.mapping import BadEventError, GraphRecord, Lookup, map_event, merge_records
from rdg_platform.model.spec import GraphSpec, Namespace, SpecError, default_spec, load_spec, parse_spec

__all__ = [
    "BadEventError", "GraphRecord", "GraphSpec", "Lookup", "Namespace", "SpecError",
    "default_spec", "load_spec", "map_event", "merge_records", "parse_spec",
]
