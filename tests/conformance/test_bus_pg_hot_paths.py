"""PostgreSQL task queue: the server's work per task stays a few index entries (issue 24).

Session 7's bench spent ~2,100 µs of server CPU per task (send + complete with claim_next),
~900 buffers per claim. Two causes, each counted here through the server's own statistics
(pg_stat_user_indexes / pg_stat_user_tables, flushed when the Memory's connections close):

- psycopg prepares a statement after 5 runs and PostgreSQL then keeps a generic plan made
  from the statistics of that moment, a nearly empty queue. The claim joined its chosen row
  to the table (``FROM t WHERE b.seq = t.seq``) and that plan reached it through every
  message of the queue; ``complete`` by seq took the leases index (every lease of the last
  ``lease_s`` seconds) instead of the primary key. Index tuples read per task grew with the
  queue: here they must stay flat.
- every send moved ``last_activity``, a column of an index, so each send wrote a new
  version of its conversation's row (never HOT) and every later claim and complete walked
  the dead versions' index entries. Migration 0026 drops that index column and the unused
  ``bus_messages_order`` index: sends update the conversation row HOT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from memmesh import Memory
from memmesh.model import LOCAL_PRINCIPAL as P

TASKS = 600


def _index_reads(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT indexrelname, idx_tup_read FROM pg_stat_user_indexes WHERE relname LIKE 'bus_%'").fetchall()
    return {name: int(n) for name, n in rows}


def _run_queue(mem: Memory, tasks: int) -> None:
    """Warm the prepared plans on a near-empty queue, then enqueue and work ``tasks`` tasks
    one at a time (complete with claim_next: one statement per task on PostgreSQL)."""
    bus = mem.service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    for i in range(8):  # past psycopg's prepare threshold: the generic plans are made now
        bus.send(q.id, f"warm {i}", sender="boss", token=q.token, principal=P)
        got = bus.claim(q.id, worker="w", token=q.token, lease_s=60, principal=P)
        assert got is not None
        assert bus.complete(q.id, got.attempt_token, worker="w", token=q.token, result="ok", principal=P).state == "done"
    for start in range(0, tasks, 100):  # a batch sends at most 100 messages
        bus.send_many(q.id, [f"task {i}" for i in range(start, min(start + 100, tasks))], sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w", token=q.token, lease_s=60, principal=P)
    done = 0
    while got is not None:
        step = bus.complete(q.id, got.attempt_token, worker="w", token=q.token, result="ok", principal=P, claim_next=True, lease_s=60)
        assert step.state == "done"
        done += 1
        got = step.next
    assert done == tasks
    assert bus.tasks(q.id, token=q.token, state="ready", principal=P) == []


def test_pg_claim_and_complete_read_a_few_index_entries_per_task_however_long_the_queue(
    pg_database: str, open_memory: Callable[..., Memory]
) -> None:
    mem = open_memory(pg_database)
    before = _index_reads(pg_database)
    _run_queue(mem, TASKS)
    mem.close()  # the backends exit: their statistics reach the server's counters
    after = _index_reads(pg_database)
    per_task = {name: (after[name] - before.get(name, 0)) / TASKS for name in after}
    # one claim_next reads: the conversation (1-2 entries), the lapsed-lease check (0), the
    # next ready task (1 and the claimed ones its floor skips), the row by primary key (1 + 1)
    assert sum(per_task.values()) < 12, per_task
    assert per_task.get("bus_messages_pkey", 0) < 4, per_task
    assert per_task.get("bus_messages_leased", 0) < 2, per_task


def test_pg_send_updates_its_conversation_row_hot_and_tasks_skip_the_unused_order_index(
    pg_database: str, open_memory: Callable[..., Memory], clock: Any
) -> None:
    mem = open_memory(pg_database)
    bus = mem.service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    for i in range(300):
        clock.advance(seconds=0.01)  # each send moves last_activity, as real time does
        bus.send(q.id, f"task {i}", sender="boss", token=q.token, principal=P)
    mem.close()
    with psycopg.connect(pg_database, autocommit=True) as conn:
        upd, hot = conn.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'bus_conversations'").fetchone()  # type: ignore[misc]
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'bus_messages'").fetchall()}
        conv_indexes: list[Any] = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'bus_conversations'").fetchall()
    assert upd >= 300
    assert hot >= 0.9 * upd, (upd, hot)  # before 0026: 0 (last_activity was indexed)
    assert "bus_messages_order" not in indexes
    assert not any("last_activity" in r[0] for r in conv_indexes), conv_indexes


def test_pg_durable_send_and_its_flush_share_one_round_trip_and_refusals_write_nothing(
    pg_database: str, open_memory: Callable[..., Memory], monkeypatch: Any
) -> None:
    import time

    from memmesh.bus.sql import Rows
    from memmesh.errors import ForbiddenError, NotFoundError

    mem = open_memory(pg_database)
    bus = mem.service.bus
    bus.sql._flush_checked = (time.monotonic() + 3600, True)  # as on a server whose commits wait for the disk
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    pipelines: list[int] = []
    real = Rows.one_then

    def counted(self: Rows, sql: str, params: Any, then: str) -> Any:
        pipelines.append(1)
        return real(self, sql, params, then)

    monkeypatch.setattr(Rows, "one_then", counted)
    sent = [bus.send(q.id, f"task {i}", sender="boss", token=q.token, principal=P) for i in range(3)]
    assert [m.seq for m in sent] == [1, 2, 3]
    assert len(pipelines) == 3  # one round trip per send: the statement and its flush pipelined
    with pytest.raises((ForbiddenError, NotFoundError)):  # a wrong token: refused, nothing written
        bus.send(q.id, "nope", sender="boss", token="0" * 64, principal=P)
    got = bus.claim(q.id, worker="w", token=q.token, lease_s=60, principal=P)
    assert got is not None and got.message.body == "task 0"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        bodies = [r[0] for r in conn.execute("SELECT body FROM bus_messages ORDER BY seq").fetchall()]
    assert bodies == ["task 0", "task 1", "task 2"]
