"""Avro values in the Confluent wire format against a Confluent-compatible schema registry.

Wire format: magic byte ``0``, the 4-byte big-endian schema id, then the Avro binary body. Subjects
follow the TopicNameStrategy (``<topic>-value``). The registry is Apicurio 2.6's ``ccompat/v7`` API
locally and any Confluent-compatible registry in production.

Why not ``confluent_kafka.schema_registry.avro.AvroSerializer``: against Apicurio its default
``lookup_schema`` call posts the *parsed, re-serialised* schema, which Apicurio does not match to the
registered text (HTTP 404, SR code 40403); with ``use.latest.version`` it works but costs ~3x more
CPU per record than fastavro, and the generator and processors are CPU-bound. So this module talks
to the registry's REST API with httpx (four endpoints, all cached) and encodes/decodes with fastavro.

Hot paths:
- ``encode`` uses a small per-schema encoder compiled once from the Avro schema (records of
  primitives, enums, ``["null", X]`` unions, arrays of primitives, timestamp-millis as int). It is
  ~3-4x faster than ``fastavro.schemaless_writer`` and byte-identical to it (unit-tested); any
  record it cannot handle (a datetime timestamp, a bad value, an unsupported schema) falls back to
  fastavro, which is the reference implementation and produces the real error message.
- ``decode`` uses ``fastavro.schemaless_reader`` with the parsed writer schema cached per id.

Decoded ``timestamp-millis`` fields are timezone-aware UTC ``datetime`` objects by default (fastavro's
standard behaviour); pass ``timestamps="millis"`` to get epoch-millisecond ints instead.
:func:`rdg_platform.model.mapping.to_epoch_ms` accepts both.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import fastavro
import httpx

if TYPE_CHECKING:
    from rdg_platform.model.spec import GraphSpec

MAGIC = 0
HEADER = struct.Struct(">bI")
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# A subject's id list is re-read from the registry at most this often when an id is not in it, so a
# flood of mismatched records does not become a flood of registry calls.
_SUBJECT_REFRESH_S = 2.0
# An unknown schema id is remembered as unknown this long (it may be registered later).
_NEGATIVE_TTL_S = 5.0

DECODE_REASONS = ("not_confluent_framing", "unknown_schema_id", "avro_decode_error", "schema_mismatch")


class DecodeError(ValueError):
    """A value that cannot be decoded; ``reason`` is one of :data:`DECODE_REASONS` (a DLQ header)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EncodeError(ValueError):
    """A record that does not match its topic's schema (a bug in the producer, not bad input)."""


class RegistryError(RuntimeError):
    """The registry is unreachable or answered with an error other than 'not found'.

    Deliberately NOT a :class:`DecodeError`: a registry outage must stop (and retry) a consumer,
    never send good records to a dead-letter topic.
    """


def subject_for(topic: str) -> str:
    """TopicNameStrategy subject of a topic's values."""
    return f"{topic}-value"


def canonical_schema_text(schema: Mapping[str, Any]) -> str:
    """The exact text registered for a schema: ``json.dumps`` of the parsed .avsc, so every process
    registers byte-identical content and the registry returns the same id instead of a new version."""
    return json.dumps(schema)


# --------------------------------------------------------------------------------------------------
# The compiled fast encoder
# --------------------------------------------------------------------------------------------------


def _zigzag_varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_MIN, _SMALL_MAX = -64, 4096
_SMALL = [_zigzag_varint(i) for i in range(_SMALL_MIN, _SMALL_MAX)]
# Unsigned varints of 14-bit chunks: _U14[i] is the final chunk (1-2 bytes), _C14[i] a chunk with the
# continuation bit set on both of its bytes. Event times (~2^41 after zigzag) then take three table
# lookups instead of a 6-iteration Python loop: this is the hottest line of the generator.
_U14 = [bytes((i,)) if i < 0x80 else bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(1 << 14)]
_C14 = [bytes(((i & 0x7F) | 0x80, ((i >> 7) & 0x7F) | 0x80)) for i in range(1 << 14)]
_M14 = 0x3FFF


def _long(n: int) -> bytes:
    """Avro long: zigzag + varint."""
    if _SMALL_MIN <= n < _SMALL_MAX:
        return _SMALL[n - _SMALL_MIN]
    if not -(1 << 63) <= n < (1 << 63):
        raise OverflowError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    if z < 1 << 14:
        return _U14[z]
    if z < 1 << 28:
        return _C14[z & _M14] + _U14[z >> 14]
    if z < 1 << 42:
        return _C14[z & _M14] + _C14[(z >> 14) & _M14] + _U14[z >> 28]
    return _zigzag_varint(n)


class _Unsupported(Exception):
    """The schema uses a construct the compiled encoder does not cover (fastavro handles it)."""


_STRING_CACHE_MAX = 200_000


def _compile_encoder(schema: Mapping[str, Any], prefix: bytes) -> Callable[[Mapping[str, Any]], bytes]:
    """Compile ``schema`` (a record) to a function ``record -> prefix + avro body``.

    Ids repeat a lot in member events (accounts, devices, titles), so encoded strings are memoised in
    a bounded dict; the generated function is one ``b"".join`` over per-field expressions.
    """
    if schema.get("type") != "record":
        raise _Unsupported("top level is not a record")
    cache: dict[str, bytes] = {}

    def enc_str(s: str) -> bytes:
        b = s.encode("utf-8")
        v = _long(len(b)) + b
        if len(cache) < _STRING_CACHE_MAX:
            cache[s] = v
        return v

    env: dict[str, Any] = {"L": _long, "S": enc_str, "C": cache.get, "P": prefix,
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
                raise _Unsupported(f"logical type {lt}")
            if base == "enum":
                table = {s: _long(i) for i, s in enumerate(t["symbols"])}
                n = name()
                env[n] = table
                return f"{n}[{v}]"
            if base == "array":
                item = t["items"]
                if item not in ("string", "long", "int"):
                    raise _Unsupported("array of non-primitive")
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
            raise _Unsupported(f"type {base}")
        if isinstance(t, list):
            if len(t) == 2 and t[0] == "null":
                inner = expr(t[1], "_x")
                fn = name()
                env[fn] = eval(f"lambda _x: b'\\x00' if _x is None else b'\\x02' + {inner}", env)  # noqa: S307
                return f"{fn}({v})"
            raise _Unsupported("general union")
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
        raise _Unsupported(f"type {t!r}")

    parts = ["P"]
    for f in schema["fields"]:
        fname = f["name"]
        if not isinstance(fname, str) or not fname.isidentifier():
            raise _Unsupported(f"field name {fname!r}")
        # Optional fields may be absent from the dict (fastavro writes their default, null).
        optional = isinstance(f["type"], list) and f["type"][:1] == ["null"]
        access = f"r.get({fname!r})" if optional else f"r[{fname!r}]"
        parts.append(expr(f["type"], access))
    src = "def _encode(r, _j=b''.join):\n    return _j((" + ", ".join(parts) + ",))\n"
    exec(src, env)  # noqa: S102 - generated from the schema's structure only
    fn: Callable[[Mapping[str, Any]], bytes] = env["_encode"]
    return fn


def fields_encoder(schema: Mapping[str, Any], names: Sequence[str]) -> Callable[[Mapping[str, Any]], bytes]:
    """Encoder of a contiguous run of ``schema``'s fields (``names``, in schema order): the bytes they
    contribute to the record body.

    An Avro record body is the concatenation of its field encodings in schema order, so a producer
    whose records share most fields can pre-encode the shared run once and splice only the changing
    fields (the generator does this for heartbeats). Same compiled code as :meth:`AvroSerde.encode`,
    fastavro when it does not compile.
    """
    all_names = [f["name"] for f in schema["fields"]]
    first = all_names.index(names[0]) if names and names[0] in all_names else 0
    if all_names[first:first + len(names)] != list(names):
        raise ValueError(f"{list(names)} is not a run of fields of {schema.get('name')!r} in schema order")
    fields = schema["fields"][first:first + len(names)]
    sub = {**schema, "fields": fields}
    try:
        return _compile_encoder(sub, b"")
    except _Unsupported:
        parsed = fastavro.parse_schema(dict(sub))

        def slow(record: Mapping[str, Any]) -> bytes:
            bio = io.BytesIO()
            fastavro.schemaless_writer(bio, parsed, dict(record))
            return bio.getvalue()

        return slow


def _strip_timestamp_logical(schema: Any) -> Any:
    """A copy of ``schema`` whose timestamp-millis fields read as plain longs (epoch ms)."""
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis":
            return {k: v for k, v in schema.items() if k != "logicalType"}
        return {k: _strip_timestamp_logical(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_strip_timestamp_logical(s) for s in schema]
    return schema


@dataclass
class _Writer:
    schema_id: int
    parsed: Any
    header: bytes
    fast: Callable[[Mapping[str, Any]], bytes] | None


@dataclass
class _Reader:
    schema_id: int
    schema: dict[str, Any]
    parsed: Any


# --------------------------------------------------------------------------------------------------
# The serde
# --------------------------------------------------------------------------------------------------


class AvroSerde:
    """Encode/decode Confluent-framed Avro values; schema ids and parsed schemas are cached.

    ``schemas`` maps topic -> Avro schema (dict) for the topics this process writes; by default the
    sources of the packaged model spec. A topic not in it is encoded with the latest schema registered
    under its subject. With ``auto_register`` (default) the first ``encode`` for a topic registers its
    schema (idempotent: identical text returns the existing id).
    """

    def __init__(self, registry_url: str, *, schemas: Mapping[str, Mapping[str, Any]] | None = None,
                 auto_register: bool = True, timeout_s: float = 10.0,
                 timestamps: Literal["datetime", "millis"] = "datetime") -> None:
        self.registry_url = registry_url.rstrip("/")
        self._schemas: dict[str, Mapping[str, Any]] | None = dict(schemas) if schemas is not None else None
        self._auto_register = auto_register
        self._timestamps = timestamps
        self._http = httpx.Client(timeout=timeout_s, headers={"Accept": _CONTENT_TYPE})
        self._lock = threading.Lock()
        self._writers: dict[str, _Writer] = {}
        self._readers: dict[int, _Reader] = {}
        self._unknown_ids: dict[int, float] = {}
        self._subject_ids: dict[str, frozenset[int]] = {}
        self._subject_checked: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AvroSerde:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- registry ----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response | None:
        """One registry call; None on 404, RegistryError on anything else that is not 2xx."""
        url = f"{self.registry_url}{path}"
        try:
            resp = self._http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise RegistryError(f"schema registry at {self.registry_url} unreachable: {exc}") from exc
        if resp.status_code == 404:
            return None
        if resp.status_code >= 300:
            raise RegistryError(f"schema registry {method} {path} -> HTTP {resp.status_code}: {resp.text[:300]}")
        return resp

    def register(self, topic: str, schema: Mapping[str, Any]) -> int:
        """Register ``schema`` under ``<topic>-value`` and return its id (idempotent)."""
        subject = subject_for(topic)
        body = json.dumps({"schema": canonical_schema_text(schema), "schemaType": "AVRO"})
        resp = self._request("POST", f"/subjects/{subject}/versions", content=body,
                             headers={"Content-Type": _CONTENT_TYPE})
        if resp is None:
            raise RegistryError(f"registering {subject}: 404 from {self.registry_url}")
        sid = int(resp.json()["id"])
        with self._lock:
            self._subject_ids[subject] = self._subject_ids.get(subject, frozenset()) | {sid}
        return sid

    def register_all(self, spec: GraphSpec) -> dict[str, int]:
        """Register every source topic's schema of ``spec``; returns topic -> schema id."""
        ids: dict[str, int] = {}
        for topic, src in spec.sources.items():
            ids[topic] = self.register(topic, src.schema)
            self._install_writer(topic, src.schema, ids[topic])
        return ids

    def schema_for_id(self, schema_id: int) -> dict[str, Any]:
        """The writer schema registered under ``schema_id``; DecodeError(unknown_schema_id) if none."""
        return self._reader(schema_id).schema

    def subject_ids(self, topic: str, *, refresh: bool = False) -> frozenset[int]:
        """All schema ids registered (any version) under ``<topic>-value``."""
        subject = subject_for(topic)
        if not refresh and subject in self._subject_ids:
            return self._subject_ids[subject]
        resp = self._request("GET", f"/subjects/{subject}/versions")
        ids: set[int] = set()
        if resp is not None:
            for version in resp.json():
                v = self._request("GET", f"/subjects/{subject}/versions/{version}")
                if v is not None:
                    ids.add(int(v.json()["id"]))
        with self._lock:
            merged = frozenset(ids) | self._subject_ids.get(subject, frozenset())
            self._subject_ids[subject] = merged
            self._subject_checked[subject] = time.monotonic()
        return merged

    def schema_id(self, topic: str) -> int:
        """The id ``encode`` uses for ``topic`` (registering its schema if needed)."""
        return self._writer(topic).schema_id

    # -- encode ------------------------------------------------------------------------------------
    def _topic_schema(self, topic: str) -> Mapping[str, Any] | None:
        if self._schemas is None:
            from rdg_platform.model.spec import default_spec

            self._schemas = {t: s.schema for t, s in default_spec().sources.items()}
        return self._schemas.get(topic)

    def _install_writer(self, topic: str, schema: Mapping[str, Any], sid: int) -> _Writer:
        header = HEADER.pack(MAGIC, sid)
        try:
            fast: Callable[[Mapping[str, Any]], bytes] | None = _compile_encoder(schema, header)
        except _Unsupported:
            fast = None
        w = _Writer(sid, fastavro.parse_schema(dict(schema)), header, fast)
        with self._lock:
            self._writers[topic] = w
        return w

    def _writer(self, topic: str) -> _Writer:
        w = self._writers.get(topic)
        if w is not None:
            return w
        schema = self._topic_schema(topic)
        if schema is not None and self._auto_register:
            return self._install_writer(topic, schema, self.register(topic, schema))
        resp = self._request("GET", f"/subjects/{subject_for(topic)}/versions/latest")
        if resp is None:
            raise EncodeError(f"no schema for topic {topic!r}: not in the spec and nothing registered "
                              f"under {subject_for(topic)!r}")
        body = resp.json()
        latest = json.loads(body["schema"])
        if schema is not None and latest != schema:
            raise EncodeError(f"topic {topic!r}: the registry's latest schema differs from the spec's and "
                              "auto_register is off")
        return self._install_writer(topic, latest, int(body["id"]))

    def encode(self, topic: str, record: Mapping[str, Any]) -> bytes:
        """Confluent-framed Avro bytes of ``record`` with ``topic``'s schema."""
        w = self._writers.get(topic) or self._writer(topic)
        if w.fast is not None:
            try:
                return w.fast(record)
            except Exception:  # noqa: S110 - fastavro below is the reference and reports the error
                pass
        return w.header + self._encode_slow(topic, w.parsed, record)

    @staticmethod
    def _encode_slow(topic: str, parsed: Any, record: Mapping[str, Any]) -> bytes:
        bio = io.BytesIO()
        try:
            fastavro.schemaless_writer(bio, parsed, dict(record))
        except Exception as exc:
            raise EncodeError(f"record does not match the schema of {topic!r}: {type(exc).__name__}: {exc}") from exc
        return bio.getvalue()

    def encode_body(self, topic: str, record: Mapping[str, Any]) -> bytes:
        """The Avro body only (no framing): used to build deliberately mis-framed test records."""
        return self.encode(topic, record)[HEADER.size:]

    # -- decode ------------------------------------------------------------------------------------
    def _reader(self, schema_id: int) -> _Reader:
        r = self._readers.get(schema_id)
        if r is not None:
            return r
        until = self._unknown_ids.get(schema_id)
        if until is not None and until > time.monotonic():
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not registered")
        resp = self._request("GET", f"/schemas/ids/{schema_id}")
        if resp is None:
            with self._lock:
                if len(self._unknown_ids) > 10_000:
                    self._unknown_ids.clear()
                self._unknown_ids[schema_id] = time.monotonic() + _NEGATIVE_TTL_S
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not registered")
        body = resp.json()
        if body.get("schemaType", "AVRO") != "AVRO":
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is {body.get('schemaType')}, not Avro")
        schema = json.loads(body["schema"])
        read_schema = schema if self._timestamps == "datetime" else _strip_timestamp_logical(schema)
        r = _Reader(schema_id, schema, fastavro.parse_schema(read_schema))
        with self._lock:
            self._readers[schema_id] = r
        return r

    @staticmethod
    def _framing(data: bytes | None) -> int:
        if data is None or len(data) < HEADER.size:
            raise DecodeError("not_confluent_framing", f"value of {0 if data is None else len(data)} bytes is "
                              "shorter than the 5-byte Confluent header")
        if data[0] != MAGIC:
            raise DecodeError("not_confluent_framing", f"magic byte is {data[0]}, expected 0")
        return int.from_bytes(data[1:5], "big")

    def _body(self, r: _Reader, data: bytes) -> dict[str, Any]:
        bio = io.BytesIO(data)
        bio.seek(HEADER.size)
        try:
            rec = fastavro.schemaless_reader(bio, r.parsed, None)
        except Exception as exc:
            raise DecodeError("avro_decode_error", f"schema id {r.schema_id}: {type(exc).__name__}: {exc}") from None
        if bio.tell() != len(data):
            raise DecodeError("avro_decode_error",
                              f"schema id {r.schema_id}: {len(data) - bio.tell()} trailing bytes after the record")
        if not isinstance(rec, dict):
            raise DecodeError("avro_decode_error", f"schema id {r.schema_id}: not a record")
        return rec

    def decode(self, data: bytes) -> tuple[int, dict[str, Any]]:
        """(schema id, record) of a Confluent-framed value; raises :class:`DecodeError`."""
        sid = self._framing(data)
        return sid, self._body(self._reader(sid), data)

    def decode_for_topic(self, topic: str, data: bytes) -> tuple[int, dict[str, Any]]:
        """Like :meth:`decode`, and the id must be registered under ``<topic>-value``
        (else ``DecodeError("schema_mismatch")``)."""
        sid = self._framing(data)
        return sid, self._body(self._checked_reader(topic, sid), data)

    def writer_schema_for_topic(self, topic: str, schema_id: int) -> dict[str, Any]:
        """The writer schema of ``schema_id`` after the checks :meth:`decode_for_topic` makes:
        ``DecodeError("unknown_schema_id")`` if the registry lacks it, ``DecodeError("schema_mismatch")``
        if it is not registered under ``<topic>-value``. Bulk decoders (the lakehouse archive's
        columnar decoder) call it once per distinct id of a batch instead of once per record."""
        return self._checked_reader(topic, schema_id).schema

    def _checked_reader(self, topic: str, schema_id: int) -> _Reader:
        r = self._reader(schema_id)
        subject = subject_for(topic)
        ids = self._subject_ids.get(subject)
        if ids is None or schema_id not in ids:
            last = self._subject_checked.get(subject, 0.0)
            if ids is None or time.monotonic() - last >= _SUBJECT_REFRESH_S:
                ids = self.subject_ids(topic, refresh=True)
            if schema_id not in ids:
                raise DecodeError("schema_mismatch",
                                  f"schema id {schema_id} is not registered under subject {subject!r}")
        return r


def topic_decoder(serde: AvroSerde, topic: str) -> Callable[[bytes], dict[str, Any]]:
    """``serde.decode_for_topic(topic, data)[1]`` for a per-record hot loop (a streaming processor).

    The first record of each schema id goes through :meth:`AvroSerde.decode_for_topic` (framing,
    registry lookup, subject check, and every error with its reason); once an id has decoded
    successfully for ``topic``, its 5-byte header maps straight to the cached reader, skipping the
    per-record framing parse and subject check (~a quarter of the decode cost). Results and
    ``DecodeError`` reasons are the same as ``decode_for_topic``'s.
    """
    verified: dict[bytes, _Reader] = {}

    def decode(data: bytes) -> dict[str, Any]:
        r = verified.get(data[:HEADER.size])
        if r is None:
            sid, rec = serde.decode_for_topic(topic, data)
            if len(verified) < 1024:  # ids in use by one topic are few; bound it anyway
                verified[data[:HEADER.size]] = serde._reader(sid)
            return rec
        return serde._body(r, data)

    return decode
