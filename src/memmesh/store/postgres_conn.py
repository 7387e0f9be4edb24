"""Connections to PostgreSQL: the reconnecting pool, snapshots, and driver errors turned
into memmesh errors that name the server and what to check.

Split from :mod:`memmesh.store.postgres` (which holds the store and its queries) because
none of it is about memmesh's data: it is how a node stays usable while the server is slow,
restarting or refusing it.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from memmesh.errors import InvalidInputError, MemmeshError, StorageError, UnavailableError

KEEPALIVES = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2", "keepalives_count": "3"}
"""libpq TCP keepalives (unless the URL sets its own): a dead server is noticed in ~11 s."""
POOL_WAIT_S = 1.0
"""How long a request waits for a pooled connection before checking the server is up."""


def describe_server(url: str) -> str:
    """``user@host:port/dbname`` for messages: where we tried to go, never the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise InvalidInputError(f"bad PostgreSQL URL: {exc}; write postgresql://user:password@host:5432/dbname") from None
    host = str(parts.get("host") or "localhost")
    if host.startswith("/"):
        host = f"socket {host}"
    port = parts.get("port") or "5432"
    return f"{parts.get('user') or '(default user)'}@{host}:{port}/{parts.get('dbname') or '(default db)'}"


def _one_line(text: str) -> str:
    """A line of libpq's message as one line of ours: libpq indents its hints with a tab
    (``\tIs the server running on that host …``), which printed as a run of spaces."""
    return " ".join(text.split())


def connect_error(exc: psycopg.OperationalError, where: str) -> MemmeshError:
    """A failed connection → the memmesh error saying what to check (credentials, database, slots)."""
    text = _one_line((str(exc).strip().splitlines() or [type(exc).__name__])[-1])
    lowered = str(exc).lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered or "authentication failed" in lowered:
        return StorageError(
            f"PostgreSQL at {where} refused the credentials ({text}); check the user and password in the URL, PGPASSWORD or ~/.pgpass"
        )
    if "does not exist" in lowered and "database" in lowered:
        return StorageError(f"PostgreSQL at {where}: {text}; create it first (createdb, or CREATE DATABASE)")
    if "role" in lowered and "does not exist" in lowered:
        return StorageError(f"PostgreSQL at {where}: {text}; check the user name in the URL")
    if "too many clients" in lowered or "too many connections" in lowered or "remaining connection slots" in lowered:
        return UnavailableError(
            f"PostgreSQL at {where} has no free connection slot ({text}); the server's max_connections is "
            "used up: lower storage.pool_size on the nodes, or raise max_connections on the server, then try again"
        )
    if "starting up" in lowered or "shutting down" in lowered or "recovery" in lowered:
        return UnavailableError(f"PostgreSQL at {where} is not accepting connections yet ({text}); try again shortly")
    return UnavailableError(
        f"cannot connect to PostgreSQL at {where}: {text}; "
        "check that the server is running and the host, port and firewall allow the connection"
    )


def translate(exc: psycopg.Error, where: str, busy_timeout_ms: int, statement_timeout_ms: int) -> MemmeshError:
    """One psycopg error → the memmesh error a user can act on."""
    if isinstance(exc, MemmeshError):
        return exc
    message = _one_line((str(exc).strip().splitlines() or [type(exc).__name__])[0])
    if isinstance(exc, pg_errors.LockNotAvailable):
        return UnavailableError(
            f"PostgreSQL at {where}: a lock was not granted within {busy_timeout_ms} ms "
            "(storage.busy_timeout_ms): another transaction is writing the same memory or holds a table lock; "
            "nothing was stored; try again"
        )
    if isinstance(exc, pg_errors.DeadlockDetected | pg_errors.SerializationFailure):
        return UnavailableError(
            f"PostgreSQL at {where}: this write and a concurrent one waited on each other, so this one was "
            "cancelled and nothing was stored; try again"
        )
    if isinstance(exc, pg_errors.QueryCanceled):
        return UnavailableError(
            f"PostgreSQL at {where}: a statement ran longer than storage.statement_timeout_ms "
            f"({statement_timeout_ms} ms): the server is overloaded or a table is locked; try again, "
            "or raise storage.statement_timeout_ms"
        )
    if isinstance(exc, psycopg.DataError):
        return InvalidInputError(f"PostgreSQL refused a value: {message}")
    if isinstance(exc, psycopg.OperationalError):
        return UnavailableError(f"lost the connection to PostgreSQL at {where}: {message}; check that the server is up, then try again")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return StorageError(f"PostgreSQL at {where}: {message}; grant the memmesh role rights on its tables")
    return StorageError(f"database error on PostgreSQL at {where}: {message}")


SNAPSHOT_LIMITS = "SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL statement_timeout = 600000"
"""Read-only snapshots hold no row locks and no transaction id, so they may stay open while
the client converts rows (a first load of every vector) or writes elsewhere (migrate); they
get ten minutes per statement instead of storage.statement_timeout_ms."""


@contextmanager
def snapshot_tx(conn: psycopg.Connection) -> Iterator[None]:
    """A REPEATABLE READ transaction (or nothing, when already inside a snapshot)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(SNAPSHOT_LIMITS)
        yield


CHECK_IDLE_S = 2.0
"""A pooled connection idle this long is checked before it is handed out (a server restart
takes longer than this, so a connection it killed is caught before use)."""


class _QuickAttempt(AttemptWithBackoff):
    """Reconnect attempts every ~0.25 s instead of psycopg_pool's 1, 2, 4, 8 … s backoff."""

    INITIAL_DELAY = 0.25
    DELAY_BACKOFF = 1.0


class QuickReconnectPool(ConnectionPool):
    """A pool that retries a lost server every quarter second, so the first request after a
    PostgreSQL restart succeeds within about a second instead of 15 (the default backoff had
    grown to 8-16 s during a 45 s outage). Relies on psycopg_pool's ``_add_connection``
    (pinned in constraints.txt; the restart test guards it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()
        self._lost_at = float("-inf")
        kwargs.setdefault("check", self._check_if_idle)
        super().__init__(*args, **kwargs)

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _QuickAttempt(timeout=self.reconnect_timeout), growing)

    def putconn(self, conn: psycopg.Connection) -> None:
        now = time.monotonic()
        if conn.closed or conn.broken:
            # The server dropped this one: a restart, a failover or pg_terminate_backend drops
            # its siblings too. Each of them would fail one request of its own (six in a row
            # were measured after a kill), so every connection idle since before now is checked.
            self._lost_at = now
        self._returned[conn] = now
        super().putconn(conn)

    def _check_if_idle(self, conn: psycopg.Connection) -> None:
        """Check a connection (one round trip) only when it sat idle for CHECK_IDLE_S or more,
        or since before another connection was found dropped: one that was just used is alive,
        and checking it on every checkout doubled the round trips of short statements (the
        bus). A closed or broken one is always refused."""
        if conn.closed or conn.broken:
            raise psycopg.OperationalError("the connection is closed")
        used = self._returned.get(conn)
        if used is None or used <= self._lost_at or time.monotonic() - used >= CHECK_IDLE_S:
            ConnectionPool.check_connection(conn)


def forget_prepared(conn: psycopg.Connection) -> None:
    """After a failed pipeline on a connection still open: drop every prepared statement, on
    the server and in psycopg's cache, so both agree again.

    psycopg (3.3.9) records a statement as prepared when it queues its Parse; should an
    earlier statement of the same pipeline fail, the server skips that Parse, yet the cache
    keeps the name, and every later use of that statement on this connection fails with
    "prepared statement _pg3_N does not exist". psycopg clears its cache when it sees a
    ``DEALLOCATE ALL`` succeed, but it checks only a statement text new to its cache (a text
    it has run before skips the check), so each resync sends a text of its own (a numbered
    comment). Errors are rare, so the cost (re-preparing a few statements) is too. A
    connection that cannot even run this is broken, and the pool discards it."""
    if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return
    with suppress(psycopg.Error):
        conn.execute(f"DEALLOCATE ALL /* memmesh resync {next(_RESYNCS)} */")


_RESYNCS = itertools.count(1)
"""Numbers forget_prepared's statements, so psycopg sees each as a new text."""


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
