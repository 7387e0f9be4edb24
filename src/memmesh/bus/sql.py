"""One set of bus SQL for both backends.

Statements are written once with ``?`` placeholders and run on the store's own connections:
inside :meth:`Store.write` (SQLite's serialised group commit, or a PostgreSQL transaction)
for writes, and on the store's read connection otherwise. PostgreSQL gets ``%s`` and, where
the two differ, its own clause (``FOR UPDATE SKIP LOCKED``, ``pg_notify``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from memmesh.store.base import Store

Row = tuple[Any, ...]
"""One database row, as a plain tuple (columns are read by position)."""


class Rows:
    """A connection inside a read or a write, speaking ``?``-style SQL on either backend."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        changed: int = self.conn.execute(self._sql(sql), tuple(params)).rowcount
        return changed

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self.conn.execute(self._sql(sql), tuple(params)).fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in self.conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def one_then(self, sql: str, params: Sequence[Any], then: str) -> Row | None:
        """``sql``'s first row, with ``then`` (no parameters) sent right behind it in one
        round trip (PostgreSQL pipeline mode, on an autocommit connection). A Sync between
        them makes each its own transaction: ``sql`` has committed before ``then`` starts,
        and ``then`` runs whatever ``sql`` answered. Returns once both have answered."""
        with self.conn.pipeline() as pipe:
            first = self.conn.execute(self._sql(sql), tuple(params))
            pipe.sync()
            self.conn.execute(then)
        row = first.fetchone()
        return tuple(row) if row is not None else None

    @property
    def for_update(self) -> str:
        """Row-lock clause for rows the write goes on to change (SQLite's write is exclusive already)."""
        return " FOR UPDATE" if self.postgres else ""

    @property
    def skip_locked(self) -> str:
        """Row-claim clause: PostgreSQL lets concurrent claimers pass each other's rows; SQLite
        has one writer at a time, so a plain select inside the write is already exclusive."""
        return " FOR UPDATE SKIP LOCKED" if self.postgres else ""


class BusSql:
    """The store's connections, as :class:`Rows`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.postgres = store.dialect.name == "postgres"  # type: ignore[attr-defined]  # the shared SQL layer's dialect

    def contains(self, column: str) -> str:
        """A condition true when the text ``column`` contains the next parameter (a plain
        substring, no wildcards): ``strpos`` on PostgreSQL, ``instr`` on SQLite."""
        return f"strpos({column}, ?) > 0" if self.postgres else f"instr({column}, ?) > 0"

    @contextmanager
    def write(self) -> Iterator[Rows]:
        """One atomic unit of work, committed (durably) before the block's caller returns."""
        with self.store.write() as tx:
            yield Rows(tx.conn, self.postgres)

    @contextmanager
    def statement(self) -> Iterator[Rows]:
        """A pooled autocommit connection for ONE self-contained statement on PostgreSQL
        (a CTE that checks, writes and notifies): the statement is its own transaction,
        committed before it returns, in one round trip instead of BEGIN, the change feed's
        xid, the statements and COMMIT. Never for two statements that must commit together."""
        with self.store.reading() as conn:
            yield Rows(conn, self.postgres)

    @contextmanager
    def read(self) -> Iterator[Rows]:
        with self.store.reading() as conn:
            yield Rows(conn, self.postgres)  # autocommit on PostgreSQL: each poll sees new commits
