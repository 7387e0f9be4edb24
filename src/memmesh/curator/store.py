"""The curator's own tables (schema 12): runs and the changes each run made (the run lease
is a row of the shared ``leases`` table, :class:`memmesh.schedule.Lease`).

One set of ``?``-style SQL for both backends, run on the store's own connections: inside
``Store.write()`` for writes (so a batch of memory changes and the change records that undo
them commit together) and on the read connection otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from memmesh.store.base import Store, WriteTx


class Rows:
    """A connection inside a read or a write, speaking ``?``-style SQL on either backend."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        changed: int = self.conn.execute(self._sql(sql), tuple(params)).rowcount
        return changed

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.conn.execute(self._sql(sql), tuple(params)).fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql


@dataclass(frozen=True)
class Change:
    """One change a run made: what rollback checks (``after``) and puts back (``before``)."""

    n: int
    kind: str
    memory_id: str
    namespace: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


RUN_COLUMNS = "id, started_at, completed_at, dry_run, namespace, actor, scopes, report, rolled_back_at, rollback_report"


class CuratorDb:
    """Runs and changes in the service's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.postgres = store.dialect.name == "postgres"  # type: ignore[attr-defined]  # the shared SQL layer's dialect

    def rows(self, tx: WriteTx) -> Rows:
        """The curator SQL inside a write transaction the caller holds."""
        return Rows(tx.conn, self.postgres)

    @contextmanager
    def read(self) -> Iterator[Rows]:
        with self.store.reading() as conn:
            yield Rows(conn, self.postgres)

    # -- runs -------------------------------------------------------------------------------

    def start_run(
        self, rows: Rows, run_id: str, started: float, dry_run: bool, namespace: str | None, actor: str | None, scopes: Any
    ) -> None:
        rows.run(
            "INSERT INTO curator_runs (id, started_at, dry_run, namespace, actor, scopes, report) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, started, 1 if dry_run else 0, namespace, actor, json.dumps(scopes), "{}"),
        )

    def finish_run(self, rows: Rows, run_id: str, completed: float, report: dict[str, Any]) -> None:
        rows.run("UPDATE curator_runs SET completed_at = ?, report = ? WHERE id = ?", (completed, json.dumps(report), run_id))

    def run_row(self, run_id: str) -> tuple[Any, ...] | None:
        with self.read() as rows:
            return rows.one(f"SELECT {RUN_COLUMNS} FROM curator_runs WHERE id = ?", (run_id,))

    def run_rows(self, limit: int) -> list[tuple[Any, ...]]:
        with self.read() as rows:
            return rows.all(f"SELECT {RUN_COLUMNS} FROM curator_runs ORDER BY started_at DESC, id DESC LIMIT ?", (limit,))

    def mark_rolled_back(self, rows: Rows, run_id: str, at: float, report: dict[str, Any]) -> bool:
        """Claim the rollback (once: a second caller finds it done and changes nothing)."""
        return (
            rows.run(
                "UPDATE curator_runs SET rolled_back_at = ?, rollback_report = ? WHERE id = ? AND rolled_back_at IS NULL",
                (at, json.dumps(report), run_id),
            )
            == 1
        )

    def set_rollback_report(self, rows: Rows, run_id: str, report: dict[str, Any]) -> None:
        rows.run("UPDATE curator_runs SET rollback_report = ? WHERE id = ?", (json.dumps(report), run_id))

    # -- changes ----------------------------------------------------------------------------

    def add_changes(self, rows: Rows, run_id: str, changes: Sequence[Change]) -> None:
        for c in changes:
            rows.run(
                "INSERT INTO curator_changes (run_id, n, kind, memory_id, namespace, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, c.n, c.kind, c.memory_id, c.namespace, _dump(c.before), _dump(c.after)),
            )

    def changes(self, run_id: str) -> list[Change]:
        with self.read() as rows:
            found = rows.all(
                "SELECT n, kind, memory_id, namespace, before, after FROM curator_changes WHERE run_id = ? ORDER BY n", (run_id,)
            )
        return [Change(int(n), kind, mid, ns, _load(before), _load(after)) for n, kind, mid, ns, before, after in found]

    def change_namespaces(self, run_id: str) -> list[str]:
        with self.read() as rows:
            return [r[0] for r in rows.all("SELECT DISTINCT namespace FROM curator_changes WHERE run_id = ?", (run_id,))]

    # -- proposals queued for approval --------------------------------------------------------

    def proposals(self, key: str) -> dict[str, tuple[str, str]]:
        """The changes earlier runs queued for approval that still bar the same change: the
        ones waiting (``pending``, or ``approved`` and being applied) and the ``rejected``
        ones, as fingerprint (the payload's ``key``) -> (pending id, status), the newest
        decision winning. Applied and failed ones do not bar it: what they changed is gone
        or was never done, so the plan proposing it again is news."""
        found: dict[str, tuple[str, str]] = {}
        with self.read() as rows:
            queued = rows.all(
                "SELECT id, status, payload FROM pending_actions WHERE status IN ('pending', 'approved', 'rejected') "
                "AND payload LIKE ? ORDER BY requested_at, id",
                (f'%"{key}"%',),
            )
        for pending_id, status, payload in queued:
            fingerprint = json.loads(payload).get(key)
            if isinstance(fingerprint, str):
                found[fingerprint] = (str(pending_id), str(status))
        return found

    # -- links (rollback of a link the curator added) ----------------------------------------

    def drop_link(self, rows: Rows, source_id: str, target_id: str, relation: str) -> int:
        """Remove a link the curator added (rollback); the caller records the link tombstone
        (memmesh.store.link_removals), so peers remove it too (docs/federation.md)."""
        return rows.run("DELETE FROM links WHERE source_id = ? AND target_id = ? AND relation = ?", (source_id, target_id, relation))


def _dump(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _load(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    loaded: dict[str, Any] = json.loads(value)
    return loaded


__all__ = ["Change", "CuratorDb", "Rows"]
