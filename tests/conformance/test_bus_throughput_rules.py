"""Bus speed-ups that must not cost correctness (issue 24):

- a send commits asynchronously (its conversation's row lock is released before the disk
  flush) and then waits for the flush on its own: when ``send`` returns, the WAL holding the
  message is flushed, even with the WAL writer set to flush only every 10 s; deliveries
  (``unread``'s mark, a claim's lease) do not wait, and the ack or complete after them
  flushes them;
- (both backends) of the workers waiting in ``claim`` in one process only as many try a claim
  as there are tasks (a send wakes that many, see tests/bus/test_queue_wakeups.py; what wakes
  them all is followed by one read of the queue): one task sent to 8 waiting workers costs one
  claim, not eight; and no task is left unclaimed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from memmesh import Memory
from memmesh.bus.model import Delivery
from memmesh.clock import system_clock
from memmesh.model import LOCAL_PRINCIPAL as P


def test_a_send_returns_only_once_its_message_is_flushed(pg_private: Any, open_memory: Callable[..., Memory]) -> None:
    admin = "postgres"
    # synchronous commits on, and a WAL writer that would leave an asynchronous commit
    # unflushed for seconds: only an explicit wait for the flush makes the send durable
    pg_private.execute(admin, "ALTER SYSTEM SET synchronous_commit = 'on'")
    pg_private.execute(admin, "ALTER SYSTEM SET wal_writer_delay = '10s'")
    pg_private.execute(admin, "ALTER SYSTEM SET wal_writer_flush_after = '0'")
    pg_private.execute(admin, "SELECT pg_reload_conf()")
    name = pg_private.create_database()
    bus = open_memory(pg_private.dsn_for(name), clock=system_clock).service.bus
    conv = bus.open(["a", "b"], principal=P)
    for i in range(20):
        bus.send(conv.id, f"message {i}", sender="a", token=conv.token, principal=P)
        # nothing else writes to this cluster: everything inserted so far must be flushed
        (lag,) = pg_private.execute(name, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn())")[0]
        assert lag <= 0, f"send {i} returned with {lag} bytes of WAL not yet flushed"
    lag_sql = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn())"
    got = bus.unread(conv.id, agent="b", token=conv.token, principal=P)
    assert [m.seq for m in got.messages] == list(range(1, 21))
    # a delivery mark does not wait for the disk (losing it only delivers again) …
    assert pg_private.execute(name, lag_sql)[0][0] > 0, "unread's delivered mark waited for the flush"
    # … and the ack, which does, flushes it with itself
    assert bus.ack(conv.id, agent="b", token=conv.token, all=True, principal=P).acked_seq == 20
    assert pg_private.execute(name, lag_sql)[0][0] <= 0
    # the same for a claim's lease and the complete that follows it
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    bus.send(q.id, "task", sender="boss", token=q.token, principal=P)
    task = bus.claim(q.id, worker="w", token=q.token, principal=P)
    assert task is not None
    assert pg_private.execute(name, lag_sql)[0][0] > 0, "the claim waited for the flush"
    bus.complete(q.id, task.attempt_token, worker="w", token=q.token, result="ok", principal=P)
    assert pg_private.execute(name, lag_sql)[0][0] <= 0


def test_one_task_sent_to_many_waiting_workers_costs_one_claim(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    bus = open_memory(backend_url, clock=system_clock).service.bus
    workers = [f"w{i}" for i in range(8)]
    q = bus.open(["boss", *workers], kind="queue", principal=P)
    attempts = {"n": 0}
    real = bus._claim_once

    def counted(*args: Any) -> Delivery | None:
        attempts["n"] += 1
        return real(*args)

    bus._claim_once = counted  # type: ignore[method-assign]
    got: dict[str, Delivery | None] = {}

    def wait(name: str) -> None:  # 60 s: the seven left still wait after a loaded machine's first phase
        got[name] = bus.claim(q.id, worker=name, token=q.token, lease_s=30, wait_s=60, principal=P)

    threads = [threading.Thread(target=wait, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while attempts["n"] < len(workers) and time.monotonic() < deadline:  # each tried once before waiting
        time.sleep(0.01)
    time.sleep(0.3)
    before = attempts["n"]
    bus.send(q.id, "one task", sender="boss", token=q.token, principal=P)
    deadline = time.monotonic() + 30
    while not any(got.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # let every woken waiter settle back to sleep
    assert sum(1 for d in got.values() if d is not None) == 1, "the task was not delivered exactly once"
    # one claim for the one task; the listener's copy of the same wake-up, and on a busy machine
    # a waiter whose wait ended as the send landed, may add one each (a stampede is 8)
    assert attempts["n"] - before <= 3, f"{attempts['n'] - before} claims for one task: every woken worker tried"

    # the other seven are still waiting, and seven more tasks reach all of them
    bus.send_many(q.id, [f"task {i}" for i in range(7)], sender="boss", token=q.token, principal=P)
    for t in threads:
        t.join(10)
    deliveries = [d for d in got.values() if d is not None]
    assert len(deliveries) == 8 and len({d.message.seq for d in deliveries}) == 8, "a task was lost or delivered twice"
