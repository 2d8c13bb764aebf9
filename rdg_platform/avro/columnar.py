"""Decode many Avro bodies of one writer schema straight into Arrow columns.

Why hand-written: the lakehouse archive decodes whole Kafka windows, and decoding record by record
into dicts with fastavro and then building Arrow from the dicts costs far more than the Iceberg
append itself (``benchmarks/bench_lakehouse.py`` measures both). Avro's binary encoding of a record
is just its fields in schema order, so with one cursor per record the k-th field of *every* record
can be decoded at once with numpy: a varint by gathering up to ten bytes at each cursor, a string by
gathering its bytes into one Arrow data buffer, an enum by a ``take`` on its symbols. The result is
Arrow arrays directly.

Safety: every record is decoded from its own start offset, so a malformed record cannot shift its
neighbours. A record is *flagged* (never silently accepted) when a varint runs past its end or over
ten bytes, a length is negative or runs past its end, an enum or union index is out of range, an
``int`` overflows 32 bits, a timestamp is outside years 1-9999, a boolean byte is not 0/1, a string is not UTF-8, or bytes are left
over. The caller decodes flagged records with fastavro, the reference, which either raises the real
error or (for anything merely unusual, e.g. a 10k-item array) returns the record. Flagging only ever
errs towards fastavro, so accepted records decode exactly as fastavro decodes them (property-tested).

Supported: null, boolean, int, long, float, double, string, bytes, fixed, enum, timestamp-millis and
-micros longs, ``[null, T]``/``[T, null]`` unions and arrays of those. Anything else (maps, nested
records, other logical types, wider unions) raises
:class:`~rdg_platform.avro.errors.UnsupportedSchemaError` and the caller decodes record by record instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rdg_platform.avro.errors import UnsupportedSchemaError

I64 = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]

# A legitimate array longer than this decodes through fastavro instead (the columnar loop visits one
# item position of every record per step, which suits the short lists of event schemas).
MAX_ARRAY_ITEMS = 256
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})
_TS_MIN_MS, _TS_MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # 0001-01-01 .. 9999-12-31 UTC
_SHIFTS = (7 * np.arange(10, dtype=np.uint64)).astype(np.uint64)


@dataclass
class ColumnarBatch:
    """Decoded fields of ``n`` records: ``columns[name][i]`` is record i's value when ``ok[i]``.

    Values of flagged records are arbitrary (never read); callers keep ``ok`` rows only.
    """

    columns: dict[str, pa.Array]
    ok: BoolArr


def check_supported(schema: Mapping[str, Any]) -> None:
    """Raise :class:`UnsupportedSchemaError` unless ``schema`` is a record the decoder covers."""
    if not isinstance(schema, Mapping) or schema.get("type") != "record":
        raise UnsupportedSchemaError("top level is not a record")
    for f in schema["fields"]:
        _check(f["type"], f["name"], in_array=False)


def _check(t: Any, where: str, *, in_array: bool) -> None:
    if isinstance(t, str):
        if t not in _PRIMITIVES:
            raise UnsupportedSchemaError(f"{where}: type {t!r}")
        return
    if isinstance(t, list):
        if len(t) != 2 or t.count("null") != 1:
            raise UnsupportedSchemaError(f"{where}: only [null, T] unions")
        other = t[1] if t[0] == "null" else t[0]
        if isinstance(other, list):
            raise UnsupportedSchemaError(f"{where}: nested union")
        _check(other, where, in_array=in_array)
        return
    if not isinstance(t, Mapping):
        raise UnsupportedSchemaError(f"{where}: {t!r}")
    base, logical = t.get("type"), t.get("logicalType")
    if logical is not None:
        if base == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            return
        raise UnsupportedSchemaError(f"{where}: logical type {logical}")
    if base in ("enum", "fixed"):
        return
    if base == "array":
        if in_array:
            raise UnsupportedSchemaError(f"{where}: nested array")
        _check(t["items"], where, in_array=True)
        return
    if isinstance(base, str) and base in _PRIMITIVES:
        return
    raise UnsupportedSchemaError(f"{where}: type {base!r}")


class _Cursor:
    """One read position per record, over one shared buffer of all bodies."""

    def __init__(self, buf: npt.NDArray[np.uint8], starts: I64, ends: I64) -> None:
        # Padding so that gathers at any clamped position stay inside the buffer.
        self.buf = np.concatenate([buf, np.zeros(16, dtype=np.uint8)])
        self.limit = len(buf)
        self.pos = starts.astype(np.int64, copy=True)
        self.ends = ends.astype(np.int64, copy=False)
        self.bad = np.zeros(len(starts), dtype=np.bool_)

    def flag(self, rows: I64, mask: BoolArr) -> None:
        if mask.any():
            self.bad[rows[mask]] = True

    def varint(self, rows: I64) -> I64:
        """Zigzag longs at the cursors of ``rows``, advancing them."""
        pos = np.minimum(self.pos[rows], self.limit)
        first = self.buf[pos]
        raw = first.astype(np.uint64)
        new = pos + 1
        multi = np.flatnonzero(first >= 0x80)
        if len(multi):  # the rest (lengths, enum and union indexes) are one byte: no wide gather
            pm = pos[multi]
            b = self.buf[pm[:, None] + np.arange(10)]
            cont = b >= 0x80
            length = np.argmin(cont, axis=1) + 1
            self.flag(rows[multi], np.asarray(cont.all(axis=1), dtype=np.bool_))
            acc = np.zeros(len(multi), dtype=np.uint64)
            for k in range(int(length.max())):
                part = (b[:, k] & 0x7F).astype(np.uint64) << _SHIFTS[k]
                acc |= np.where(k < length, part, np.uint64(0))
            raw[multi] = acc
            new[multi] = pm + length
        val = (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)
        ends = self.ends[rows]
        self.flag(rows, new > ends)
        self.pos[rows] = np.minimum(new, ends)
        return val

    def fixed_bytes(self, rows: I64, size: int) -> npt.NDArray[np.uint8]:
        """``size`` raw bytes at the cursors of ``rows`` (one row per record), advancing them."""
        pos = np.minimum(self.pos[rows], self.limit)
        out = self.buf[pos[:, None] + np.arange(size)]
        new = pos + size
        self.flag(rows, new > self.ends[rows])
        self.pos[rows] = np.minimum(new, self.ends[rows])
        return out

    def blobs(self, rows: I64, fixed: int | None = None) -> pa.Array:
        """Length-prefixed (or ``fixed``-size) byte strings of ``rows`` as one Arrow binary array."""
        if fixed is None:
            lengths = self.varint(rows)
            pos = self.pos[rows]
            bad = (lengths < 0) | (lengths > self.ends[rows] - pos)
            self.flag(rows, bad)
            lengths[bad] = 0
        else:
            pos = self.pos[rows]
            lengths = np.full(len(rows), fixed, dtype=np.int64)
            bad = lengths > self.ends[rows] - pos
            self.flag(rows, bad)
            lengths[bad] = 0
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        if total:
            idx = np.repeat(pos - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
            data = self.buf[idx]
        else:
            data = np.zeros(0, dtype=np.uint8)
        self.pos[rows] = pos + lengths
        large = total >= 2**31 - 1
        typ = pa.large_binary() if large else pa.binary()
        off = offsets if large else offsets.astype(np.int32)
        return pa.Array.from_buffers(typ, len(rows), [None, pa.py_buffer(off), pa.py_buffer(data)])


def _to_utf8(cur: _Cursor, rows: I64, arr: pa.Array) -> pa.Array:
    target = pa.large_string() if arr.type == pa.large_binary() else pa.string()
    try:
        return arr.cast(target)
    except pa.ArrowInvalid:  # invalid UTF-8 somewhere: flag those records (rare path)
        bad = np.zeros(len(rows), dtype=np.bool_)
        for i, v in enumerate(arr.to_pylist()):
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
        cur.flag(rows, bad)
        return pc.if_else(pa.array(bad), pa.scalar(b"", arr.type), arr).cast(target)


def _decode(cur: _Cursor, t: Any, rows: I64) -> pa.Array:
    """Decode one value of type ``t`` at the cursors of ``rows``; an Arrow array of len(rows)."""
    if isinstance(t, list):
        null_branch = t.index("null")
        other = t[1 - null_branch]
        branch = cur.varint(rows)
        cur.flag(rows, (branch < 0) | (branch > 1))
        present = branch == (1 - null_branch)
        sub = rows[present]
        values = _decode(cur, other, sub)
        take = np.full(len(rows), -1, dtype=np.int64)
        take[present] = np.arange(len(sub), dtype=np.int64)
        return values.take(pa.array(take, mask=~present))
    if isinstance(t, Mapping):
        base = t.get("type")
        logical = t.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros"):
            unit, scale = ("ms", 1) if logical == "timestamp-millis" else ("us", 1000)
            v = cur.varint(rows)
            # Outside datetime's years 1-9999 fastavro raises (and micros would overflow): flag.
            out_of_range = (v < _TS_MIN_MS * scale) | (v > _TS_MAX_MS * scale)
            cur.flag(rows, out_of_range)
            v[out_of_range] = 0
            return pa.array(v, pa.int64()).cast(pa.timestamp(unit, tz="UTC"))
        if base == "enum":
            symbols = list(t["symbols"])
            idx = cur.varint(rows)
            out_of_range = (idx < 0) | (idx >= len(symbols))
            cur.flag(rows, out_of_range)
            idx[out_of_range] = 0
            return pa.array(symbols, pa.string()).take(pa.array(idx))
        if base == "fixed":
            return cur.blobs(rows, fixed=int(t["size"]))
        if base == "array":
            return _decode_array(cur, t["items"], rows)
        return _decode(cur, base, rows)
    if t == "null":
        return pa.nulls(len(rows))
    if t == "boolean":
        b = cur.fixed_bytes(rows, 1)[:, 0]
        cur.flag(rows, b > 1)
        return pa.array(b == 1)
    if t == "int":
        v = cur.varint(rows)
        over = (v < -(2**31)) | (v >= 2**31)
        cur.flag(rows, over)
        v[over] = 0
        return pa.array(v.astype(np.int32))
    if t == "long":
        return pa.array(cur.varint(rows))
    if t == "float":
        return pa.array(np.ascontiguousarray(cur.fixed_bytes(rows, 4)).view("<f4").ravel())
    if t == "double":
        return pa.array(np.ascontiguousarray(cur.fixed_bytes(rows, 8)).view("<f8").ravel())
    if t == "bytes":
        return cur.blobs(rows)
    if t == "string":
        return _to_utf8(cur, rows, cur.blobs(rows))
    raise UnsupportedSchemaError(f"type {t!r}")


def _decode_array(cur: _Cursor, item: Any, rows: I64) -> pa.Array:
    """Avro arrays: blocks of ``count`` items (a negative count is followed by the block's byte size),
    ending with a zero count. One step decodes the j-th item of every record still in a block."""
    n = len(rows)
    counts = np.zeros(n, dtype=np.int64)
    item_rows: list[I64] = []
    item_ord: list[I64] = []
    item_vals: list[pa.Array] = []
    active = np.arange(n, dtype=np.int64)
    while len(active):
        c = cur.varint(rows[active])
        neg = c < 0
        if neg.any():
            c[neg] = -c[neg]
            cur.varint(rows[active[neg]])  # the block's size in bytes: not needed
        huge = c > MAX_ARRAY_ITEMS
        cur.flag(rows[active], huge | (c > cur.ends[rows[active]] - cur.pos[rows[active]]))
        c[huge | cur.bad[rows[active]]] = 0
        live = c > 0
        active, c = active[live], c[live]
        for j in range(int(c.max()) if len(c) else 0):
            sel = active[c > j]
            item_rows.append(sel)
            item_ord.append(counts[sel] + j)
            item_vals.append(_decode(cur, item, rows[sel]))
        counts[active] += c
    item_type = _decode(cur, item, np.zeros(0, dtype=np.int64)).type
    if not item_vals:
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], item_type))
    r, o = np.concatenate(item_rows), np.concatenate(item_ord)
    order = np.lexsort((o, r))
    values = pa.concat_arrays(item_vals).take(pa.array(order))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def decode_columns(schema: Mapping[str, Any], buf: npt.NDArray[np.uint8], starts: I64, ends: I64) -> ColumnarBatch:
    """Decode the Avro record bodies ``buf[starts[i]:ends[i]]`` written with ``schema``.

    Raises :class:`UnsupportedSchemaError` (before decoding anything) if the schema is not covered.
    """
    check_supported(schema)
    cur = _Cursor(buf, starts, ends)
    rows = np.arange(len(starts), dtype=np.int64)
    columns = {f["name"]: _decode(cur, f["type"], rows) for f in schema["fields"]}
    cur.flag(rows, cur.pos != cur.ends)
    return ColumnarBatch(columns, ~cur.bad)


def concat_bodies(values: Sequence[bytes], skip: int = 0) -> tuple[npt.NDArray[np.uint8], I64, I64]:
    """One buffer of all ``values`` and each body's [start, end) in it, ``skip`` header bytes dropped."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    ends = np.cumsum(lengths)
    starts = ends - lengths + skip
    buf = np.frombuffer(b"".join(values), dtype=np.uint8)
    return buf, np.minimum(starts, ends), ends
