"""The reports every importer returns: per tenant, in total, each failure with its reason.

Kept apart from the write path (:mod:`.base`) so the faces that only render a report (CLI
table, HTTP and MCP JSON) depend on these models and nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

Action = Literal["added", "updated", "deleted", "skipped", "failed"]


@dataclass
class Outcome:
    """What happened to one item (or would have, in a dry run)."""

    key: str
    tenant: str | None
    action: Action
    reason: str | None = None
    memory_id: str | None = None
    namespace: str | None = None


# -- the report ---------------------------------------------------------------------------------


class TenantCounts(BaseModel):
    """Per tenant (or target namespace): the ``{tenant, migrated, skipped, failed}``."""

    tenant: str | None
    namespace: str | None = None
    migrated: int = 0
    skipped: int = 0
    failed: int = 0


class Totals(BaseModel):
    """All tenants together; ``migrated`` = added + updated + deleted."""

    migrated: int = 0
    skipped: int = 0
    failed: int = 0
    added: int = 0
    updated: int = 0
    deleted: int = 0
    links_written: int = 0
    links_skipped: int = 0


class Failure(BaseModel):
    """One record that was not imported, and why."""

    id: str
    tenant: str | None
    reason: str


class SpotCheck(BaseModel):
    """Recall of a sample of imported records: each should be found by its own words."""

    sampled: int
    found: int
    missing: list[str] = Field(default_factory=list)


class ImportReport(BaseModel):
    """What an import did (or, with ``dry_run``, would do)."""

    format: str
    source: str
    dry_run: bool
    tenants: list[TenantCounts]
    totals: Totals
    skipped_reasons: dict[str, int] = Field(default_factory=dict)
    failures: list[Failure] = Field(default_factory=list)
    spot_check: SpotCheck | None = None
    source_changes: list[str] = Field(default_factory=list)
    """Changes made to the source itself (SQL: an added mark column), or that would be made."""

    @property
    def written(self) -> int:
        """Memories and links written: 0 on a re-run of the same source."""
        return self.totals.migrated + self.totals.links_written


def build_report(fmt: str, source: str, dry_run: bool, outcomes: Sequence[Outcome], links: tuple[int, int]) -> ImportReport:
    """Tally outcomes per tenant (in first-seen order) and in total."""
    tenants: dict[str | None, TenantCounts] = {}
    totals = Totals(links_written=links[0], links_skipped=links[1])
    reasons: Counter[str] = Counter()
    failures: list[Failure] = []
    for o in outcomes:
        row = tenants.setdefault(o.tenant, TenantCounts(tenant=o.tenant))
        if row.namespace is None and o.namespace:
            row.namespace = o.namespace
        if o.action == "failed":
            row.failed += 1
            failures.append(Failure(id=o.key, tenant=o.tenant, reason=o.reason or "failed"))
        elif o.action == "skipped":
            row.skipped += 1
            reasons[o.reason or "skipped"] += 1
        else:
            row.migrated += 1
            setattr(totals, o.action, getattr(totals, o.action) + 1)
    totals.migrated = totals.added + totals.updated + totals.deleted
    totals.skipped = sum(t.skipped for t in tenants.values())
    totals.failed = len(failures)
    return ImportReport(
        format=fmt,
        source=source,
        dry_run=dry_run,
        tenants=list(tenants.values()),
        totals=totals,
        skipped_reasons=dict(reasons.most_common()),
        failures=failures,
    )
