"""A pipeline that fails must not break the statements that run after it on the same pooled
connection (PostgreSQL).

psycopg (3.3.9) prepares a statement on its sixth use, and in pipeline mode it counts the
statement as prepared as soon as it queues the Parse. When an earlier statement of the same
pipeline fails, the server skips that Parse: psycopg still believes the statement exists, and
every later use on that connection fails with ``prepared statement "_pg3_N" does not exist``
(found under load: single ``complete`` calls failing after a group commit's pipeline lost a
deadlock to a concurrent ``complete_many``). The pool and the bus's group commit now resync
the connection after such a failure. Both tests use one pooled connection, so the next call
is sure to get the connection the failure happened on; each fails without the resync.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.errors import MemmeshError


def _plain_dsn(memmesh_url: str) -> str:
    return memmesh_url.replace("postgresql+memmesh://", "postgresql://", 1)


INSERT = "INSERT INTO pipeline_probe (n) VALUES (?) RETURNING n"
FAILS = "SELECT 1 / ?"
"""Fails with 0 at execution, after its Parse has run: the statements behind it are skipped."""


@pytest.fixture
def one_connection(pg_database: str, open_memory: Callable[..., Memory]) -> Memory:
    with psycopg.connect(_plain_dsn(pg_database), autocommit=True) as conn:
        conn.execute("CREATE TABLE pipeline_probe (n int PRIMARY KEY)")
    return open_memory(pg_database, clock=system_clock, storage={"pool_size": 1})


def _stored(pg_database: str) -> list[int]:
    with psycopg.connect(_plain_dsn(pg_database), autocommit=True) as conn:
        return [n for (n,) in conn.execute("SELECT n FROM pipeline_probe ORDER BY n").fetchall()]


def test_a_failed_group_leaves_its_connection_usable(pg_database: str, one_connection: Memory) -> None:
    from memmesh.bus.sql import Rows, Statement

    sql = one_connection.service.bus.sql

    def statement(text: str, n: int) -> Statement:
        return Statement(text, (n,), True, (0, "", n), lambda rows: Rows.one(rows, text, (n,)), text)

    sql._write_group([statement(FAILS, 0), statement(INSERT, 100)], lambda: None)  # a failure while nothing is prepared yet
    for n in (1, 3):  # with the lone rerun of INSERT above, five uses of INSERT: it is prepared on its next use
        assert sql._write_group([statement(FAILS, 1), statement(INSERT, n), statement(INSERT, n + 1)], lambda: None)
    with one_connection.service.store.reading() as conn:
        assert not conn._prepared._names, "INSERT is not prepared yet: the failing group below prepares it"
    refused = sql.refused_groups
    # INSERT first in the group, FAILS first in its pipeline (lock order): INSERT's Parse is the
    # one the server skips, and INSERT is the first statement rerun alone on that connection
    found = sql._write_group([statement(INSERT, 10), statement(FAILS, 0)], lambda: None)
    assert sql.refused_groups == refused + 1
    assert found[0] == (10,), f"the failed group's other statement ran alone and was stored: {found[0]!r}"
    assert isinstance(found[1], MemmeshError) and "division by zero" in str(found[1])
    assert sql._write_group([statement(INSERT, 11), statement(INSERT, 12)], lambda: None) == [(11,), (12,)]
    assert sql.refused_groups == refused + 1, "the next group on that connection committed as one"
    assert _stored(pg_database) == [1, 2, 3, 4, 10, 11, 12, 100]


def test_a_failed_pipeline_leaves_the_pooled_connection_usable(pg_database: str, one_connection: Memory) -> None:
    """The same through the store's pool: the connection goes back to the pool after the error."""
    store = one_connection.service.store
    insert = INSERT.replace("?", "%s")
    for n in range(1, 6):
        with store.reading() as conn:
            conn.execute(insert, (n,))
    with pytest.raises(MemmeshError, match="division by zero"), store.reading() as conn, conn.pipeline():
        conn.execute("SELECT 1 / %s", (0,))
        conn.execute(insert, (10,))  # its sixth use: prepared, but its Parse is skipped
    with store.reading() as conn:
        assert conn.execute(insert, (11,)).fetchone() == (11,)
    assert _stored(pg_database) == [1, 2, 3, 4, 5, 11]
