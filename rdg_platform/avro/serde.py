"""Confluent-framed Avro values of the source topics: encode with the compiled encoder, decode with
fastavro, schema ids from the registry (all cached per process).

Encoding uses :func:`rdg_platform.avro.encoder.compile_encoder` per topic schema and falls back to
fastavro for any record the compiled code declines (a ``datetime`` timestamp, a bad value), so errors
carry fastavro's message. Decoding uses ``fastavro.schemaless_reader`` with the parsed writer schema
cached per id. Decoded ``timestamp-millis`` fields are timezone-aware UTC ``datetime`` objects by
default (fastavro's standard behaviour); ``timestamps="millis"`` gives epoch-millisecond ints instead.
:func:`rdg_platform.model.mapping.to_epoch_ms` accepts both.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import fastavro

from rdg_platform.avro.encoder import Encoder, compile_encoder
from rdg_platform.avro.errors import DecodeError, EncodeError, UnsupportedSchemaError
from rdg_platform.avro.framing import HEADER, frame_header, schema_id_of
from rdg_platform.avro.registry import SchemaRegistry, subject_for

if TYPE_CHECKING:
    from rdg_platform.model.spec import GraphSpec
    from rdg_platform.settings import RegistrySettings

# A subject's id list is re-read from the registry at most this often when an id is not in it, so a
# flood of mismatched records does not become a flood of registry calls.
_SUBJECT_REFRESH_S = 2.0
# An unknown schema id is remembered as unknown this long (it may be registered later).
_NEGATIVE_TTL_S = 5.0


def strip_timestamp_logical(schema: Any) -> Any:
    """A copy of ``schema`` whose timestamp-millis fields read as plain longs (epoch ms)."""
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis":
            return {k: v for k, v in schema.items() if k != "logicalType"}
        return {k: strip_timestamp_logical(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [strip_timestamp_logical(s) for s in schema]
    return schema


@dataclass
class _Writer:
    schema_id: int
    schema: Mapping[str, Any]
    parsed: Any
    header: bytes
    fast: Encoder | None


@dataclass
class _Reader:
    schema_id: int
    schema: dict[str, Any]
    parsed: Any


class AvroSerde:
    """Encode/decode Confluent-framed Avro values; schema ids and parsed schemas are cached.

    ``registry`` is a :class:`SchemaRegistry` or its URL (no credentials). ``schemas`` maps topic ->
    Avro schema for the topics this process writes; by default the sources of the packaged model
    spec. A topic not in it is encoded with the latest schema registered under its subject. With
    ``auto_register`` (default) the first ``encode`` for a topic registers its schema (idempotent:
    identical text returns the existing id).
    """

    def __init__(self, registry: SchemaRegistry | str, *, schemas: Mapping[str, Mapping[str, Any]] | None = None,
                 auto_register: bool = True, timeout_s: float = 10.0,
                 timestamps: Literal["datetime", "millis"] = "datetime") -> None:
        self.registry = registry if isinstance(registry, SchemaRegistry) else SchemaRegistry(
            registry, timeout_s=timeout_s)
        self._schemas: dict[str, Mapping[str, Any]] | None = dict(schemas) if schemas is not None else None
        self._auto_register = auto_register
        self._timestamps = timestamps
        self._lock = threading.Lock()
        self._writers: dict[str, _Writer] = {}
        self._readers: dict[int, _Reader] = {}
        self._unknown_ids: dict[int, float] = {}
        self._subject_ids: dict[str, frozenset[int]] = {}
        self._subject_checked: dict[str, float] = {}

    @classmethod
    def from_settings(cls, registry: RegistrySettings, *, schemas: Mapping[str, Mapping[str, Any]] | None = None,
                      auto_register: bool = True, timeout_s: float = 10.0,
                      timestamps: Literal["datetime", "millis"] = "datetime") -> AvroSerde:
        """A serde against the registry of ``registry`` (its URL and credentials)."""
        return cls(SchemaRegistry.from_settings(registry, timeout_s=timeout_s), schemas=schemas,
                   auto_register=auto_register, timestamps=timestamps)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> AvroSerde:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- registry ----------------------------------------------------------------------------------
    def register(self, topic: str, schema: Mapping[str, Any]) -> int:
        """Register ``schema`` under ``<topic>-value`` and return its id (idempotent)."""
        sid = self.registry.register(topic, schema)
        subject = subject_for(topic)
        with self._lock:
            self._subject_ids[subject] = self._subject_ids.get(subject, frozenset()) | {sid}
        return sid

    def register_all(self, spec: GraphSpec) -> dict[str, int]:
        """Register every source topic's schema of ``spec`` and encode with them; topic -> schema id."""
        ids: dict[str, int] = {}
        for topic, src in spec.sources.items():
            ids[topic] = self.register(topic, src.schema)
            self.install_writer(topic, src.schema, ids[topic])
        return ids

    def schema_for_id(self, schema_id: int) -> dict[str, Any]:
        """The writer schema registered under ``schema_id``; DecodeError(unknown_schema_id) if none."""
        return self._reader(schema_id).schema

    def subject_ids(self, topic: str, *, refresh: bool = False) -> frozenset[int]:
        """All schema ids registered (any version) under ``<topic>-value``."""
        subject = subject_for(topic)
        if not refresh and subject in self._subject_ids:
            return self._subject_ids[subject]
        ids = self.registry.subject_ids(topic)
        with self._lock:
            merged = ids | self._subject_ids.get(subject, frozenset())
            self._subject_ids[subject] = merged
            self._subject_checked[subject] = time.monotonic()
        return merged

    def schema_id(self, topic: str) -> int:
        """The id ``encode`` uses for ``topic`` (registering its schema if needed)."""
        return self._writer(topic).schema_id

    def writer_schema(self, topic: str) -> Mapping[str, Any]:
        """The schema ``encode`` writes ``topic`` with (registering it if needed)."""
        return self._writer(topic).schema

    # -- encode ------------------------------------------------------------------------------------
    def _topic_schema(self, topic: str) -> Mapping[str, Any] | None:
        if self._schemas is None:
            from rdg_platform.model.spec import default_spec

            self._schemas = {t: s.schema for t, s in default_spec().sources.items()}
        return self._schemas.get(topic)

    def install_writer(self, topic: str, schema: Mapping[str, Any], schema_id: int) -> None:
        """Encode ``topic`` with ``schema`` framed as ``schema_id`` from now on, without asking the
        registry (the caller has registered it, e.g. :meth:`register_all`, or a test needs no registry)."""
        self._install(topic, schema, schema_id)

    def _install(self, topic: str, schema: Mapping[str, Any], sid: int) -> _Writer:
        header = frame_header(sid)
        try:
            fast: Encoder | None = compile_encoder(schema, header)
        except UnsupportedSchemaError:
            fast = None
        w = _Writer(sid, schema, fastavro.parse_schema(dict(schema)), header, fast)
        with self._lock:
            self._writers[topic] = w
        return w

    def _writer(self, topic: str) -> _Writer:
        w = self._writers.get(topic)
        if w is not None:
            return w
        schema = self._topic_schema(topic)
        if schema is not None and self._auto_register:
            return self._install(topic, schema, self.register(topic, schema))
        latest = self.registry.latest(topic)
        if latest is None:
            raise EncodeError(f"no schema for topic {topic!r}: not in the spec and nothing registered "
                              f"under {subject_for(topic)!r}")
        registered = json.loads(latest.text)
        if schema is not None and registered != schema:
            raise EncodeError(f"topic {topic!r}: the registry's latest schema differs from the spec's and "
                              "auto_register is off")
        return self._install(topic, registered, latest.schema_id)

    def encode(self, topic: str, record: Mapping[str, Any]) -> bytes:
        """Confluent-framed Avro bytes of ``record`` with ``topic``'s schema."""
        w = self._writers.get(topic) or self._writer(topic)
        if w.fast is not None:
            try:
                return w.fast(record)
            except Exception:  # noqa: S110 - fastavro below is the reference and reports the error
                pass
        bio = io.BytesIO()
        try:
            fastavro.schemaless_writer(bio, w.parsed, dict(record))
        except Exception as exc:
            raise EncodeError(f"record does not match the schema of {topic!r}: {type(exc).__name__}: {exc}") from exc
        return w.header + bio.getvalue()

    # -- decode ------------------------------------------------------------------------------------
    def _reader(self, schema_id: int) -> _Reader:
        r = self._readers.get(schema_id)
        if r is not None:
            return r
        until = self._unknown_ids.get(schema_id)
        if until is not None and until > time.monotonic():
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not registered")
        found = self.registry.by_id(schema_id)
        if found is None:
            with self._lock:
                if len(self._unknown_ids) > 10_000:
                    self._unknown_ids.clear()
                self._unknown_ids[schema_id] = time.monotonic() + _NEGATIVE_TTL_S
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not registered")
        if found.schema_type != "AVRO":
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is {found.schema_type}, not Avro")
        schema = json.loads(found.text)
        read_schema = schema if self._timestamps == "datetime" else strip_timestamp_logical(schema)
        r = _Reader(schema_id, schema, fastavro.parse_schema(read_schema))
        with self._lock:
            self._readers[schema_id] = r
        return r

    @staticmethod
    def _body(r: _Reader, data: bytes) -> dict[str, Any]:
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
        sid = schema_id_of(data)
        return sid, self._body(self._reader(sid), data)

    def decode_for_topic(self, topic: str, data: bytes) -> tuple[int, dict[str, Any]]:
        """Like :meth:`decode`, and the id must be registered under ``<topic>-value``
        (else ``DecodeError("schema_mismatch")``)."""
        sid = schema_id_of(data)
        return sid, self._body(self._checked_reader(topic, sid), data)

    def writer_schema_for_topic(self, topic: str, schema_id: int) -> dict[str, Any]:
        """The writer schema of ``schema_id`` after the checks :meth:`decode_for_topic` makes:
        ``DecodeError("unknown_schema_id")`` if the registry lacks it, ``DecodeError("schema_mismatch")``
        if it is not registered under ``<topic>-value``. Bulk decoders call it once per distinct id
        of a batch instead of once per record."""
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
    registry lookup, subject check, and every error with its reason); once an id has decoded for
    ``topic``, its 5-byte header maps straight to the cached reader, skipping the per-record framing
    parse and subject check. Results and ``DecodeError`` reasons are those of ``decode_for_topic``.
    """
    verified: dict[bytes, _Reader] = {}
    body = serde._body

    def decode(data: bytes) -> dict[str, Any]:
        r = verified.get(data[:HEADER.size])
        if r is None:
            sid, rec = serde.decode_for_topic(topic, data)
            if len(verified) < 1024:  # ids in use by one topic are few; bound it anyway
                verified[data[:HEADER.size]] = serde._reader(sid)
            return rec
        return body(r, data)

    return decode
