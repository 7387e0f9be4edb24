"""How many statements a PostgreSQL queue task costs the client (issue 24): each psycopg
``execute`` is a parse, bind and result to build on both sides. A task alone is its send and
its complete (the next claim rides in the complete), plus a flush wait where commits wait for
the disk; a group of concurrent calls is its statements and one flush, with no BEGIN, COMMIT
or SET LOCAL around them, and still commits as one transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.model import LOCAL_PRINCIPAL as P


def _plain_dsn(memmesh_url: str) -> str:
    return memmesh_url.replace("postgresql+memmesh://", "postgresql://", 1)


def _record(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement any psycopg connection of this process executes from now on."""
    seen: list[str] = []
    real = psycopg.Connection.execute

    def execute(self: psycopg.Connection, query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(" ".join(str(query).split()))
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    return seen


def _kind(sql: str) -> str:
    if "pg_logical_emit_message" in sql:
        return "flush"
    if sql.startswith(("WITH ", "UPDATE bus_messages")):
        return "bus"
    return sql


def test_a_task_alone_is_its_send_and_its_complete(pg_database: str, open_memory: Callable[..., Memory], monkeypatch) -> None:
    bus = open_memory(pg_database, clock=system_clock).service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    bus.send(q.id, "t0", sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w", token=q.token, lease_s=30, principal=P)
    seen = _record(monkeypatch)
    tasks = 20
    for i in range(1, tasks + 1):
        bus.send(q.id, f"t{i}", sender="boss", token=q.token, principal=P)
        assert got is not None
        done = bus.complete(q.id, got.attempt_token, worker="w", token=q.token, result="ok", principal=P, claim_next=True, lease_s=30)
        assert done.state == "done" and done.next is not None and done.next.message.body == f"t{i}"
        got = done.next
    kinds = [_kind(s) for s in seen if s]  # (an empty statement: the pool's check of an idle connection)
    assert kinds.count("bus") == 2 * tasks, kinds
    assert kinds.count("flush") <= tasks  # the send's flush wait, where commits wait for the disk
    assert [k for k in kinds if k not in ("bus", "flush")] == [], "a lone task ran more than its own statements"


def test_a_group_runs_only_its_statements_and_one_flush_in_one_transaction(
    pg_database: str, open_memory: Callable[..., Memory], monkeypatch
) -> None:
    bus = open_memory(pg_database, clock=system_clock).service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    bus.send_many(q.id, ["a", "b", "c"], sender="boss", token=q.token, principal=P)
    one = bus.claim(q.id, worker="w1", token=q.token, lease_s=60, principal=P)
    two = bus.claim(q.id, worker="w2", token=q.token, lease_s=60, principal=P)
    assert one is not None and two is not None
    dsn = _plain_dsn(pg_database)
    held = psycopg.connect(dsn)  # holds the conversation row: the first send waits, holding the lead
    held.execute("SELECT 1 FROM bus_conversations WHERE id = %s FOR UPDATE", (q.id,))
    seen = _record(monkeypatch)
    out: dict[str, Any] = {}
    try:
        first = lambda: bus.send(q.id, "first", sender="boss", token=q.token, principal=P)  # noqa: E731
        leader = threading.Thread(target=lambda: out.setdefault("first", first()))
        leader.start()
        deadline = time.monotonic() + 60
        # until the first send waits for the row lock (not a guessed 0.3 s); through a cursor, which
        # _record does not count (it counts Connection.execute, the store's statements)
        with psycopg.connect(dsn, autocommit=True) as look, look.cursor() as cur:
            waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            while cur.execute(waiting).fetchone()[0] < 1:  # type: ignore[index]
                assert time.monotonic() < deadline, "the first send never waited for the held row lock"
                time.sleep(0.01)
        calls: dict[str, Callable[[], Any]] = {
            "s1": lambda: bus.send(q.id, "d", sender="boss", token=q.token, principal=P),
            "s2": lambda: bus.send(q.id, "e", sender="boss", token=q.token, principal=P),
            "c1": lambda: bus.complete(q.id, one.attempt_token, worker="w1", token=q.token, principal=P, result="1"),
            "c2": lambda: bus.complete(q.id, two.attempt_token, worker="w2", token=q.token, principal=P, result="2", claim_next=True),
        }
        threads = [threading.Thread(target=lambda k=k, f=f: out.setdefault(k, f())) for k, f in calls.items()]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(bus.sql.group._queue) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(bus.sql.group._queue) >= len(calls), "the calls never queued behind the blocked leader"
        batches0 = bus.sql.group.batches
    finally:
        held.rollback()
        held.close()
    leader.join(30)
    for t in threads:
        t.join(30)
    assert bus.sql.group.batches - batches0 == 1, "the queued calls were written as one group"
    assert out["c1"].state == "done" and out["c2"].next is not None and out["c2"].next.message.body == "c"
    assert sorted(out[k].seq for k in ("s1", "s2")) == [5, 6]
    kinds = [_kind(s) for s in seen if s]
    assert kinds.count("bus") == 1 + len(calls), kinds  # the leader's send, then the group's four statements
    assert kinds.count("flush") <= 2  # one for the leader's send, one for the group
    assert [k for k in kinds if k not in ("bus", "flush")] == [], "the group sent statements besides its own (BEGIN, SET LOCAL, COMMIT)"
    with psycopg.connect(dsn, autocommit=True) as conn:
        xids = conn.execute(
            "SELECT COUNT(DISTINCT xmin::text) FROM bus_messages WHERE conversation_id = %s AND body IN ('a', 'b', 'c', 'd', 'e')", (q.id,)
        ).fetchone()[0]  # type: ignore[index]
    assert xids == 1, "the group's changes were committed in one transaction"


def test_a_group_that_cannot_send_a_statement_commits_none_of_them(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    """With no BEGIN, the statements queued before a client-side error would commit at the
    pipeline's Sync: the group rolls them back, and each runs once more alone."""
    from memmesh.bus.sql import Rows, Statement

    bus = open_memory(pg_database, clock=system_clock).service.bus
    dsn = _plain_dsn(pg_database)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE group_probe (n int PRIMARY KEY, body text)")
    insert = "INSERT INTO group_probe (n, body) VALUES (?, ?) RETURNING n"

    def statement(n: int, body: str) -> Statement:
        return Statement(insert, (n, body), True, (0, str(n), 0), lambda rows: Rows.one(rows, insert, (n, body)), insert)

    refused0 = bus.sql.refused_groups
    found = bus.sql._write_group([statement(1, "one"), statement(2, "NUL \x00 here"), statement(3, "three")], lambda: None)
    assert found[0] == (1,) and found[2] == (3,)
    assert isinstance(found[1], Exception) and "NUL" in str(found[1])
    assert bus.sql.refused_groups == refused0 + 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT n FROM group_probe ORDER BY n").fetchall() == [(1,), (3,)]  # each once: no duplicate key
