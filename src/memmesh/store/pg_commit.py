"""COMMIT and the wait for the WAL flush in one round trip (PostgreSQL, libpq pipeline mode).

An audited write whose commit was made asynchronous (:func:`memmesh.store.audit_sql.lock_chain`)
owes a wait for the disk flush after its commit. Sent one after the other, the two cost two
round trips, i.e. two network exchanges and two statements' worth of driver and server work
per append. Here both go in one network write, in libpq's pipeline mode:

    COMMIT · Flush · SELECT pg_logical_emit_message(true, …) · Sync

The protocol's ``Flush`` message makes the server send the COMMIT's answer as soon as the
commit record is written, before it runs the next statement, so the caller still learns of the
commit first and runs ``on_committed`` (the audit releases its in-process turn there, before
the flush: :meth:`memmesh.audit.log.AuditLog._take_turn`) while the server waits for the
flush. The flush statement runs in the implicit transaction the pipeline's ``Sync`` commits,
with the session's ``synchronous_commit`` (the appender's ``off`` was local to its own
transaction), so its ``ReadyForQuery`` comes once the WAL is flushed past it, and past the
appender's commit before it. Only then does this return.

Results are read only when libpq says they are complete (``is_busy`` false), waiting for the
socket with :func:`select.select`, which releases the GIL: a blocking ``PQgetResult`` would
hold it for the whole disk flush and stall every other thread of the process.
"""

from __future__ import annotations

import hashlib
import select
import weakref
from collections.abc import Callable, Sequence
from contextlib import suppress

import psycopg
from psycopg import pq

from memmesh.store.audit_sql import FLUSH_PG

_COMMIT = b"COMMIT"
_FLUSH = FLUSH_PG.encode()


def commit_then_flush(conn: psycopg.Connection, on_committed: Sequence[Callable[[], None]]) -> None:
    """Commit the open transaction of ``conn``, run ``on_committed``, and return once the WAL
    is durable past the commit, in one round trip. Raises the psycopg error of a failed COMMIT
    (nothing after it runs, the hooks neither) or of a failed flush (the commit stands)."""
    pg = conn.pgconn
    with conn.lock:
        pg.enter_pipeline_mode()
        try:
            pg.send_query_params(_COMMIT, None)
            pg.send_flush_request()
            pg.send_query_params(_FLUSH, None)
            pg.pipeline_sync()
            _send(pg)
            committed, synced = _result(pg, conn, commit=True)
            try:
                if committed is None:
                    for hook in on_committed:
                        hook()
            finally:
                flushed, synced_now = (None, True) if synced else _result(pg, conn)
                if not synced_now:
                    _sync(pg)
        finally:
            if pg.pipeline_status != pq.PipelineStatus.OFF:
                with suppress(psycopg.Error):  # a lost connection: the error that lost it is raised instead
                    pg.exit_pipeline_mode()
    if committed is not None:
        raise committed
    if flushed is not None:
        raise flushed


def _send(pg: pq.abc.PGconn) -> None:
    """Push the pipeline's messages out (the connection is non-blocking: flush until done)."""
    while pg.flush():
        select.select([], [pg.socket], [])


def _next(pg: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """libpq's next result, waiting (GIL released) until it is complete."""
    while pg.is_busy():
        select.select([pg.socket], [], [])
        pg.consume_input()
    return pg.get_result()


def _result(pg: pq.abc.PGconn, conn: psycopg.Connection, *, commit: bool = False) -> tuple[psycopg.Error | None, bool]:
    """Read one queued statement's results, up to libpq's end marker: its error, if any, and
    whether the pipeline's Sync answer came instead (after an error aborted the rest)."""
    error: psycopg.Error | None = None
    while (res := _next(pg)) is not None:
        if res.status == pq.ExecStatus.PIPELINE_SYNC:
            return error, True
        if error is not None:
            continue
        if res.status == pq.ExecStatus.FATAL_ERROR:
            error = psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
        elif res.status == pq.ExecStatus.PIPELINE_ABORTED:
            error = psycopg.errors.InFailedSqlTransaction("the flush was not run: the pipeline was aborted by an earlier error")
        elif commit and res.command_status == b"ROLLBACK":  # COMMIT of a transaction a failed statement aborted
            error = psycopg.errors.InFailedSqlTransaction("the transaction was rolled back at COMMIT: an earlier statement failed")
    return error, False


def _sync(pg: pq.abc.PGconn) -> None:
    """Consume the pipeline's Sync answer (ReadyForQuery: the flush transaction committed)."""
    while (res := _next(pg)) is None or res.status != pq.ExecStatus.PIPELINE_SYNC:
        pass


_BEGIN = b"BEGIN"
_INT8, _TEXT, _BOOL = 20, 25, 16


def _encode(value: object) -> tuple[bytes | None, int]:
    """A parameter in text format and its type (the statements here bind bigints, booleans and text)."""
    if value is None:
        return None, _TEXT
    if isinstance(value, bool):
        return (b"t" if value else b"f"), _BOOL
    if isinstance(value, int):
        return str(value).encode(), _INT8
    return str(value).encode(), _TEXT


_prepared: weakref.WeakKeyDictionary[psycopg.Connection, set[bytes]] = weakref.WeakKeyDictionary()
"""The statements :func:`begin_with` prepared on each connection (server-side prepared
statements live as long as the session: parsed and planned once, as psycopg's own)."""


def begin_with(conn: psycopg.Connection, sql: str, params: Sequence[object]) -> tuple[str | None, ...]:
    """``BEGIN`` and the transaction's first statement in one round trip (libpq pipeline mode);
    returns the statement's first row as text (``t``/``f`` for booleans; ``()`` for none).
    ``sql`` uses ``%s`` placeholders; it is prepared on the connection the first time (in the
    same round trip). On an error the transaction is left open and aborted (the caller's
    rollback ends it), as after any failed statement.

    psycopg deallocates every prepared statement of a connection after a ROLLBACK, DROP or
    ALTER on it (so that its own cache stays true), ours included: when the statement is
    gone, the transaction, which holds nothing yet (this was its first statement), is rolled
    back and the statement prepared again and run, one round trip more."""
    try:
        return _begin_with(conn, sql, params)
    except psycopg.errors.InvalidSqlStatementName:
        _prepared.pop(conn, None)
        conn.rollback()
        return _begin_with(conn, sql, params)


def _begin_with(conn: psycopg.Connection, sql: str, params: Sequence[object]) -> tuple[str | None, ...]:
    parts = sql.split("%s")
    numbered = "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)).encode() + parts[-1].encode()
    name = b"memmesh_first_" + hashlib.sha256(numbered).hexdigest()[:16].encode()
    encoded = [_encode(p) for p in params]
    pg = conn.pgconn
    with conn.lock:
        known = _prepared.setdefault(conn, set())
        prepare = name not in known
        pg.enter_pipeline_mode()
        try:
            if prepare:
                pg.send_prepare(name, numbered, [t for _, t in encoded])
            pg.send_query_params(_BEGIN, None)
            pg.send_query_prepared(name, [v for v, _ in encoded])
            pg.pipeline_sync()
            _send(pg)
            prepared, synced = _result(pg, conn) if prepare else (None, False)
            if prepare and prepared is None:
                known.add(name)
            begun, synced = (prepared, synced) if prepared is not None or synced else _result(pg, conn)
            row: tuple[str | None, ...] = ()
            failed: psycopg.Error | None = None
            if not synced:
                row_out: list[list[str | None]] = []
                failed, synced = _rows(pg, conn, row_out)
                row = tuple(row_out[0]) if row_out else ()
            if not synced:
                _sync(pg)
        finally:
            if pg.pipeline_status != pq.PipelineStatus.OFF:
                with suppress(psycopg.Error):
                    pg.exit_pipeline_mode()
    if begun is not None:
        raise begun
    if failed is not None:
        raise failed
    return row


def _rows(pg: pq.abc.PGconn, conn: psycopg.Connection, out: list[list[str | None]]) -> tuple[psycopg.Error | None, bool]:
    """:func:`_result` for a statement that returns rows: its first row, as text, into ``out``."""
    error: psycopg.Error | None = None
    while (res := _next(pg)) is not None:
        if res.status == pq.ExecStatus.PIPELINE_SYNC:
            return error, True
        if res.status == pq.ExecStatus.FATAL_ERROR and error is None:
            error = psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
        elif res.status == pq.ExecStatus.PIPELINE_ABORTED and error is None:
            error = psycopg.errors.InFailedSqlTransaction("the statement was not run: BEGIN failed")
        elif res.status == pq.ExecStatus.TUPLES_OK and res.ntuples and not out:
            out.append([None if (v := res.get_value(0, c)) is None else v.decode() for c in range(res.nfields)])
    return error, False
