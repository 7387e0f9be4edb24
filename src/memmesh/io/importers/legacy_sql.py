"""Backfill a legacy SQL table of memories into memmesh, per tenant, idempotently.

The case this serves: an application kept agent memories in its own table (say
``agent_memories(id, workspace_id, content, ...)``) and moves to memmesh. Every row becomes a
memory with id ``legacy:<table>:<namespace digest>:<row id>`` (see :func:`row_id`) in the
namespace the template gives its tenant
(``workspace:{tenant}``), with the given kind and source. With ``mark_col`` the row's column
is set to the migration time once its memory is stored, and marked rows are skipped next
time (the memmesh ids make a re-run a no-op even without a mark column, or after a crash
between the write and the mark). A mark column the table does not have is an error unless
``add_mark_col`` is set, which adds it (a nullable timestamp column, an additive change);
with ``check_only`` the report only says that it would.

Everything that can be checked is checked before anything is written: the URL connects,
the table and every named column exist, the mark column can be written, the template only
uses ``{tenant}``. A row that cannot be imported (no id, an id other rows share, empty or
oversize content, a tenant that makes an invalid namespace) is counted as failed with its id
and the reason; no other row is affected. Every row of a repeated id fails, unmarked: a
table has no order that makes one of them the first (a file has one: a mem0 export keeps a
repeated id's first record), and a mark by id would mark them all. ``check_only`` (and ``dry_run``)
open the source read-only and write nothing to memmesh: the report says what a real run
would do.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from memmesh.errors import InvalidInputError
from memmesh.io.importers.base import (
    IMPORTED_FROM,
    Candidate,
    Item,
    Present,
    Progress,
    Rejected,
    Writer,
    check_scope,
    id_part,
    scoped_id,
    source_digest,
    spot_check,
)
from memmesh.io.importers.reports import ImportReport, Outcome, build_report
from memmesh.io.importers.sql_source import SqlSource, open_sql_source
from memmesh.model import Kind, Principal, Tier
from memmesh.redact import redact_url
from memmesh.service import Service

FORMAT = "sql"
MAX_PREFIX_CHARS = 60
REPEATED_FIX = (
    "an id must name one row, so this row is neither imported nor marked; give each row its own id "
    "(or --id-col a unique column) and run again"
)
"""The fix a row whose id is repeated in the table is reported with."""


@dataclass(frozen=True)
class LegacyTable:
    """Where the legacy rows are and how they map onto memories."""

    url: str
    table: str
    id_col: str = "id"
    content_col: str = "content"
    tenant_col: str | None = None
    namespace_template: str = "workspace:{tenant}"
    namespace: str | None = None
    """The one namespace for every row when there is no tenant column."""
    kind: str = "fact"
    source: str = "import"
    tier: str = "long"
    mark_col: str | None = None
    id_prefix: str | None = None
    add_mark_col: bool = False
    """Create ``mark_col`` (default ``migrated_at``) when the table lacks it."""


DEFAULT_MARK_COL = "migrated_at"


def check_options(spec: LegacyTable) -> None:
    """Reject option combinations that cannot work, before connecting to anything."""
    if not spec.table:
        raise InvalidInputError("--table is required for a SQL source")
    fields = {name for _, name, _, _ in string.Formatter().parse(spec.namespace_template) if name is not None}
    if fields - {"tenant"}:
        raise InvalidInputError(
            f"--namespace-template {spec.namespace_template!r} may only use {{tenant}} (found {', '.join(sorted(fields - {'tenant'}))})"
        )
    if spec.tenant_col and spec.namespace:
        raise InvalidInputError("give --namespace-template with --tenant-col, or --namespace without it, not both")
    if not spec.tenant_col and not spec.namespace:
        raise InvalidInputError("give --tenant-col (rows go to --namespace-template per tenant) or --namespace (one namespace)")
    for value, enum, name in ((spec.kind, Kind, "--kind"), (spec.tier, Tier, "--tier")):
        if value not in enum.__members__:
            raise InvalidInputError(f"{name} {value!r} is not one of {', '.join(enum.__members__)}")
    prefix = id_prefix(spec)
    if len(prefix) > MAX_PREFIX_CHARS or not all(c.isalnum() or c in "._:@-" for c in prefix):
        raise InvalidInputError(f"--id-prefix {prefix!r}: at most {MAX_PREFIX_CHARS} letters, digits and . _ : @ -")


def id_prefix(spec: LegacyTable) -> str:
    return spec.id_prefix or f"legacy:{id_part(spec.table)}"


def row_id(spec: LegacyTable, namespace: str, row: object) -> str:
    """A row's memory id: ``<prefix>:<namespace digest>:<row id part>``. The namespace keeps
    two namespaces' (or tenants') rows of one id apart and tells an import nothing about the
    others; versions before it wrote ``<prefix>:<row id>`` (:func:`legacy_row_id`)."""
    return scoped_id(id_prefix(spec), namespace, id_part(row, 48))


def legacy_row_id(spec: LegacyTable, row: object) -> str:
    """The id versions before namespace-derived ids gave a row (found, not written)."""
    return f"{id_prefix(spec)}:{id_part(row, 64)}"


def import_legacy(
    service: Service,
    spec: LegacyTable,
    *,
    dry_run: bool = False,
    check_only: bool = False,
    batch_size: int = 500,
    sample: int = 3,
    progress: Progress | None = None,
    principal: Principal,
) -> ImportReport:
    """Migrate the table's rows (see the module docs); returns the per-tenant report."""
    if spec.add_mark_col and not spec.mark_col:
        spec = replace(spec, mark_col=DEFAULT_MARK_COL)
    check_options(spec)
    read_only = dry_run or check_only
    source = open_sql_source(spec.url, read_only=read_only or spec.mark_col is None)
    changes: list[str] = []
    try:
        columns = _checked_columns(source, spec)
        check_scope(principal, _namespaces(source, spec, batch_size) if principal is not None else [])
        if spec.mark_col and spec.mark_col not in columns:
            changes.append(_add_mark_column(source, spec, read_only))
            if read_only:
                spec = replace(spec, mark_col=None)  # nothing is marked: every row reads as unmarked
            columns = [c for c in (spec.content_col, spec.tenant_col, spec.mark_col) if c is not None]
        if spec.mark_col and not read_only:
            source.check_writable(spec.table, spec.mark_col)
        writer = Writer(service, dry_run=read_only, principal=principal, progress=progress)
        outcomes = writer.apply(_null_key_items(source, spec))
        repeated = source.repeated_keys(spec.table, spec.id_col)
        for rows in source.pages(spec.table, spec.id_col, columns, batch_size):
            done = writer.apply([_row_item(spec, row, repeated) for row in rows], batch_size)
            outcomes.extend(done)
            if spec.mark_col and not read_only:
                _mark(source, spec, rows, done, service)
    finally:
        source.close()
    report = build_report(FORMAT, redact_url(spec.url), read_only, outcomes, (0, 0))
    report.source_changes = changes
    if not read_only:
        report.spot_check = spot_check(service, outcomes, sample, principal)
    return report


def _checked_columns(source: SqlSource, spec: LegacyTable) -> list[str]:
    """The columns to read after the key (content, tenant?, mark?); each must exist, except a
    mark column that ``add_mark_col`` will create (then it is left out of the list)."""
    present = source.columns(spec.table)
    named = [
        ("--id-col", spec.id_col),
        ("--content-col", spec.content_col),
        ("--tenant-col", spec.tenant_col),
    ]
    for option, column in named:
        if column is not None and column not in present:
            raise InvalidInputError(
                f"{option} {column!r}: table {spec.table!r} has no such column (columns: {', '.join(present)}); nothing was written"
            )
    if spec.mark_col is not None and spec.mark_col not in present and not spec.add_mark_col:
        raise InvalidInputError(
            f"--mark-col {spec.mark_col!r}: table {spec.table!r} has no such column (columns: {', '.join(present)}); "
            "add --add-mark-column to create it (with --check-only to only see what would happen); nothing was written"
        )
    mark = spec.mark_col if spec.mark_col in present else None
    return [c for c in (spec.content_col, spec.tenant_col, mark) if c is not None]


def _add_mark_column(source: SqlSource, spec: LegacyTable, read_only: bool) -> str:
    """Add the missing mark column (nothing is changed when ``read_only``); says what it did."""
    column = spec.mark_col or DEFAULT_MARK_COL
    if read_only:
        return f"would add column {column} to {spec.table} (--add-mark-column); nothing was changed"
    kind = source.add_column(spec.table, column)
    return f"added column {column} ({kind}) to {spec.table}"


def _namespaces(source: SqlSource, spec: LegacyTable, batch_size: int) -> set[str]:
    """Every namespace the rows go to (one read of the tenant column), for the scope check."""
    if not spec.tenant_col:
        return {str(spec.namespace)}
    found: set[str] = set()
    for rows in source.pages(spec.table, spec.id_col, [spec.tenant_col], batch_size):
        found.update(spec.namespace_template.format(tenant=t) for t in (_tenant(row[1]) for row in rows) if t is not None)
    return found


def _null_key_items(source: SqlSource, spec: LegacyTable) -> list[Item]:
    """Rows without an id cannot be imported idempotently (or marked): each one is a failure."""
    extra = [spec.tenant_col] if spec.tenant_col else []
    return [
        Rejected("(no id)", _tenant(row[0]) if extra else None, f"{spec.id_col} is NULL")
        for row in source.null_key_rows(spec.table, spec.id_col, extra)
    ]


def _row_parts(spec: LegacyTable, row: tuple[Any, ...]) -> tuple[Any, Any, str | None, Any]:
    row_id, content = row[0], row[1]
    tenant = _tenant(row[2]) if spec.tenant_col else None
    mark = row[-1] if spec.mark_col else None
    return row_id, content, tenant, mark


def _row_item(spec: LegacyTable, row: tuple[Any, ...], repeated: dict[str, int]) -> Item:
    """The row as an item; ``repeated``: the ids on more than one row, with their row counts."""
    raw_id, content, tenant, mark = _row_parts(spec, row)
    key = str(raw_id)
    if spec.tenant_col and tenant is None:
        return Rejected(key, tenant, f"{spec.tenant_col} is NULL, so the row has no namespace")
    namespace = spec.namespace_template.format(tenant=tenant) if spec.tenant_col else str(spec.namespace)
    if mark is not None:
        return Present(key, tenant, "already migrated (marked)", namespace=namespace)
    if key in repeated:  # every row of it fails (see the module doc)
        return Rejected(key, tenant, f"{spec.id_col} {key} is on {repeated[key]} rows of {spec.table}; {REPEATED_FIX}")
    if isinstance(content, bytes | bytearray | memoryview):
        try:
            content = bytes(content).decode("utf-8")
        except UnicodeDecodeError:
            return Rejected(key, tenant, f"{spec.content_col} is binary, not UTF-8 text")
    if content is None:
        return Rejected(key, tenant, f"{spec.content_col} is NULL")
    text = str(content)
    sha = source_digest(namespace, text, spec.kind)
    origin = {"format": FORMAT, "table": spec.table, "id": key, "tenant": tenant, "sha": sha}
    fields = {
        "id": row_id(spec, namespace, raw_id),
        "namespace": namespace,
        "content": text,
        "kind": spec.kind,
        "source": spec.source,
        "tier": spec.tier,
        "metadata": {IMPORTED_FROM: origin},
    }
    return Candidate(key, tenant, fields, sha, legacy_id=legacy_row_id(spec, raw_id))


def _tenant(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _mark(source: SqlSource, spec: LegacyTable, rows: Sequence[tuple[Any, ...]], done: Sequence[Outcome], service: Service) -> None:
    """Mark the rows whose memory is now in memmesh (written now or before; not failed, not marked)."""
    by_key = {str(row[0]): row[0] for row in rows}
    ids = [
        by_key[o.key]
        for o in done
        if o.key in by_key and o.memory_id and o.action in ("added", "updated", "skipped") and o.reason != "already migrated (marked)"
    ]
    if ids:
        source.mark(spec.table, spec.id_col, spec.mark_col or "", ids, service.clock())


__all__ = ["FORMAT", "LegacyTable", "check_options", "import_legacy"]
