"""Encoding of an item's properties: one compact blob for whole records, a map for partial updates.

Two columns hold properties (codec version 2; version 1 tables had only the map):

- ``pb blob``: the whole property set of a *full* write, i.e. a record that carries a value for
  every property its type declares in the spec. One msgpack object (``BLOB_V1``: a version byte,
  then a map of property name -> native value, keys sorted), so Cassandra stores and returns one
  simple cell instead of one cell per property, and the service decodes it with one C call.
- ``props map<text, text>``: one JSON-encoded value per property of a *partial* write (a playback
  heartbeat carries only some properties of its edge). Each map entry is its own cell with its own
  write timestamp (= event time), so partial updates merge per property in Cassandra.

Per-property last-write-wins stays exact without any read-before-write. A full write at event time
``T`` sets ``pb`` at ``T`` and overwrites the map (a collection tombstone at ``T - 1``): it carries
every property, so every property cell older than ``T`` lost to it anyway. A partial write at ``T'``
adds map cells at ``T'``. What survives in the map is therefore never older than the blob, and the
reader's rule is simply *map entry over blob entry* (:func:`merge_props`). Late arrivals converge: a
full write older than the blob loses the ``pb`` cell and its tombstone shadows nothing newer; a
partial write older than the blob is shadowed by the blob's tombstone. The one difference from
per-property cells: two *full* writes of the same item with the same event time and different
values tie-break on the whole blob (the larger bytes), not property by property.

Older tables (codec version 1, map only) are read unchanged (``pb`` is null there); the schema adds
the column (``ALTER TABLE``) and new full writes use it, and a blue/green rebuild rewrites a
namespace in the new layout. A blob starts with its format byte, so a later format can be read side
by side; an unknown one is an error naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from rdg_platform.model.lww import encode_value

try:  # orjson is ~5x faster on the hot read path; the stdlib is the fallback.
    import orjson as _orjson
except Exception:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]


_loads = _orjson.loads if _orjson is not None else json.loads
CODEC_VERSION = 2  # what ensure_schema creates: props map + pb blob
BLOB_V1 = 1  # first byte of a pb blob: msgpack map of name -> value
_HEAD = bytes([BLOB_V1])
_unpackb: Callable[..., Any] = msgpack.unpackb
_packb: Callable[..., bytes] = msgpack.packb


class CodecError(ValueError):
    """A stored property blob this code cannot read (unknown format byte or corrupt bytes)."""


def encode_props(props: Mapping[str, Any]) -> dict[str, str]:
    """Property dict -> the ``map<text,text>`` bound value (None values are dropped, not written).

    Uses the model's :func:`~rdg_platform.model.lww.encode_value` (deterministic: sorted object keys)
    so the stored text is exactly what the LWW tie-break compares, in every write path.
    """
    return {k: encode_value(v) for k, v in props.items() if v is not None}


def encode_blob(props: Mapping[str, Any]) -> bytes:
    """A full record's properties -> the ``pb`` blob (None values dropped, keys sorted so equal
    property sets give equal bytes whatever the dict order)."""
    return _HEAD + _packb({k: props[k] for k in sorted(props) if props[k] is not None}, use_bin_type=True)


def decode_blob(blob: bytes) -> dict[str, Any]:
    """The ``pb`` blob -> property dict."""
    if not blob:
        return {}
    if blob[0] != BLOB_V1:
        raise CodecError(f"property blob format {blob[0]} is unknown (this code reads {BLOB_V1}); "
                         "it was written by a newer version")
    try:
        out = _unpackb(memoryview(blob)[1:], raw=False, strict_map_key=False)
    except Exception as exc:
        raise CodecError(f"corrupt property blob ({len(blob)} bytes): {exc}") from exc
    if not isinstance(out, dict):
        raise CodecError(f"property blob holds a {type(out).__name__}, not a map")
    return out


def _decode_map(raw: Mapping[str, str]) -> dict[str, Any]:
    # The driver returns maps as OrderedMapSerializedKey, whose Mapping view re-serialises the key
    # on every lookup (~15 us for a 4-property map); its ``_items`` list holds the same pairs.
    pairs = getattr(raw, "_items", None)
    if not isinstance(pairs, list):
        pairs = raw.items()
    try:
        return {k: _loads(v) for k, v in pairs}
    except ValueError:
        pass
    out: dict[str, Any] = {}
    for k, v in pairs:
        try:
            out[k] = _loads(v)
        except ValueError:  # written by a foreign tool as plain text: hand it back verbatim
            out[k] = v
    return out


def merge_props(raw_map: Mapping[str, str] | None, blob: bytes | None) -> dict[str, Any]:
    """The properties of one stored item: the blob's, overridden by the map's entries (which are
    never older than the blob, see the module docstring)."""
    if blob:
        out = decode_blob(blob)
        if raw_map:
            out.update(_decode_map(raw_map))
        return out
    return _decode_map(raw_map) if raw_map else {}


def decode_props(raw: Any) -> dict[str, Any]:
    """Stored properties as read -> property dict. ``raw`` is what the stores hand out as an item's
    raw properties: a ``(map, blob)`` pair, or (version 1 callers, tests) the map alone or None."""
    if raw is None:
        return {}
    if type(raw) is tuple:
        m, b = raw
        if not m:
            return decode_blob(b) if b else {}
        return merge_props(m, b)
    return _decode_map(raw) if raw else {}


def logical_cells(raw_map: Mapping[str, str] | None, map_writetimes: Any, blob: bytes | None,
                  blob_writetime: int | None) -> list[tuple[str, str, Any]]:
    """An item's properties as ``(name, encoded value, write time)``, sorted by name, whichever
    column holds them: what a checksum compares, so two tables holding the same state in a different
    physical split (one full write vs per-property writes) compare equal. ``map_writetimes`` is
    ``writetime(props)``: one per map entry in key order (Cassandra 5) or a single value."""
    cells: dict[str, tuple[str, Any]] = {}
    if blob:
        for k, v in decode_blob(blob).items():
            cells[k] = (encode_value(v), blob_writetime)
    if raw_map:
        keys = sorted(raw_map)
        if isinstance(map_writetimes, list | tuple):
            wt = dict(zip(keys, map_writetimes, strict=False))
        else:
            wt = dict.fromkeys(keys, map_writetimes)
        for k in keys:
            cells[k] = (raw_map[k], wt.get(k))
    return [(k, *cells[k]) for k in sorted(cells)]


def checksum_line(record_id: str, item_key: str, updated_at: Any, updated_at_wt: Any, raw_map: Mapping[str, str] | None,
                  map_writetimes: Any, blob: bytes | None, blob_writetime: Any) -> str:
    """One row of a table checksum: its key, ``updated_at`` and its write time, and every property
    with its write time (:func:`logical_cells`), so the digest depends on the state, not on which
    column holds it."""
    return "\x1e".join([record_id, item_key, str(updated_at), str(updated_at_wt)] +
                       [f"{k}={v}@{wt}" for k, v, wt in logical_cells(raw_map, map_writetimes, blob, blob_writetime)])
