"""Task-queue statements stay small index lookups however many tasks are done (issue 24).

A queue keeps every done task. Each statement a claim, heartbeat, complete, fail or a waiting
claim's poll runs on ``bus_messages`` must reach its rows through an index that holds only the
tasks in that state (ready, leased, dead) or through the primary key with the task's seq: never
a scan of the table, nor of an index whose entries include the done tasks (the index on
(conversation, state, seq) made every claim and complete walk what finished tasks left behind:
7.7 and 6.5 ms per statement after a 10 s bench). Plans are read with EXPLAIN for the exact
statements the bus ran (captured at its one SQL seam), on 5,000 done tasks, analyzed; on
PostgreSQL as the generic plan a prepared statement reuses."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

from memmesh import Memory
from memmesh.bus.sql import Rows
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.store.sqlite import register_functions

DONE = 5000
STATE_INDEXES = {"bus_messages_ready", "bus_messages_leased", "bus_messages_dead"}


def _captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Every statement the bus runs through Rows from now on, with its parameters."""
    seen: list[tuple[str, tuple[Any, ...]]] = []
    for name in ("run", "one", "all"):
        real = getattr(Rows, name)

        def spy(self: Rows, sql: str, params: Any = (), _real: Any = real) -> Any:
            seen.append((sql, tuple(params)))
            return _real(self, sql, params)

        monkeypatch.setattr(Rows, name, spy)
    return seen


def _queue_traffic(
    mem: Memory, other: Memory, fill: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, clock: Any
) -> list[tuple[str, tuple]]:
    """A queue with DONE done tasks (``fill``), then one of each queue operation (a complete
    also from ``other``, a second process that did not hand the attempt token out); the
    statements they ran on bus_messages (inserts aside)."""
    bus = mem.service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    fill(q.id)
    bus.send_many(q.id, ["a", "b", "c", "d"], sender="boss", token=q.token, principal=P)
    seen = _captured(monkeypatch)
    got = bus.claim(q.id, worker="w1", token=q.token, lease_s=10, principal=P)
    assert got is not None and got.message.body == "a"
    bus.heartbeat(q.id, got.attempt_token, worker="w1", token=q.token, lease_s=10, principal=P)
    assert other.service.bus.complete(q.id, got.attempt_token, worker="w1", token=q.token, result="ok", principal=P).state == "done"
    got = bus.claim(q.id, worker="w2", token=q.token, lease_s=10, principal=P)
    assert got is not None and got.message.body == "b"
    assert bus.fail(q.id, got.attempt_token, worker="w2", token=q.token, reason="no", principal=P).state == "ready"
    lapsing = bus.claim(q.id, worker="w2", token=q.token, lease_s=5, principal=P)
    assert lapsing is not None and lapsing.message.body == "b"
    clock.advance(seconds=6)  # the next claim gives the lapsed lease back first, then takes it again
    again = bus.claim(q.id, worker="w1", token=q.token, lease_s=10, principal=P)
    assert again is not None and again.message.body == "b" and again.attempt == 3
    bus._poll_state(q.id)  # what a waiting claim reads per wake-up
    assert bus.complete(q.id, again.attempt_token, worker="w1", token=q.token, principal=P).state == "done"
    assert len(bus.tasks(q.id, token=q.token, state="ready", principal=P)) == 2
    assert bus.tasks(q.id, token=q.token, state="dead", principal=P) == []
    return [(sql, params) for sql, params in seen if "bus_messages" in sql and not sql.lstrip().upper().startswith("INSERT")]


def test_sqlite_queue_statements_never_scan_done_tasks(
    tmp_path: Any, open_memory: Callable[..., Memory], clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plans.db"
    mem = open_memory(f"sqlite:///{path}")

    def fill(conversation_id: str) -> None:
        with sqlite3.connect(path) as conn:
            register_functions(conn)
            conn.executemany(
                "INSERT INTO bus_messages (id, conversation_id, seq, sender, body, created_at, state, attempts, history, result) "
                "VALUES (?, ?, ?, 'boss', 'old', 0, 'done', 1, '[]', 'ok')",
                [(f"done-{i}", conversation_id, i + 1) for i in range(DONE)],
            )
            conn.execute("UPDATE bus_conversations SET last_seq = ? WHERE id = ?", (DONE, conversation_id))
            conn.execute("ANALYZE")

    statements = _queue_traffic(mem, open_memory(f"sqlite:///{path}"), fill, monkeypatch, clock)
    assert len(statements) >= 10
    with sqlite3.connect(path) as conn:
        register_functions(conn)
        for sql, params in statements:
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            on_messages = [step for step in plan if re.search(r"\bbus_messages\b", step)]
            assert on_messages, (sql, plan)
            for step in on_messages:
                assert not step.startswith("SCAN"), f"a scan of bus_messages: {step}\n{sql}"
                index = re.search(r"USING (?:COVERING )?INDEX (\w+)|USING (PRIMARY KEY)", step)
                assert index, (step, sql)
                name = index.group(1) or index.group(2)
                # the primary key (and its autoindex) only to reach one task by its seq
                assert name in STATE_INDEXES or "seq=" in step.replace(" ", ""), f"{step}\n{sql}"


def _generic_plan(conn: Any, sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
    """The plan PostgreSQL reuses for ``sql`` once prepared (psycopg prepares a statement a
    connection runs often): force_generic_plan, parameters unknown at planning."""
    from psycopg import sql as psql

    numbered = iter(range(1, 1000))
    prepared = re.sub(r"\?", lambda _m: f"${next(numbered)}", sql)
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE probe AS {prepared}")
    try:
        args = psql.SQL(", ").join(psql.Literal(p) for p in params)
        query = psql.SQL("EXPLAIN (FORMAT JSON) EXECUTE probe") + (psql.SQL("({})").format(args) if params else psql.SQL(""))
        found = conn.execute(query).fetchone()[0]
    finally:
        conn.execute("DEALLOCATE probe")
    plan = found if isinstance(found, list) else json.loads(found)
    return plan[0]["Plan"]


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's reads of bus_messages (the table an UPDATE writes is a ModifyTable node, not a read)."""
    found = [node] if node.get("Relation Name") == "bus_messages" and "Scan" in node["Node Type"] else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


def test_postgres_queue_statements_never_scan_done_tasks(
    pg_database: str, open_memory: Callable[..., Memory], clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    mem = open_memory(pg_database)

    def fill(conversation_id: str) -> None:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO bus_messages (id, conversation_id, seq, sender, body, created_at, state, attempts, history, result) "
                "SELECT 'done-' || n, %s, n, 'boss', 'old', 0, 'done', 1, '[]', 'ok' FROM generate_series(1, %s) AS n",
                (conversation_id, DONE),
            )
            conn.execute("UPDATE bus_conversations SET last_seq = %s WHERE id = %s", (DONE, conversation_id))
            conn.execute("ANALYZE bus_messages")

    statements = _queue_traffic(mem, open_memory(pg_database), fill, monkeypatch, clock)
    from memmesh.bus.core import CLAIM_PG, COMPLETE_PG, COMPLETE_PG_SEQ

    ran = {sql for sql, _ in statements}
    assert CLAIM_PG in ran and COMPLETE_PG in ran and COMPLETE_PG_SEQ in ran
    with psycopg.connect(pg_database, autocommit=True) as conn:
        for sql, params in statements:
            scans = _scans(_generic_plan(conn, sql, params))
            assert scans, sql
            for scan in scans:
                kind, index = scan["Node Type"], scan.get("Index Name")
                assert kind in ("Index Scan", "Index Only Scan"), f"{kind} on bus_messages ({index}) in\n{sql}"
                reaches_one_task = index == "bus_messages_pkey" and "seq" in scan.get("Index Cond", "")
                assert index in STATE_INDEXES or reaches_one_task, f"{kind} using {index} ({scan.get('Index Cond')}) in\n{sql}"


def test_a_task_given_back_below_the_floor_is_claimed_first_here_and_within_a_second_elsewhere(
    backend_url: str, open_memory: Callable[..., Memory]
) -> None:
    """The ready floor never loses a task: a give-back in this process is claimed next (oldest
    first); one by another process (a second store handle, as another worker process would
    have) once the floor lapses, HINT_TTL_S later."""
    from memmesh.bus.hints import HINT_TTL_S

    here, there = open_memory(backend_url).service.bus, open_memory(backend_url).service.bus
    q = here.open(["boss", "w1", "w2"], kind="queue", principal=P)
    here.send_many(q.id, [f"t{i}" for i in range(1, 7)], sender="boss", token=q.token, principal=P)

    def claim(bus: Any, worker: str) -> Any:
        got = bus.claim(q.id, worker=worker, token=q.token, lease_s=60, principal=P)
        assert got is not None
        return got

    elsewhere = claim(there, "w2")
    assert elsewhere.message.body == "t1"
    mine = [claim(here, "w1") for _ in range(2)]
    assert [d.message.body for d in mine] == ["t2", "t3"]
    here.fail(q.id, mine[0].attempt_token, worker="w1", token=q.token, reason="retry", principal=P)
    assert claim(here, "w1").message.body == "t2"  # given back here: claimed next, before t4
    there.fail(q.id, elsewhere.attempt_token, worker="w2", token=q.token, reason="retry", principal=P)
    assert claim(here, "w1").message.body == "t4"  # this process has not seen t1 come back yet
    time.sleep(HINT_TTL_S + 0.05)
    assert claim(here, "w1").message.body == "t1"  # the floor lapsed: the oldest ready task again
    assert claim(here, "w1").message.body == "t5"


def test_a_waiting_claim_that_skips_its_first_try_still_ends_with_the_checks(
    tmp_path: Any, open_memory: Callable[..., Memory], clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that just found the queue empty waits at once on its next claim (no claim
    statement that would find nothing), but the wait ends with that claim: a conversation
    archived meanwhile is refused as ever, not answered with "no task"."""
    import memmesh.bus.core as core

    monkeypatch.setattr(core, "TICKET_TTL_S", 30.0)  # a slow machine must not let the count lapse mid-test
    monkeypatch.setattr(core, "VOUCH_TTL_S", 30.0)
    from memmesh.bus.core import hash_token
    from memmesh.errors import ForbiddenError

    bus = open_memory(f"sqlite:///{tmp_path / 'skip.db'}").service.bus
    q = bus.open(["boss", "w1"], kind="queue", timeout_s=10, principal=P)
    bus.send(q.id, "only", sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w1", token=q.token, principal=P)
    assert got is not None
    bus.complete(q.id, got.attempt_token, worker="w1", token=q.token, principal=P)
    assert bus.claim(q.id, worker="w1", token=q.token, wait_s=0.05, principal=P) is None
    caller = (q.id, hash_token(q.token), "w1")
    assert bus._known_empty(caller)  # the next waiting claim goes straight to waiting
    clock.advance(seconds=11)  # idle past its timeout: archived
    with pytest.raises(ForbiddenError, match="archived"):
        bus.claim(q.id, worker="w1", token=q.token, wait_s=0.05, principal=P)
    assert not bus._known_empty((q.id, hash_token(q.token), "w2"))  # another worker was never vouched for
