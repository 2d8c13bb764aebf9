"""Encoding of property maps.

Properties live in a ``map<text, text>`` column with one JSON-encoded value per property: Cassandra then
resolves last-write-wins *per property* by write timestamp (= event time), so a partial update from
one source (a playback event carries only ``last_seen_ts``) never erases properties another source
wrote (a login's ``country``/``plan``), and out-of-order arrivals still converge. JSON keeps ints as
ints and lists as lists when read back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rdg_platform.model.lww import encode_value

try:  # orjson is ~5x faster on the hot read path; the stdlib is the fallback.
    import orjson as _orjson
except Exception:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]


_loads = _orjson.loads if _orjson is not None else json.loads


def encode_props(props: Mapping[str, Any]) -> dict[str, str]:
    """Property dict -> the ``map<text,text>`` bound value (None values are dropped, not written).

    Uses the model's :func:`~rdg_platform.model.lww.encode_value` (deterministic: sorted object keys)
    so the stored text is exactly what the LWW tie-break compares, in every write path.
    """
    return {k: encode_value(v) for k, v in props.items() if v is not None}


def decode_props(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """The ``map<text,text>`` column as read -> property dict with decoded values."""
    if not raw:
        return {}
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
