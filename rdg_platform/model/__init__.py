"""The graph model: one declarative spec plus pure mapping functions (no I/O, no other layers)."""

from rdg_platform.model.lww import KeyState, encode_value, lww_compact
from rdg_platform.model.mapping import BadEventError, GraphRecord, Lookup, map_event, merge_records
from rdg_platform.model.spec import GraphSpec, Namespace, SpecError, default_spec, load_spec, parse_spec

__all__ = [
    "BadEventError", "GraphRecord", "GraphSpec", "KeyState", "Lookup", "Namespace", "SpecError",
    "default_spec", "encode_value", "load_spec", "lww_compact", "map_event", "merge_records", "parse_spec",
]
