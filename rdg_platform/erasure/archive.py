"""The erasure's Iceberg part: delete a member's rows from every archive table, and later expire the
snapshots that still hold them and delete the files only those snapshots referenced.

The row delete is pyiceberg's copy-on-write ``Table.delete(EqualTo(column, id))``: files holding only
the member's rows are dropped, files holding other rows too are rewritten without them, in one commit
whose summary carries the erasure id. Older snapshots still reference the old files (time travel,
rollback), so after the grace period :func:`expire_holding_snapshots` expires every snapshot in which a
scan still finds the member, then deletes the files that no remaining snapshot references any more.
pyiceberg's expiry itself deletes no file; deleting exactly the files this expiry freed (rather than
every unreferenced file) cannot touch a file a concurrent writer has written but not yet committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchNamespaceError
from pyiceberg.expressions import BooleanExpression, EqualTo
from pyiceberg.table import Table

from rdg_platform.lakehouse.archive import SOURCE_TOPIC_PROPERTY
from rdg_platform.lakehouse.catalog import ARCHIVE_NAMESPACE

ERASURE_ID_PROPERTY = "rdg.erasure-id"  # snapshot summary property of an erasure's delete commit


@dataclass
class ExpiryResult:
    snapshots_expired: int = 0
    files_deleted: int = 0
    rows_deleted_again: int = 0
    files: list[str] = field(default_factory=list)


def archive_tables(catalog: Catalog, column: str, namespace: str = ARCHIVE_NAMESPACE) -> Iterator[tuple[str, Table]]:
    """Every archive table that has ``column``, as (source topic, table); none when nothing is archived."""
    try:
        idents = sorted(catalog.list_tables(namespace))
    except NoSuchNamespaceError:
        return
    for ident in idents:
        table = catalog.load_table(ident)
        if column in {f.name for f in table.schema().fields}:
            yield table.properties.get(SOURCE_TOPIC_PROPERTY, ident[-1]), table


def _equal(column: str, value: str) -> BooleanExpression:
    return EqualTo(column, value)  # type: ignore[call-arg,misc]  # pyiceberg's generic signature confuses mypy


def count_rows(table: Table, column: str, value: str, snapshot_id: int | None = None) -> int:
    """Rows of ``table`` (its current snapshot, or ``snapshot_id``) whose ``column`` equals ``value``."""
    scan = table.scan(row_filter=_equal(column, value), selected_fields=(column,), snapshot_id=snapshot_id)
    return int(scan.to_arrow().num_rows)


def delete_rows(table: Table, column: str, value: str, erasure_id: str) -> int:
    """Delete the rows whose ``column`` equals ``value`` (one copy-on-write commit, tagged with the
    erasure id); returns how many there were (0: nothing committed, so a rerun is a no-op)."""
    n = count_rows(table, column, value)
    if n:
        table.delete(_equal(column, value), snapshot_properties={ERASURE_ID_PROPERTY: erasure_id})
    return n


def _raw_refs(table: Table) -> set[str]:
    """Data files, manifests and manifest lists the table's remaining snapshots reference (as stored)."""
    refs = {s.manifest_list for s in table.snapshots() if s.manifest_list}
    if table.snapshots():
        refs |= set(table.inspect.all_manifests().column("path").to_pylist())
        refs |= set(table.inspect.all_files().column("file_path").to_pylist())
    return refs


def expire_holding_snapshots(table: Table, column: str, value: str, erasure_id: str) -> ExpiryResult:
    """Delete rows re-archived since the erasure's delete (so the current snapshot holds none), expire
    every other snapshot in which the rows are still visible, and delete the files that only the
    expired snapshots referenced."""
    res = ExpiryResult(rows_deleted_again=delete_rows(table, column, value, erasure_id))
    table.refresh()
    current = table.current_snapshot()
    victims = [s.snapshot_id for s in table.snapshots()
               if (current is None or s.snapshot_id != current.snapshot_id)
               and count_rows(table, column, value, s.snapshot_id) > 0]
    if not victims:
        return res
    before = _raw_refs(table)
    table.maintenance.expire_snapshots().by_ids(victims).commit()
    table.refresh()
    freed = sorted(before - _raw_refs(table))
    for path in freed:
        table.io.delete(path)
    res.snapshots_expired = len(victims)
    res.files_deleted = len(freed)
    res.files = freed
    return res
