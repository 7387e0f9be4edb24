"""COMMIT and the flush wait in one round trip (memmesh.store.pg_commit): the commit's answer
still comes first (the hooks run on it), a failed COMMIT raises its own error and runs no hook,
and the connection is usable afterwards. A real PostgreSQL (scripts/pg_test_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from memmesh.store.pg_commit import begin_with, commit_then_flush
from pg_support import fresh_pg_database


@pytest.fixture
def conn() -> Iterator[psycopg.Connection]:
    """An autocommit connection (as the store's pooled ones) to a fresh database."""
    with fresh_pg_database("mm_pipeline") as url, psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE t (n int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)")
        yield c


def test_the_commit_stands_and_the_hooks_run_once_it_is_answered(conn: psycopg.Connection) -> None:
    ran: list[str] = []
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (1)")
    commit_then_flush(conn, [lambda: ran.append("committed")])
    assert ran == ["committed"]
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
    # (durability, on a cluster that flushes, is tested in test_pg_append_flush)
    with conn.transaction():  # the connection is back out of pipeline mode and usable as before
        conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_a_failed_commit_raises_its_error_runs_no_hook_and_keeps_nothing(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO t VALUES (1)")
    ran: list[str] = []
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (1)")  # deferred: the unique check fails at COMMIT
    with pytest.raises(psycopg.errors.UniqueViolation):
        commit_then_flush(conn, [lambda: ran.append("committed")])
    assert ran == []
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_a_transaction_a_failed_statement_aborted_is_not_reported_committed(conn: psycopg.Connection) -> None:
    """COMMIT of an aborted transaction answers ROLLBACK, not an error: that is an error here."""
    ran: list[str] = []
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (5)")
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT 1 / 0")
    with pytest.raises(psycopg.errors.InFailedSqlTransaction, match="rolled back at COMMIT"):
        commit_then_flush(conn, [lambda: ran.append("committed")])
    assert ran == []
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_a_hook_that_fails_still_leaves_the_connection_clean(conn: psycopg.Connection) -> None:
    """The commit stands (it was answered); the hook's error is raised after the flush is read."""

    def boom() -> None:
        raise RuntimeError("hook failed")

    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (7)")
    with pytest.raises(RuntimeError, match="hook failed"):
        commit_then_flush(conn, [boom])
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert conn.execute("SELECT n FROM t").fetchall() == [(7,)]


def test_begin_with_opens_the_transaction_and_runs_the_statement_in_one_round_trip(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE u (n bigint, s text, maybe text, b boolean)")
    row = begin_with(conn, "INSERT INTO u SELECT %s, %s, %s, %s RETURNING n, s, maybe, b", (2**40, "it's 100%s", None, True))
    assert row == (str(2**40), "it's 100%s", None, "t")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS  # begun, not committed
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM u").fetchone() == (0,)


def test_begin_with_a_failing_statement_raises_it_and_leaves_an_aborted_transaction(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero):
        begin_with(conn, "SELECT 1 / %s", (0,))
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    conn.rollback()
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_begin_with_prepares_again_after_psycopg_deallocated_everything(conn: psycopg.Connection) -> None:
    """psycopg sends DEALLOCATE ALL after a rollback on a connection where it prepared
    statements: the next begin_with finds its statement gone, and still runs."""
    sql = "SELECT %s::bigint + 1"
    assert begin_with(conn, sql, (1,)) == ("2",)
    conn.execute("ROLLBACK")
    conn.execute("DEALLOCATE ALL")
    assert begin_with(conn, sql, (41,)) == ("42",)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    conn.execute("COMMIT")
