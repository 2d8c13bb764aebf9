"""The Confluent wire format of a Kafka value: magic byte ``0``, the 4-byte big-endian schema id,
then the Avro binary body."""

from __future__ import annotations

import struct

from rdg_platform.avro.errors import DecodeError

MAGIC = 0
HEADER = struct.Struct(">bI")


def frame_header(schema_id: int) -> bytes:
    """The 5 header bytes that precede a body written with schema ``schema_id``."""
    return HEADER.pack(MAGIC, schema_id)


def schema_id_of(data: bytes | None) -> int:
    """The schema id in ``data``'s header; ``DecodeError("not_confluent_framing")`` if it has none."""
    if data is None or len(data) < HEADER.size:
        raise DecodeError("not_confluent_framing", f"value of {0 if data is None else len(data)} bytes is "
                          "shorter than the 5-byte Confluent header")
    if data[0] != MAGIC:
        raise DecodeError("not_confluent_framing", f"magic byte is {data[0]}, expected 0")
    return int.from_bytes(data[1:5], "big")
