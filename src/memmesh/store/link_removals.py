"""Link tombstones (schema 20): the record that a link was removed, so the removal replicates.

A link carries no version: its ``created_at`` orders its versions (federation.digest.link_order).
A removal is ordered the same way: a link whose ``created_at`` is not after ``removed_at`` is
gone, on every node, whichever arrives first; a link (re)created after the removal is newer
and stays. One SQL text for both backends (``?`` placeholders turned into ``%s`` for psycopg),
on the connection of a store write transaction or of a read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from memmesh.clock import format_ts, parse_ts
from memmesh.store.base import WriteTx


class Removal(NamedTuple):
    """One removed link: its key, when it was removed and by whom."""

    source_id: str
    target_id: str
    relation: str
    removed_at: datetime
    removed_by: str | None


def _run(conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    return conn.execute(sql if isinstance(conn, sqlite3.Connection) else sql.replace("?", "%s"), tuple(params))


def record(tx: WriteTx, removal: Removal, seq: int) -> None:
    """Keep the removal (the later one when the link was removed before), with change number
    ``seq`` so the feed ships it, and delete the link if it is not newer than the removal."""
    conn = tx.conn
    _run(
        conn,
        "INSERT INTO link_removals (source_id, target_id, relation, removed_at, removed_by, seq) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (source_id, target_id, relation) DO UPDATE SET removed_at = excluded.removed_at, "
        "removed_by = excluded.removed_by, seq = excluded.seq WHERE link_removals.removed_at < excluded.removed_at",
        (removal.source_id, removal.target_id, removal.relation, format_ts(removal.removed_at), removal.removed_by, seq),
    )
    _run(
        conn,
        "DELETE FROM links WHERE source_id = ? AND target_id = ? AND relation = ? AND created_at <= ?",
        (
            removal.source_id,
            removal.target_id,
            removal.relation,
            format_ts(removal.removed_at) if isinstance(conn, sqlite3.Connection) else removal.removed_at,  # links.created_at's type
        ),
    )


def removed_at(tx: WriteTx, source_id: str, target_id: str, relation: str) -> datetime | None:
    """When the link was last removed on this node (None: never)."""
    row = _run(
        tx.conn,
        "SELECT removed_at FROM link_removals WHERE source_id = ? AND target_id = ? AND relation = ?",
        (source_id, target_id, relation),
    ).fetchone()
    return parse_ts(row[0]) if row else None


def changed(conn: Any, since: int, upto: int) -> list[tuple[int, Removal]]:
    """The removals whose change number lies in ``(since, upto]`` (what the feed ships)."""
    rows = _run(
        conn,
        "SELECT seq, source_id, target_id, relation, removed_at, removed_by FROM link_removals "
        "WHERE seq > ? AND seq <= ? ORDER BY seq, source_id, target_id, relation",
        (since, upto),
    ).fetchall()
    return [(int(r[0]), Removal(r[1], r[2], r[3], parse_ts(r[4]), r[5])) for r in rows]


def of_memories(conn: Any, ids: Sequence[str]) -> list[Removal]:
    """The removals of links from or to these memories (what anti-entropy ships with them)."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    rows = _run(
        conn,
        f"SELECT source_id, target_id, relation, removed_at, removed_by FROM link_removals "
        f"WHERE source_id IN ({marks}) OR target_id IN ({marks}) ORDER BY source_id, target_id, relation",
        (*ids, *ids),
    ).fetchall()
    return [Removal(r[0], r[1], r[2], parse_ts(r[3]), r[4]) for r in rows]
