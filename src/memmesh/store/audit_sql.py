"""The audit log's storage, written once for both backends.

Every statement is written with ``?`` placeholders and turned into ``%s`` for PostgreSQL,
so SQLite and PostgreSQL run the same SQL over the same two tables (schema 8). Functions
take a DB-API connection: a write transaction's ``tx.conn`` for appends (so an entry
commits or rolls back with the change it records), a read connection for verification.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

AUDIT_LOCK_KEY = 0x6D6D6175646974  # "mmaudit": serialises appends to the chain on PostgreSQL

COLUMNS = "idx, at, actor, action, namespace, target, detail, hash"


class AuditRow(NamedTuple):
    """One stored audit entry, exactly as the database holds it (a NamedTuple: one is made
    per append and per row read, and it is the row tuple the driver returns, typed)."""

    idx: int
    at: str
    actor: str
    action: str
    namespace: str | None
    target: str | None
    detail: str
    hash: str


@dataclass(frozen=True)
class Anchor:
    """What pruning left behind: entries below ``size`` are gone; ``last_hash`` is entry
    ``size - 1``'s hash and ``frontier`` the Merkle compact range over them (hex)."""

    size: int
    last_hash: str
    frontier: tuple[str, ...]


def _is_sqlite(conn: Any) -> bool:
    return isinstance(conn, sqlite3.Connection)


def _sql(conn: Any, text: str) -> str:
    return text if _is_sqlite(conn) else text.replace("?", "%s")


def run(conn: Any, text: str, params: tuple[Any, ...] = ()) -> Any:
    """Execute one statement with backend-appropriate placeholders; returns the cursor."""
    return conn.execute(_sql(conn, text), params)


_LOCK_PG = "SELECT pg_advisory_xact_lock(%s), false"
_LOCK_PG_SPLIT = (
    "SELECT pg_advisory_xact_lock(%s), CASE WHEN current_setting('fsync') = 'on' "
    "AND current_setting('synchronous_commit') <> 'off' "
    "THEN set_config('synchronous_commit', 'off', true) = 'off' ELSE false END"
)  # the same CASE as _SPLIT_PG below
"""The chain lock, and (when the server's commits wait for a disk flush) this transaction's
commit made asynchronous, in one round trip: the lock is then released as soon as the commit
record is written, not after the flush, and the appender waits for the flush afterwards
(``PostgresStore.make_commits_durable``). The second column says whether it did (the caller then owes the flush)."""

FLUSH_PG = "SELECT pg_logical_emit_message(true, 'memmesh_audit', '')"
"""One WAL record in a transaction of its own, committed with the session's
``synchronous_commit``: it returns once the WAL up to it is as durable as any commit is, so
every commit made before it (the appender's asynchronous one included) is durable too."""


def lock_chain(conn: Any, *, split: bool = False) -> bool:
    """Make this transaction the only appender until it ends.

    SQLite writers already hold the database's one write lock; PostgreSQL writers run
    concurrently, so they take an advisory transaction lock before reading the chain head.

    ``split`` (PostgreSQL, a caller that waits for the flush after its commit): commit
    asynchronously, so the lock is not held through the commit's disk flush, which then
    concurrent appenders share instead of taking turns at. Returns True when the commit was
    made asynchronous: the caller must wait for the flush (:data:`FLUSH_PG`) before it reports the append
    durable. Order stays safe: an appender chains only onto entries whose commit record is
    already in the WAL, and the WAL becomes durable in order, so a later entry is never
    durable while an earlier one is not.
    """
    if isinstance(conn, sqlite3.Connection):  # (not via _is_sqlite: once per write, one call less)
        return False
    row = conn.execute(_LOCK_PG_SPLIT if split else _LOCK_PG, (AUDIT_LOCK_KEY,)).fetchone()
    return bool(row and row[1])


def head(conn: Any) -> tuple[int, str] | None:
    """(index, hash) of the newest entry, or of the prune anchor when the log is empty."""
    row = run(conn, "SELECT idx, hash FROM audit_log ORDER BY idx DESC LIMIT 1").fetchone()
    if row is not None:
        return int(row[0]), str(row[1])
    found = anchor(conn)
    return (found.size - 1, found.last_hash) if found is not None else None


_INSERT_JSON_PG = (
    f"INSERT INTO audit_log ({COLUMNS}) SELECT (r->>0)::bigint, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, r->>7 "
    "FROM json_array_elements(%s::json) AS r"
)
"""Rows in :data:`COLUMNS` order as one JSON array: a multi-row insert in one statement (PostgreSQL)."""


def _json_rows(rows: Sequence[tuple[Any, ...]]) -> str:
    """The one parameter of :data:`_INSERT_JSON_PG`: however many rows, one prepared statement."""
    return json.dumps([list(r) for r in rows])


def insert_many(conn: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert rows, each a tuple in :data:`COLUMNS` order (an :class:`AuditRow` or a plain tuple)."""
    params = list(rows)
    text = _sql(conn, f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    if len(params) == 1:
        conn.execute(text, params[0])
    elif _is_sqlite(conn):
        conn.executemany(text, params)
    else:  # one statement, however many rows (a group's entries re-chained after a collision)
        conn.execute(_INSERT_JSON_PG, (_json_rows(params),))


def is_sqlite(conn: Any) -> bool:
    """Whether ``conn`` is a SQLite connection (where a failed statement leaves the transaction usable)."""
    return _is_sqlite(conn)


INSERT_NEW_SQLITE = f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idx) DO NOTHING"
"""One row as :func:`insert_new` inserts the first (SQLite placeholders), for an appender that runs it itself."""
_INSERT_NEW_PG = INSERT_NEW_SQLITE.replace("?", "%s")


def insert_new(conn: Any, rows: Sequence[tuple[Any, ...]]) -> bool:
    """Insert rows chained onto a head that was not read; False, with nothing inserted, when
    the first index is taken already (another process appended meanwhile: indexes are dense,
    so a later row can only collide if the first one does). ``ON CONFLICT DO NOTHING``
    rather than catching the error: on PostgreSQL a failed statement aborts the whole
    transaction, and both backends then run the same statement."""
    cursor = conn.execute(INSERT_NEW_SQLITE if isinstance(conn, sqlite3.Connection) else _INSERT_NEW_PG, rows[0])
    if cursor.rowcount != 1:
        return False
    if len(rows) > 1:
        insert_many(conn, rows[1:])
    return True


_SPLIT_PG = (
    "CASE WHEN current_setting('fsync') = 'on' AND current_setting('synchronous_commit') <> 'off' "
    "THEN set_config('synchronous_commit', 'off', true) = 'off' ELSE false END"
)
_LOCK_INSERT_PG = (
    "WITH chain_lock AS (SELECT pg_advisory_xact_lock(%s) AS locked, {split} AS split), "
    f"ins AS (INSERT INTO audit_log ({COLUMNS}) SELECT %s, %s, %s, %s, %s, %s, %s, %s FROM chain_lock "
    "ON CONFLICT (idx) DO NOTHING RETURNING idx) "
    "SELECT (SELECT split FROM chain_lock), EXISTS (SELECT 1 FROM ins)"
)
"""The lock, the split and the first row's insert in one statement, answering (split, inserted)
whether or not the row went in: the split is made by this statement either way (the insert
reads its one row from ``chain_lock``), and a caller whose row collided must still know it owes
the flush (asking again would see ``synchronous_commit`` already off and answer no)."""
_LOCK_INSERT_PG_SPLIT = _LOCK_INSERT_PG.format(split=_SPLIT_PG)
_LOCK_INSERT_PG_PLAIN = _LOCK_INSERT_PG.format(split="false")


def lock_and_insert_new(conn: Any, rows: Sequence[tuple[Any, ...]], *, split: bool = False) -> tuple[bool, bool]:
    """:func:`lock_chain` and :func:`insert_new` in one round trip (PostgreSQL): the lock is
    taken inside the statement, before its row is inserted, and the chain's lock is held for
    one round trip less (the statements under it are what serialises appenders). Returns
    (split, inserted): whether the commit was made asynchronous (see :func:`lock_chain`; it
    was, inserted or not), and whether the rows went in. Not inserted: the first index is
    taken, nothing was inserted, the lock is held: read the head (:func:`head`: its statement
    starts after the lock was taken, so it sees the real head) and insert again. SQLite:
    :func:`insert_new` (its write lock is held), never split."""
    if _is_sqlite(conn):
        return False, insert_new(conn, rows)
    found = conn.execute(_LOCK_INSERT_PG_SPLIT if split else _LOCK_INSERT_PG_PLAIN, (AUDIT_LOCK_KEY, *rows[0])).fetchone()
    if not found[1]:
        return bool(found[0]), False
    if len(rows) > 1:
        insert_many(conn, rows[1:])
    return bool(found[0]), True


_LOCK_INSERT_MANY_PG = (
    f"WITH chain_lock AS (SELECT pg_advisory_xact_lock(%s) AS locked, {_SPLIT_PG} AS split), "
    f"first AS (INSERT INTO audit_log ({COLUMNS}) SELECT %s, %s, %s, %s, %s, %s, %s, %s FROM chain_lock "
    "ON CONFLICT (idx) DO NOTHING RETURNING idx), "
    f"rest AS ({_INSERT_JSON_PG} WHERE EXISTS (SELECT 1 FROM first)) "
    "SELECT (SELECT split FROM chain_lock), EXISTS (SELECT 1 FROM first)"
)
""":data:`_LOCK_INSERT_PG` (split) for several rows at once: the first row as in it, the others
(a JSON array of rows in column order: one parameter, whatever their number, so the statement
is prepared once) only when the first went in. ``ON CONFLICT`` on the first row alone: it sees
rows committed while this statement waited for the lock (the statement's snapshot does not),
and indexes are dense, so when the first index is free every later one is; a plain insert of
the others then cannot half-apply a batch chained onto a stale head (a multi-row
``ON CONFLICT DO NOTHING`` would insert the rows past another process's entries)."""


def lock_and_insert_first(
    first: Callable[[str, Sequence[Any]], tuple[str | None, ...]], rows: Sequence[tuple[Any, ...]]
) -> tuple[bool, bool]:
    """:func:`lock_and_insert_new` (split) of ``rows`` in ONE statement, run by ``first``: a
    PostgreSQL write transaction's ``begin_with``, which sends BEGIN in the same round trip when
    this is the transaction's first statement (a group of appends, :mod:`memmesh.audit.group`,
    is then one round trip before its commit, however many entries it holds). Returns
    (split, inserted); not inserted: nothing went in and the lock is held (read the head and
    insert again)."""
    if len(rows) == 1:
        found = first(_LOCK_INSERT_PG_SPLIT, (AUDIT_LOCK_KEY, *rows[0]))
    else:
        found = first(_LOCK_INSERT_MANY_PG, (AUDIT_LOCK_KEY, *rows[0], _json_rows(rows[1:])))
    return found[0] == "t", found[1] == "t"


def rows(conn: Any, since: int = 0, until: int | None = None, batch: int = 20_000) -> Iterator[AuditRow]:
    """Entries with ``since <= idx`` (and ``idx < until``), oldest first, read in pages by index
    (keyset, so each page is one index range scan, however large the log)."""
    for r in raw_rows(conn, since, until, batch):
        yield AuditRow(*r)


def raw_rows(conn: Any, since: int = 0, until: int | None = None, batch: int = 20_000) -> Iterator[tuple[Any, ...]]:
    """:func:`rows` as plain tuples in column order (verification reads millions)."""
    last = since - 1
    while True:
        if until is None:
            page = run(conn, f"SELECT {COLUMNS} FROM audit_log WHERE idx > ? ORDER BY idx LIMIT ?", (last, batch)).fetchall()
        else:
            page = run(
                conn, f"SELECT {COLUMNS} FROM audit_log WHERE idx > ? AND idx < ? ORDER BY idx LIMIT ?", (last, until, batch)
            ).fetchall()
        yield from page
        if len(page) < batch:
            return
        last = page[-1][0]


def count(conn: Any) -> int:
    return int(run(conn, "SELECT COUNT(*) FROM audit_log").fetchone()[0])


def anchor(conn: Any) -> Anchor | None:
    row = run(conn, "SELECT size, last_hash, frontier FROM audit_anchor WHERE id = 1").fetchone()
    if row is None:
        return None
    frontier = tuple(h for h in str(row[2]).split(",") if h)
    return Anchor(size=int(row[0]), last_hash=str(row[1]), frontier=frontier)


def prune_below(conn: Any, new_anchor: Anchor) -> int:
    """Delete entries below the anchor's size and store the anchor; returns rows deleted."""
    deleted = run(conn, "DELETE FROM audit_log WHERE idx < ?", (new_anchor.size,)).rowcount
    run(conn, "DELETE FROM audit_anchor WHERE id = 1")
    run(
        conn,
        "INSERT INTO audit_anchor (id, size, last_hash, frontier) VALUES (1, ?, ?, ?)",
        (new_anchor.size, new_anchor.last_hash, ",".join(new_anchor.frontier)),
    )
    return int(deleted)


@contextmanager
def reading(store: Any) -> Iterator[Any]:
    """A read connection of ``store`` (committed data only), whichever backend it is."""
    with store.reading() as conn:  # both backends offer it; reads never take the write lock
        if _is_sqlite(conn):
            if conn.in_transaction:  # an in-memory store's one connection, inside a write
                yield conn
                return
            conn.execute("BEGIN")  # one snapshot for a whole verification pass (WAL readers never block writers)
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
            return
        with conn.transaction():  # one snapshot for a whole verification pass
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn
