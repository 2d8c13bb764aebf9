"""The errors of the Avro package, shared by its modules and caught by their callers."""

from __future__ import annotations


class DecodeError(ValueError):
    """A value that cannot be decoded. ``reason`` names why, as a DLQ header carries it:
    ``not_confluent_framing``, ``unknown_schema_id``, ``avro_decode_error`` or ``schema_mismatch``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EncodeError(ValueError):
    """A record that does not match its topic's schema (a bug in the producer, not bad input)."""


class RegistryError(RuntimeError):
    """The registry is unreachable or answered with an error other than 'not found'.

    Deliberately not a :class:`DecodeError`: a registry outage must stop (and retry) a consumer,
    never send good records to a dead-letter topic.
    """


class UnsupportedSchemaError(ValueError):
    """A schema uses a construct a hand-written codec (the compiled encoder, the columnar decoder)
    does not cover; the caller then uses fastavro, the reference implementation."""
