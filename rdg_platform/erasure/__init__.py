"""Member erasure (GDPR/CCPA): the graph, the archive and an audit trail without personal data.

:class:`~rdg_platform.erasure.engine.ErasureEngine` runs an erasure in resumable steps;
:mod:`rdg_platform.erasure.audit` holds its tables; :mod:`rdg_platform.erasure.archive` its Iceberg part.
Entry points: ``rdg erase`` (CLI), ``POST /v1/erasures`` (API) and the Dagster ``erasure`` domain.
"""

from rdg_platform.erasure.audit import AuditLog, ErasureStatus, ErasureTablesMissing, ensure_erasure_schema
from rdg_platform.erasure.engine import (
           ErasureEngine,
           ErasureError,
           ErasurePolicy,
           archive_catalog,
           check_subject,
)

__all__ = ["AuditLog", "ErasureEngine", "ErasureError", "ErasurePolicy", "ErasureStatus", "ErasureTablesMissing",
           "archive_catalog", "check_subject", "ensure_erasure_schema"]
