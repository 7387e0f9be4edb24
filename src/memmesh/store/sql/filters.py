"""WHERE clauses for a :class:`~memmesh.store.base.Filter`, one text for both backends."""

from __future__ import annotations

from typing import Any

from memmesh.store.base import Filter
from memmesh.store.sql.dialect import Dialect


def subtree_sql(column: str, roots: tuple[str, ...] | list[str]) -> tuple[str, list[Any]]:
    """``column`` is one of ``roots`` or anything below one: ``'0'`` is the character after
    ``'/'`` (C collation), so a range test uses the namespace index."""
    subtree = f"({column} = ? OR ({column} > ? AND {column} < ?))"
    params: list[Any] = []
    for root in roots:
        params += [root, root + "/", root + "0"]
    return "(" + (" OR ".join([subtree] * len(roots)) or "FALSE") + ")", params


def filter_sql(flt: Filter, d: Dialect, alias: str = "m", namespace_index: bool = True) -> tuple[str, list[Any]]:
    """WHERE clauses (``?`` placeholders) and parameters for a Filter over the memories table.

    ``namespace_index=False`` hides the namespace column from SQLite's planner, so a query
    over a large subtree that wants rows in time order is not driven from the namespace index.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if not flt.include_expired:
        clauses.append(f"({alias}.expires_at IS NULL OR {alias}.expires_at > ?)")
        params.append(d.ts(flt.now))
    column = f"{alias}.namespace" if namespace_index else d.unindexed(f"{alias}.namespace")
    for roots in ([flt.namespace] if flt.namespace else None, flt.scopes):
        if roots is not None:
            clause, more = subtree_sql(column, roots)
            clauses.append(clause)
            params += more
    tag_clauses, tag_params = d.tag_filter(alias, flt.tags)
    clauses += tag_clauses
    params += tag_params
    for name in ("tier", "kind", "agent_id"):
        value = getattr(flt, name)
        if value is not None:
            clauses.append(f"{alias}.{name} = ?")
            params.append(value)
    if flt.since is not None:
        clauses.append(f"{alias}.created_at >= ?")
        params.append(d.ts(flt.since))
    if flt.until is not None:
        clauses.append(f"{alias}.created_at < ?")
        params.append(d.ts(flt.until))
    if flt.as_of is not None:
        moment = d.ts(flt.as_of)
        clauses.append(f"({alias}.valid_from IS NULL OR {alias}.valid_from <= ?) AND ({alias}.valid_to IS NULL OR {alias}.valid_to > ?)")
        params += [moment, moment]
    if flt.ids is not None:
        clauses.append(d.in_list(f"{alias}.id"))
        params.append(d.list_param(flt.ids))
    return (" AND ".join(clauses) or "TRUE"), params


def archive_filter_sql(flt: Filter, d: Dialect) -> tuple[str, list[Any]]:
    """WHERE clauses for the archive table (alias ``a``): namespace subtree, scopes and ids only."""
    clauses: list[str] = []
    params: list[Any] = []
    for roots in ([flt.namespace] if flt.namespace else None, flt.scopes):
        if roots is not None:
            clause, more = subtree_sql("a.namespace", roots)
            clauses.append(clause)
            params += more
    if flt.ids is not None:
        clauses.append(d.in_list("a.id"))
        params.append(d.list_param(flt.ids))
    return (" AND ".join(clauses) or "TRUE"), params
