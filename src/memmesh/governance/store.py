"""Governance tables, written once for both backends.

The SQL text is shared: it is written with ``?`` placeholders and turned into ``%s`` for a
psycopg connection, times are RFC 3339 text and JSON is text in both databases (schema 9
creates the same columns on each). Reads use the store's reading connection; writes run on
the connection of a store write transaction, so they serialise with every other write and
a claim (``pending`` → ``approved``) is decided by exactly one caller.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from memmesh.clock import format_ts, parse_ts
from memmesh.governance.model import PendingAction, Standard
from memmesh.model import Principal
from memmesh.store.base import Store, WriteTx

STANDARD_COLUMNS = "namespace, governance, default_tier, ttl_seconds, retention_days, required_tags, updated_at, updated_by"
PENDING_COLUMNS = (
    "id, action, namespace, rule_namespace, payload, requester, requested_by, requested_at, "
    "status, decided_by, decided_at, reason, result, error"
)


def sql_for(conn: Any, text: str) -> str:
    """The shared SQL in this connection's placeholder style."""
    return text if isinstance(conn, sqlite3.Connection) else text.replace("?", "%s")


def _run(conn: Any, text: str, params: Sequence[Any] = ()) -> Any:
    return conn.execute(sql_for(conn, text), tuple(params))


def _tx_conn(tx: WriteTx) -> Any:
    """The connection under a store write transaction (both backends keep it as ``conn``)."""
    return tx.conn


class GovernanceStore:
    """Standards and pending actions over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _reading(self) -> Any:
        return self.store.reading()

    # -- standards ---------------------------------------------------------------------------

    def standards(self, namespaces: Sequence[str] | None = None) -> list[Standard]:
        """The standards set on these namespaces (all when None), by namespace."""
        if namespaces is not None and not namespaces:
            return []
        where = "WHERE cleared = 0" + ("" if namespaces is None else f" AND namespace IN ({', '.join('?' for _ in namespaces)})")
        with self._reading() as conn:
            rows = _run(conn, f"SELECT {STANDARD_COLUMNS} FROM namespace_standards {where} ORDER BY namespace", namespaces or ()).fetchall()
        return [_standard(row) for row in rows]

    def put_standard(self, tx: WriteTx, standard: Standard, stamp: tuple[str, str] = ("", ""), *, cleared: bool = False) -> None:
        """Write the standard's row with the change number of ``tx`` (so the mesh's feed ships
        it) and its version ``stamp`` (hlc, node); ``cleared`` keeps it as a tombstone."""
        conn = _tx_conn(tx)
        _run(conn, "DELETE FROM namespace_standards WHERE namespace = ?", (standard.namespace,))
        _run(
            conn,
            f"INSERT INTO namespace_standards ({STANDARD_COLUMNS}, seq, hlc, node, cleared) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                standard.namespace,
                json.dumps(standard.governance, sort_keys=True),
                standard.default_tier.value if standard.default_tier else None,
                standard.ttl_seconds,
                standard.retention_days,
                json.dumps(standard.required_tags),
                format_ts(standard.updated_at),
                standard.updated_by,
                tx.next_seq(),
                stamp[0],
                stamp[1],
                1 if cleared else 0,
            ),
        )

    def delete_standard(self, tx: WriteTx, namespace: str, stamp: tuple[str, str] = ("", "")) -> bool:
        """Clear a standard: its row stays as a tombstone (``cleared``) with this write's
        change number and stamp, so the clear replicates and an older set never revives it."""
        return bool(
            _run(
                _tx_conn(tx),
                "UPDATE namespace_standards SET cleared = 1, seq = ?, hlc = ?, node = ? WHERE namespace = ? AND cleared = 0",
                (tx.next_seq(), stamp[0], stamp[1], namespace),
            ).rowcount
        )

    def standard_stamp(self, tx: WriteTx, namespace: str) -> tuple[str, str] | None:
        """The version stamp (hlc, node) of the row held for ``namespace``, set or cleared."""
        row = _run(_tx_conn(tx), "SELECT hlc, node FROM namespace_standards WHERE namespace = ?", (namespace,)).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def standards_changed(self, conn: Any, since: int, upto: int) -> list[tuple[int, Standard, bool, str, str]]:
        """Standards (set or cleared) whose change number lies in ``(since, upto]``, with that
        number, whether cleared and their stamp: the mesh's feed reads these."""
        rows = _run(
            conn,
            f"SELECT {STANDARD_COLUMNS}, seq, cleared, hlc, node FROM namespace_standards "
            "WHERE seq > ? AND seq <= ? ORDER BY seq, namespace",
            (since, upto),
        ).fetchall()
        return [(int(r[8]), _standard(r[:8]), bool(r[9]), str(r[10]), str(r[11])) for r in rows]

    def standards_named(self, conn: Any, namespaces: Sequence[str]) -> list[tuple[int, Standard, bool, str, str]]:
        """The rows of these namespaces' standards (cleared ones too), shaped like
        :meth:`standards_changed`: what anti-entropy ships for a standard that differs."""
        if not namespaces:
            return []
        marks = ", ".join("?" for _ in namespaces)
        rows = _run(
            conn, f"SELECT {STANDARD_COLUMNS}, seq, cleared, hlc, node FROM namespace_standards WHERE namespace IN ({marks})", namespaces
        ).fetchall()
        return [(int(r[8] or 0), _standard(r[:8]), bool(r[9]), str(r[10] or ""), str(r[11] or "")) for r in rows]

    # -- pending actions ---------------------------------------------------------------------

    def insert_pending(self, tx: WriteTx, pending: PendingAction, stamp: tuple[str, str] = ("", "")) -> None:
        """Insert (or, for a replicated state, replace) a pending action with this write's
        change number and version stamp (hlc, node)."""
        conn = _tx_conn(tx)
        _run(conn, "DELETE FROM pending_actions WHERE id = ?", (pending.id,))
        _run(
            conn,
            f"INSERT INTO pending_actions ({PENDING_COLUMNS}, seq, hlc, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                pending.id,
                pending.action,
                pending.namespace,
                pending.rule_namespace,
                json.dumps(pending.payload),
                pending.requester.model_dump_json(),
                pending.requested_by,
                format_ts(pending.requested_at),
                pending.status,
                pending.decided_by,
                format_ts(pending.decided_at) if pending.decided_at else None,
                pending.reason,
                json.dumps(pending.result) if pending.result is not None else None,
                pending.error,
                tx.next_seq(),
                stamp[0],
                stamp[1],
            ),
        )

    def pending_twin(self, tx: WriteTx, pending: PendingAction) -> PendingAction | None:
        """A pending action still waiting that asks exactly what ``pending`` asks (same
        requester, action, namespace and payload): the same request sent again."""
        row = _run(
            _tx_conn(tx),
            f"SELECT {PENDING_COLUMNS} FROM pending_actions WHERE status = 'pending' AND action = ? AND namespace = ? "
            "AND COALESCE(requested_by, '') = ? AND payload = ? ORDER BY requested_at, id LIMIT 1",
            (pending.action, pending.namespace, pending.requested_by or "", json.dumps(pending.payload)),
        ).fetchone()
        return _pending(row) if row else None

    def pending_stamp(self, tx: WriteTx, pending_id: str) -> tuple[str, str, str] | None:
        """The status and version stamp (hlc, node) held for a pending action."""
        row = _run(_tx_conn(tx), "SELECT status, hlc, node FROM pending_actions WHERE id = ?", (pending_id,)).fetchone()
        return (str(row[0]), str(row[1]), str(row[2])) if row else None

    def pending_changed(self, conn: Any, since: int, upto: int) -> list[tuple[int, PendingAction, str, str]]:
        """Pending actions whose change number lies in ``(since, upto]``, with that number and stamp."""
        rows = _run(
            conn,
            f"SELECT {PENDING_COLUMNS}, seq, hlc, node FROM pending_actions WHERE seq > ? AND seq <= ? ORDER BY seq, id",
            (since, upto),
        ).fetchall()
        return [(int(r[14]), _pending(r[:14]), str(r[15]), str(r[16])) for r in rows]

    def pending_named(self, conn: Any, ids: Sequence[str]) -> list[tuple[int, PendingAction, str, str]]:
        """These pending actions, shaped like :meth:`pending_changed` (anti-entropy ships them)."""
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = _run(conn, f"SELECT {PENDING_COLUMNS}, seq, hlc, node FROM pending_actions WHERE id IN ({marks})", ids).fetchall()
        return [(int(r[14] or 0), _pending(r[:14]), str(r[15] or ""), str(r[16] or "")) for r in rows]

    def pending(self, pending_id: str) -> PendingAction | None:
        with self._reading() as conn:
            row = _run(conn, f"SELECT {PENDING_COLUMNS} FROM pending_actions WHERE id = ?", (pending_id,)).fetchone()
        return _pending(row) if row else None

    def pending_list(self, status: str | None, limit: int, roots: Sequence[str] | None = None) -> list[PendingAction]:
        """Oldest first (the order approvers work through a queue); with ``roots``, only the
        actions whose namespace lies in (or below) one of them, selected by the store so that
        other namespaces' actions never take the places of the caller's."""
        clauses: list[str] = ["status = ?"] if status else []
        params: list[Any] = [status] if status else []
        if roots is not None:
            clauses.append("(" + " OR ".join(["namespace = ? OR substr(namespace, 1, length(?)) = ?"] * len(roots) or ["1 = 0"]) + ")")
            for root in roots:
                params += [root, root + "/", root + "/"]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._reading() as conn:
            rows = _run(
                conn, f"SELECT {PENDING_COLUMNS} FROM pending_actions {where} ORDER BY requested_at, id LIMIT ?", [*params, limit]
            ).fetchall()
        return [_pending(row) for row in rows]

    def claim(
        self, tx: WriteTx, pending_id: str, status: str, who: str | None, at: str, reason: str | None, stamp: tuple[str, str] = ("", "")
    ) -> bool:
        """Move a ``pending`` action to ``status``; False when it was not pending any more
        (another approver got there first): the conditional update makes the decision once."""
        cursor = _run(
            _tx_conn(tx),
            "UPDATE pending_actions SET status = ?, decided_by = ?, decided_at = ?, reason = ?, seq = ?, hlc = ?, node = ? "
            "WHERE id = ? AND status = 'pending'",
            (status, who, at, reason, tx.next_seq(), stamp[0], stamp[1], pending_id),
        )
        return bool(cursor.rowcount == 1)

    def pending_status(self, tx: WriteTx, pending_id: str) -> str | None:
        """The status of a pending action as this write transaction sees it."""
        row = _run(_tx_conn(tx), "SELECT status FROM pending_actions WHERE id = ?", (pending_id,)).fetchone()
        return str(row[0]) if row else None

    def finish(
        self, tx: WriteTx, pending_id: str, status: str, result: dict[str, Any] | None, error: str | None, stamp: tuple[str, str] = ("", "")
    ) -> bool:
        """Record how applying an approved action ended (``applied`` or ``failed``); False
        when the action was no longer ``approved`` (its outcome was recorded already)."""
        cursor = _run(
            _tx_conn(tx),
            "UPDATE pending_actions SET status = ?, result = ?, error = ?, seq = ?, hlc = ?, node = ? WHERE id = ? AND status = 'approved'",
            (status, json.dumps(result) if result is not None else None, error, tx.next_seq(), stamp[0], stamp[1], pending_id),
        )
        return bool(cursor.rowcount == 1)


def _standard(row: Sequence[Any]) -> Standard:
    return Standard(
        namespace=row[0],
        governance=json.loads(row[1]),
        default_tier=row[2],
        ttl_seconds=row[3],
        retention_days=row[4],
        required_tags=json.loads(row[5]),
        updated_at=parse_ts(row[6]),
        updated_by=row[7],
    )


def _pending(row: Sequence[Any]) -> PendingAction:
    return PendingAction(
        id=row[0],
        action=row[1],
        namespace=row[2],
        rule_namespace=row[3],
        payload=json.loads(row[4]),
        requester=Principal.model_validate_json(row[5]),
        requested_by=row[6],
        requested_at=parse_ts(row[7]),
        status=row[8],
        decided_by=row[9],
        decided_at=parse_ts(row[10]) if row[10] else None,
        reason=row[11],
        result=json.loads(row[12]) if row[12] else None,
        error=row[13],
    )
