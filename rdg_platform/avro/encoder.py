"""A fast Avro binary encoder, compiled once per schema, byte-identical to ``fastavro.schemaless_writer``.

Why hand-written: the generator and the processors are CPU-bound, and for the flat event schemas of
the source topics a function generated from the schema's structure (one ``b"".join`` over per-field
expressions, memoised strings, table-driven varints) encodes several times faster than fastavro. The
benchmark ``benchmarks/bench_generator.py`` measures it; the unit tests check it byte for byte
against fastavro, which stays the reference: any schema this module does not compile raises
:class:`~rdg_platform.avro.errors.UnsupportedSchemaError` and the caller uses fastavro.

Covered: records of primitives, enums, ``["null", X]`` unions, arrays of strings/ints/longs, and
``timestamp-millis`` longs given as epoch-millisecond ints.

The varint tables are public because the generator's heartbeat splicer inlines them in its hottest
loop: :data:`VARINT_LAST14` ``[i]`` is the unsigned varint of ``i < 2**14`` (1-2 bytes) and
:data:`VARINT_CONT14` ``[i]`` the same 14 bits with the continuation bit set on both bytes, so the
zigzag value ``z`` of an event time (about ``2**41``) is
``VARINT_CONT14[z & MASK14] + VARINT_CONT14[z >> 14 & MASK14] + VARINT_LAST14[z >> 28]``.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fastavro

from rdg_platform.avro.errors import UnsupportedSchemaError

Encoder = Callable[[Mapping[str, Any]], bytes]


def zigzag_varint(n: int) -> bytes:
    """Avro long, the plain way (zigzag, then 7-bit groups): the reference for :func:`long_bytes`."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_MIN, _SMALL_MAX = -64, 4096
_SMALL = [zigzag_varint(i) for i in range(_SMALL_MIN, _SMALL_MAX)]
VARINT_LAST14: list[bytes] = [bytes((i,)) if i < 0x80 else bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(1 << 14)]
VARINT_CONT14: list[bytes] = [bytes(((i & 0x7F) | 0x80, ((i >> 7) & 0x7F) | 0x80)) for i in range(1 << 14)]
MASK14 = 0x3FFF


def long_bytes(n: int) -> bytes:
    """Avro long (zigzag + varint) by table lookups: small values and up to three 14-bit chunks."""
    if _SMALL_MIN <= n < _SMALL_MAX:
        return _SMALL[n - _SMALL_MIN]
    if not -(1 << 63) <= n < (1 << 63):
        raise OverflowError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    if z < 1 << 14:
        return VARINT_LAST14[z]
    if z < 1 << 28:
        return VARINT_CONT14[z & MASK14] + VARINT_LAST14[z >> 14]
    if z < 1 << 42:
        return VARINT_CONT14[z & MASK14] + VARINT_CONT14[(z >> 14) & MASK14] + VARINT_LAST14[z >> 28]
    return zigzag_varint(n)


_STRING_CACHE_MAX = 200_000


def compile_encoder(schema: Mapping[str, Any], prefix: bytes) -> Encoder:
    """Compile ``schema`` (a record) to a function ``record -> prefix + Avro body``.

    Ids repeat a lot in member events (accounts, devices, titles), so encoded strings are memoised in
    a bounded dict. Raises :class:`UnsupportedSchemaError` for a schema outside the covered subset.
    The compiled function raises (any exception) on a record it cannot encode, e.g. a ``datetime``
    timestamp or a wrong enum symbol; callers then ask fastavro, which encodes it or explains why not.
    """
    if schema.get("type") != "record":
        raise UnsupportedSchemaError("top level is not a record")
    cache: dict[str, bytes] = {}

    def enc_str(s: str) -> bytes:
        b = s.encode("utf-8")
        v = long_bytes(len(b)) + b
        if len(cache) < _STRING_CACHE_MAX:
            cache[s] = v
        return v

    env: dict[str, Any] = {"L": long_bytes, "S": enc_str, "C": cache.get, "P": prefix,
                           "F": float, "pack_d": struct.Struct("<d").pack, "pack_f": struct.Struct("<f").pack}
    counter = [0]

    def name() -> str:
        counter[0] += 1
        return f"_v{counter[0]}"

    def expr(t: Any, v: str) -> str:
        if isinstance(t, dict):
            lt = t.get("logicalType")
            base = t.get("type")
            if lt is not None and not (lt == "timestamp-millis" and base == "long"):
                raise UnsupportedSchemaError(f"logical type {lt}")
            if base == "enum":
                table = {s: long_bytes(i) for i, s in enumerate(t["symbols"])}
                n = name()
                env[n] = table
                return f"{n}[{v}]"
            if base == "array":
                item = t["items"]
                if item not in ("string", "long", "int"):
                    raise UnsupportedSchemaError("array of non-primitive")
                fn = name()
                item_expr = "(C(x) or S(x))" if item == "string" else "L(x)"
                env[fn] = eval(  # noqa: S307 - compiled from the validated schema, not from data
                    f"lambda a: (L(len(a)) + b''.join([{item_expr} for x in a]) + b'\\x00') if a else b'\\x00'",
                    env)
                return f"{fn}({v})"
            if isinstance(base, str) and lt is None and base in ("string", "long", "int", "boolean", "double", "float"):
                return expr(base, v)
            if lt == "timestamp-millis":
                return f"L({v})"
            raise UnsupportedSchemaError(f"type {base}")
        if isinstance(t, list):
            if len(t) == 2 and t[0] == "null":
                inner = expr(t[1], "_x")
                fn = name()
                env[fn] = eval(f"lambda _x: b'\\x00' if _x is None else b'\\x02' + {inner}", env)  # noqa: S307
                return f"{fn}({v})"
            raise UnsupportedSchemaError("general union")
        if t == "string":
            return f"(C({v}) or S({v}))"
        if t in ("long", "int"):
            return f"L({v})"
        if t == "boolean":
            return f"(b'\\x01' if {v} else b'\\x00')"
        if t == "double":
            return f"pack_d(F({v}))"
        if t == "float":
            return f"pack_f(F({v}))"
        raise UnsupportedSchemaError(f"type {t!r}")

    parts = ["P"]
    for f in schema["fields"]:
        fname = f["name"]
        if not isinstance(fname, str) or not fname.isidentifier():
            raise UnsupportedSchemaError(f"field name {fname!r}")
        # Optional fields may be absent from the dict (fastavro writes their default, null).
        optional = isinstance(f["type"], list) and f["type"][:1] == ["null"]
        access = f"r.get({fname!r})" if optional else f"r[{fname!r}]"
        parts.append(expr(f["type"], access))
    src = "def _encode(r, _j=b''.join):\n    return _j((" + ", ".join(parts) + ",))\n"
    exec(src, env)  # noqa: S102 - generated from the schema's structure only
    fn: Encoder = env["_encode"]
    return fn


def fastavro_encoder(schema: Mapping[str, Any]) -> Encoder:
    """``record -> Avro body`` with fastavro (the reference; any schema, real error messages)."""
    parsed = fastavro.parse_schema(dict(schema))

    def encode(record: Mapping[str, Any]) -> bytes:
        bio = io.BytesIO()
        fastavro.schemaless_writer(bio, parsed, dict(record))
        return bio.getvalue()

    return encode


def fields_encoder(schema: Mapping[str, Any], names: Sequence[str]) -> Encoder:
    """Encoder of a contiguous run of ``schema``'s fields (``names``, in schema order): the bytes they
    contribute to the record body.

    An Avro record body is the concatenation of its field encodings in schema order, so a producer
    whose records share most fields can pre-encode the shared run once and splice only the changing
    fields (the generator does this for heartbeats). Compiled when possible, fastavro otherwise.
    """
    all_names = [f["name"] for f in schema["fields"]]
    first = all_names.index(names[0]) if names and names[0] in all_names else 0
    if all_names[first:first + len(names)] != list(names):
        raise ValueError(f"{list(names)} is not a run of fields of {schema.get('name')!r} in schema order")
    sub = {**schema, "fields": schema["fields"][first:first + len(names)]}
    try:
        return compile_encoder(sub, b"")
    except UnsupportedSchemaError:
        return fastavro_encoder(sub)
