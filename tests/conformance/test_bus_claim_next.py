"""``complete(claim_next=True)``: a busy worker acks its task and is leased the next one in
the same write (issue 24), on both backends, without loosening any queue rule:

- the complete is the durable ack; the next task is the oldest ready one, leased to the same
  worker with a fresh attempt token that fences it like any claim's;
- a complete that is refused (a lost lease, a stale or foreign token, another worker) leases
  nothing: every other task stays ready;
- one write per task: with a backlog, a worker's loop of completes runs one write (SQLite
  group commit) or one statement (PostgreSQL) per task, not two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from memmesh import Memory
from memmesh.bus.sql import BusSql
from memmesh.clock import system_clock
from memmesh.errors import ForbiddenError, InvalidInputError, LeaseLostError
from memmesh.model import LOCAL_PRINCIPAL as P


def _ready(bus: Any, q: Any) -> list[str]:
    return [t.body for t in bus.tasks(q.id, token=q.token, principal=P, state="ready")]


def test_complete_claims_the_next_task_in_order_and_fences_it(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    bus = open_memory(backend_url).service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    bus.send_many(q.id, [f"task {i}" for i in range(4)], sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w1", token=q.token, lease_s=10, principal=P)
    assert got is not None and got.message.body == "task 0"
    seen = []
    while got is not None:
        done = bus.complete(
            q.id, got.attempt_token, worker="w1", token=q.token, result=f"ok {got.message.body}", principal=P, claim_next=True
        )
        assert done.state == "done" and done.result == f"ok {got.message.body}" and done.id == got.message.id
        seen.append(got.message.body)
        previous, got = got, done.next
        if got is not None:
            assert got.worker == "w1" and got.attempt == 1 and got.attempt_token != previous.attempt_token
            # the used token is spent: it completes nothing again, and leases nothing
            with pytest.raises(LeaseLostError):
                bus.complete(q.id, previous.attempt_token, worker="w1", token=q.token, principal=P, claim_next=True)
    assert seen == ["task 0", "task 1", "task 2", "task 3"]
    tasks = bus.tasks(q.id, token=q.token, principal=P)
    assert [(t.state, t.attempts) for t in tasks] == [("done", 1)] * 4
    assert [e["event"] for e in tasks[1].history] == ["delivered", "completed"]
    # a plain complete still answers the same object, with no next task
    bus.send(q.id, "last", sender="boss", token=q.token, principal=P)
    one = bus.claim(q.id, worker="w2", token=q.token, principal=P)
    assert one is not None
    assert bus.complete(q.id, one.attempt_token, worker="w2", token=q.token, principal=P).next is None
    assert _ready(bus, q) == []


def test_a_refused_complete_leases_nothing(backend_url: str, open_memory: Callable[..., Memory], clock: Any) -> None:
    bus = open_memory(backend_url).service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    bus.send_many(q.id, ["a", "b", "c"], sender="boss", token=q.token, principal=P)
    first = bus.claim(q.id, worker="w1", token=q.token, lease_s=5, principal=P)
    assert first is not None
    # another worker cannot ack w1's task, nor take a task with it
    with pytest.raises(ForbiddenError):
        bus.complete(q.id, first.attempt_token, worker="w2", token=q.token, principal=P, claim_next=True)
    assert _ready(bus, q) == ["b", "c"]
    # a malformed token and a bad flag are refused before anything is written
    with pytest.raises(InvalidInputError, match="attempt_token"):
        bus.complete(q.id, "nope", worker="w1", token=q.token, principal=P, claim_next=True)
    with pytest.raises(InvalidInputError, match="claim_next"):
        bus.complete(q.id, first.attempt_token, worker="w1", token=q.token, principal=P, claim_next="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="lease"):
        bus.complete(q.id, first.attempt_token, worker="w1", token=q.token, principal=P, claim_next=True, lease_s=0)
    assert _ready(bus, q) == ["b", "c"]
    # w1 pauses past its lease: w2 gets the task again; w1's late ack is refused and takes nothing
    clock.advance(seconds=6)
    again = bus.claim(q.id, worker="w2", token=q.token, lease_s=30, principal=P)
    assert again is not None and again.message.id == first.message.id and again.attempt == 2
    with pytest.raises(LeaseLostError):
        bus.complete(q.id, first.attempt_token, worker="w1", token=q.token, principal=P, claim_next=True)
    assert _ready(bus, q) == ["b", "c"]
    # the holder's complete takes the oldest ready task; a lease that ran out meanwhile is given back first
    held = bus.complete(q.id, again.attempt_token, worker="w2", token=q.token, principal=P, claim_next=True, lease_s=5)
    assert held.state == "done" and held.next is not None and held.next.message.body == "b"
    other = bus.claim(q.id, worker="w1", token=q.token, lease_s=1, principal=P)
    assert other is not None and other.message.body == "c"
    clock.advance(seconds=2)  # w1's lease on "c" ran out: w2's next complete gives it back, then leases it
    last = bus.complete(q.id, held.next.attempt_token, worker="w2", token=q.token, principal=P, claim_next=True)
    assert last.next is not None and last.next.message.body == "c" and last.next.attempt == 2
    returned = [e for e in bus.tasks(q.id, token=q.token, principal=P)[2].history if e["event"] == "returned"]
    assert len(returned) == 1 and "lease expired" in returned[0]["reason"]
    # the queue empty: the task is done and no task comes with it
    end = bus.complete(q.id, last.next.attempt_token, worker="w2", token=q.token, principal=P, claim_next=True)
    assert end.state == "done" and end.next is None


def _count(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    seen = {"write": 0, "statement": 0}
    for name in seen:
        real = getattr(BusSql, name)

        def counted(self: BusSql, _real: Any = real, _name: str = name) -> Any:
            seen[_name] += 1
            return _real(self)

        monkeypatch.setattr(BusSql, name, counted)
    return seen


def test_a_busy_worker_writes_once_per_task(backend_url: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch) -> None:
    bus = open_memory(backend_url).service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    bus.send_many(q.id, [f"t{i}" for i in range(20)], sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w", token=q.token, lease_s=30, principal=P)
    seen = _count(monkeypatch)
    done = 0
    while got is not None:
        got = bus.complete(q.id, got.attempt_token, worker="w", token=q.token, principal=P, claim_next=True, lease_s=30).next
        done += 1
    assert done == 20
    # one unit of work per task (before: a complete and a claim, two commits per task)
    assert seen["write"] + seen["statement"] == 20, seen
    if bus.sql.postgres:
        assert seen["write"] == 0, seen


def test_the_ack_is_flushed_before_it_is_answered(pg_private: Any, open_memory: Callable[..., Memory]) -> None:
    """PostgreSQL: the one statement that completes and leases the next task commits as the
    session commits (the ack is durable), even though a claim alone does not wait for the disk."""
    admin = "postgres"
    pg_private.execute(admin, "ALTER SYSTEM SET synchronous_commit = 'on'")
    pg_private.execute(admin, "ALTER SYSTEM SET wal_writer_delay = '10s'")
    pg_private.execute(admin, "ALTER SYSTEM SET wal_writer_flush_after = '0'")
    pg_private.execute(admin, "SELECT pg_reload_conf()")
    name = pg_private.create_database()
    bus = open_memory(pg_private.dsn_for(name), clock=system_clock).service.bus
    lag_sql = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn())"
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    bus.send_many(q.id, ["a", "b", "c"], sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w", token=q.token, principal=P)
    assert got is not None
    assert pg_private.execute(name, lag_sql)[0][0] > 0, "the claim waited for the flush"
    for body in ("b", "c"):
        done = bus.complete(q.id, got.attempt_token, worker="w", token=q.token, result="ok", principal=P, claim_next=True)
        assert pg_private.execute(name, lag_sql)[0][0] <= 0, "complete(claim_next) answered before its ack was flushed"
        got = done.next
        assert got is not None and got.message.body == body
