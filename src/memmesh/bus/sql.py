"""One set of bus SQL for both backends.

Statements are written once with ``?`` placeholders and run on the store's own connections:
inside :meth:`Store.write` (SQLite's serialised group commit, or a PostgreSQL transaction)
for writes, and on the store's read connection otherwise. PostgreSQL gets ``%s`` and, where
the two differ, its own clause (``FOR UPDATE SKIP LOCKED``, ``pg_notify``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any

from memmesh.audit.capture import unwrap
from memmesh.audit.group import GroupCommit
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

    def many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Execute once per parameter row (pipelined in one round trip on PostgreSQL)."""
        self.conn.cursor().executemany(self._sql(sql), [tuple(p) for p in params])

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


FLUSH_PG = "SELECT pg_logical_emit_message(true, 'memmesh_bus', '')"
"""Run as its own transaction after an asynchronous commit, on the same connection: it writes
one WAL record and commits with the session's ``synchronous_commit``, so it returns once the
WAL up to it (the earlier commit included) is as durable as any commit would be."""
FLUSH_CHECK_S = 30.0
"""How often the bus re-reads whether the server's commits wait for the disk (see BusSql.flush_wanted)."""


class Statement:
    """One self-contained bus statement handed to the group commit (:meth:`BusSql.grouped`).

    ``sql``/``params``: the statement as it runs inside a group's transaction (it checks
    token, lease and fencing itself and answers no row, or a refusing row, when it refuses:
    a refusal is an answer, not an error). ``durable``: its caller is told the change is
    stored, so its group waits for the disk flush before answering. ``lock``: the order in
    which the group runs its statements (see :meth:`BusSql._write_group`). ``alone``: the
    same statement run on its own (as it ran before groups), for a group that failed.
    ``quick``: the same statement with the same parameters, also selecting
    ``set_config('synchronous_commit', 'off', true)`` (a column its caller does not read), as
    it runs in a group whose transaction commits asynchronously: the statements set that
    themselves, so the group sends no ``SET LOCAL`` of its own. Should none of them evaluate
    it (each refused, answering no row), the group commits as the session does: more
    waiting, never less durability."""

    __slots__ = ("alone", "durable", "lock", "params", "quick", "sql")

    def __init__(
        self, sql: str, params: Sequence[Any], durable: bool, lock: tuple[int, str, int], alone: Callable[[Rows], Row | None], quick: str
    ) -> None:
        self.sql = sql
        self.params = tuple(params)
        self.durable = durable
        self.lock = lock
        self.alone = alone
        self.quick = quick


class _Write:
    """:meth:`BusSql.write`'s block: the store's write block, its transaction as :class:`Rows`.
    A class, not a ``@contextmanager`` generator: every send, claim and complete opens one,
    and the generator's machinery cost more than the block itself (issue 24)."""

    __slots__ = ("_block", "_postgres")

    def __init__(self, block: AbstractContextManager[Any], postgres: bool) -> None:
        self._block = block
        self._postgres = postgres

    def __enter__(self) -> Rows:
        return Rows(self._block.__enter__().conn, self._postgres)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> bool | None:
        return self._block.__exit__(kind, error, trace)


SETTLED = ("IDLE", "INERROR", "INTRANS")
"""A group's connection after an error in one of these states (psycopg's
``pq.TransactionStatus`` names) has written nothing: the Sync rolled its transaction back
(IDLE), or a ROLLBACK still will."""


class BusSql:
    """The store's connections, as :class:`Rows`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._raw = unwrap(store)
        self.postgres = store.dialect.name == "postgres"  # type: ignore[attr-defined]  # the shared SQL layer's dialect
        self._flush_checked: tuple[float, bool] | None = None
        self.group: GroupCommit[Statement, Row | BaseException | None] = GroupCommit(self._write_group)
        """PostgreSQL: concurrent single-statement writes of this process's threads share
        transactions (see :meth:`grouped`); its ``batches`` counts the transactions."""
        self.refused_groups = 0
        """Groups whose transaction failed (and wrote nothing) and whose statements ran one by one."""

    def flush_wanted(self, rows: Rows) -> bool:
        """Whether commits on this server wait for a disk flush (``fsync`` on and
        ``synchronous_commit`` not off), read at most every FLUSH_CHECK_S. Only then is a write
        split into an asynchronous commit and a wait for the flush (FLUSH_PG): where a commit
        only writes to the operating system, holding row locks through it costs little, and
        the second statement would cost more than it saves."""
        now = time.monotonic()
        checked = self._flush_checked
        if checked is None or now - checked[0] > FLUSH_CHECK_S:
            found = rows.one("SELECT current_setting('fsync') = 'on' AND current_setting('synchronous_commit') <> 'off'")
            checked = self._flush_checked = (now, bool(found and found[0]))
        return checked[1]

    def grouped(self, statement: Statement) -> Row | None:
        """Run one self-contained statement (PostgreSQL), sharing a transaction with the
        statements other threads of this process hand in meanwhile (group commit: one
        transaction, one commit record and one disk flush per group, see :meth:`_write_group`).
        Returns its first row (None for none) once it is committed, and durable when
        ``statement.durable``. A thread with a write transaction open runs it on its own: a
        group's leader must never wait for locks a follower holds."""
        writing = getattr(unwrap(self.store), "in_write", None)
        if writing is None or writing():
            with self.statement() as rows:
                return statement.alone(rows)
        got = self.group.submit(statement)
        if isinstance(got, BaseException):
            raise got
        return got

    def _write_group(self, items: Sequence[Statement], committed: Callable[[], None]) -> list[Row | BaseException | None]:
        """Write one group (the group commit's leader): its statements in one round trip
        (pipeline mode) and one transaction, with no BEGIN or COMMIT statement: in the
        extended query protocol everything up to the pipeline's Sync is one transaction,
        committed at the Sync or, on any error, rolled back whole. The commit is asynchronous
        when commits wait for the disk (each statement in its ``quick`` form, which says so:
        no ``SET LOCAL`` to send);
        ``committed`` then hands the lead on, and one FLUSH_PG waits for the flush that makes
        the group durable (only when it holds a durable statement). Where commits do not wait
        for a disk, a group holding a durable statement commits as the session commits (its
        WAL written at its commit), one of deliveries only asynchronously, as each alone would.

        Statements run in lock order: those that lock no conversation row (claims, completes:
        task rows by key, ``SKIP LOCKED``) first, by conversation id and task seq (the order
        ``complete_many`` locks its rows in, so a group and a batch cannot deadlock), then
        sends by conversation id. A group
        waiting for a conversation row another process's group holds then holds no row
        that group may still need, so groups of two processes cannot wait for each other
        in a cycle. Should a transaction fail all the same (deadlock, serialization, a
        statement's error) on a connection still open, it wrote nothing: its statements run
        again one by one, each answered with its own result or error. An error that loses the
        connection (the outcome unknown: the commit may have happened) goes to every caller
        of the group."""
        if len(items) == 1:  # a lone statement: as it always ran, one round trip (its flush pipelined behind it)
            with self.statement() as rows:
                return [items[0].alone(rows)]
        import psycopg  # PostgreSQL only (groups run there): a SQLite-only install has no psycopg

        from memmesh.store.postgres_conn import forget_prepared

        order = sorted(range(len(items)), key=lambda i: items[i].lock)
        found: list[Row | BaseException | None] = [None] * len(items)
        failed = False
        with self.store.reading() as conn:
            rows = Rows(conn, True)
            flush = self.flush_wanted(rows)
            durable = any(item.durable for item in items)
            quick = flush or not durable  # (deliveries alone never wait for the disk: DELIVERY_COMMIT)
            try:
                with conn.pipeline():
                    try:
                        texts = [(i, rows._sql(items[i].quick if quick else items[i].sql)) for i in order]
                        cursors = [(i, conn.execute(sql, items[i].params)) for i, sql in texts]
                    except BaseException:  # raised before the Sync (a parameter psycopg cannot send, an interrupt):
                        conn.execute("ROLLBACK")  # the statements already queued must not commit at the Sync
                        raise
            except psycopg.Error:
                status = conn.info.transaction_status
                if conn.closed or conn.broken or status.name not in SETTLED:
                    raise  # the connection is gone (or its state unknown): the outcome is the caller's to learn
                if status.name != "IDLE":
                    conn.execute("ROLLBACK")
                forget_prepared(conn)  # the failed pipeline may have skipped a Parse psycopg counts as done
                failed = True
            if not failed:
                for i, cursor in cursors:
                    row = cursor.fetchone()
                    found[i] = tuple(row) if row is not None else None
                committed()  # the next group may start while this one waits for its flush
                if flush and durable:
                    conn.execute(FLUSH_PG).fetchall()
                return found
        self.refused_groups += 1
        committed()
        for i, item in enumerate(items):  # nothing was written: each statement on its own
            try:
                with self.statement() as rows:
                    found[i] = item.alone(rows)
            except Exception as exc:
                found[i] = exc
        return found

    def contains(self, column: str) -> str:
        """A condition true when the text ``column`` contains the next parameter (a plain
        substring, no wildcards): ``strpos`` on PostgreSQL, ``instr`` on SQLite."""
        return f"strpos({column}, ?) > 0" if self.postgres else f"instr({column}, ?) > 0"

    def write(self) -> _Write:
        """One atomic unit of work, committed (durably) before the block's caller returns.

        On the store under the audit's wrapper (:func:`unwrap`): a bus write records no audit
        entry (it hands its block only the connection, never the audited transaction), so
        the wrapper's set-up of an entry list for it, per send, claim and complete, bought
        nothing. Inside another write on the same thread it joins that unit as before."""
        return _Write(self._raw.write(), self.postgres)

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
