"""The lakehouse: Kafka topics archived hourly to Iceberg, and what is done with that history.

Pure (non-Dagster) code, wrapped by ``rdg_platform.assets.{archive,backfill,rebuild,maintenance}``:
catalog config shared by pyiceberg and Spark (:mod:`.catalog`), Avro -> Iceberg schemas
(:mod:`.schema`), exact hour-window Kafka reads (:mod:`.kafka_window`), bulk column-wise Avro
decoding (:mod:`.decoding`, :mod:`.avro_columns`), the idempotent archive writer (:mod:`.archive`),
per-property LWW compaction (:mod:`.lww`), backfill (:mod:`.backfill`), Spark rebuild
(:mod:`.spark`), blue/green namespace versions + checksums (:mod:`.versions`) and maintenance
(:mod:`.maintenance`).
"""

from rdg_platform.lakehouse.archive import (
    ArchiveResult,
    archive_identifier,
    archive_records,
    archive_window,
    read_archive,
)
from rdg_platform.lakehouse.catalog import ARCHIVE_NAMESPACE, DEFAULT_CATALOG_NAME, CatalogConfig
from rdg_platform.lakehouse.kafka_window import KafkaReadError, WindowRead, hour_window, read_window
from rdg_platform.lakehouse.lww import lww_compact

__all__ = [
    "ARCHIVE_NAMESPACE", "DEFAULT_CATALOG_NAME", "ArchiveResult", "CatalogConfig", "KafkaReadError",
    "WindowRead", "archive_identifier", "archive_records", "archive_window", "hour_window", "lww_compact",
    "read_archive", "read_window",
]
