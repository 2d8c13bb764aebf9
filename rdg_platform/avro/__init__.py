"""Avro in the Confluent wire format: the one package for the registry client, the framing, the fast
encoder and the columnar decoder.

- :mod:`~rdg_platform.avro.registry`: register and look up schemas (confluent-kafka's
  ``SchemaRegistryClient`` against any Confluent-compatible registry, with basic auth from settings).
- :mod:`~rdg_platform.avro.framing`: magic byte + 4-byte schema id.
- :mod:`~rdg_platform.avro.encoder`: the encoder compiled per schema (byte-identical to fastavro).
- :mod:`~rdg_platform.avro.serde`: :class:`AvroSerde`, per-record encode/decode with cached ids.
- :mod:`~rdg_platform.avro.columnar`: many bodies of one schema straight into Arrow columns.
- :mod:`~rdg_platform.avro.bulk`: a batch of framed values of a topic, grouped by schema id and
  decoded column-wise (the lakehouse archive).
"""

from __future__ import annotations

from rdg_platform.avro.errors import DecodeError, EncodeError, RegistryError, UnsupportedSchemaError
from rdg_platform.avro.framing import HEADER, MAGIC, frame_header, schema_id_of
from rdg_platform.avro.registry import SchemaRegistry, subject_for
from rdg_platform.avro.serde import AvroSerde, topic_decoder

__all__ = [
    "HEADER", "MAGIC", "AvroSerde", "DecodeError", "EncodeError", "RegistryError", "SchemaRegistry",
    "UnsupportedSchemaError", "frame_header", "schema_id_of", "subject_for", "topic_decoder",
]
