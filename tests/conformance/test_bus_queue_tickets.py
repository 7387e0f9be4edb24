"""Waiting workers do not race the busy ones (issue 24), counted, not timed.

A queue with one producer and several workers, most of them waiting: every send wakes the
waiters of the process. Counted here through the bus's own calls:

- a send in this process carries the queue's ready count forward (``Bus._sent``): the waiters
  it wakes take tickets from it instead of reading the queue again (both fail before: a read
  per send);
- a claim outside the tickets (``complete(claim_next=True)``, a claim's first try) takes one
  ticket off (``Bus._taken``): waiting workers do not claim tasks the busy workers already
  took, so few claims find nothing;
- PostgreSQL: another process's send names its count in its NOTIFY and is carried the same
  way (fails before: one read per send);
- and every task is still completed exactly once (nothing lost, nothing done twice).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.model import LOCAL_PRINCIPAL as P

TASKS = 120
WORKERS = 6
WAIT_S = 60.0
"""Workers wait this long for a task: no wait runs out while the producer sends, however slow
the machine (with 0.3 s waits, each wait that ran out was one more read or empty claim, so the
counts grew with the time the sends took: 33 empty claims for 120 tasks sent 30 ms apart)."""


def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _wind_down(send: Callable[[str], Any], stop: threading.Event, threads: list[threading.Thread]) -> None:
    """End the workers' long waits: one last task each, sent once the counts are taken."""
    stop.set()
    for _ in threads:
        send("stop")
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a worker did not stop"


def _run(bus: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One producer sends TASKS tasks, one by one with short pauses (the producer sets the
    pace, so workers wait); WORKERS workers claim with a wait and complete with claim_next.
    Returns the counts of queue reads, claims, empty claims and completed task bodies."""
    q = bus.open(["boss", *[f"w{i}" for i in range(WORKERS)]], kind="queue", principal=P)
    counts = {"reads": 0, "claims": 0, "empty": 0}
    real_read, real_claim = type(bus)._poll_state, type(bus)._claim_once
    lock = threading.Lock()

    def read(self: Any, *args: Any) -> Any:
        with lock:
            counts["reads"] += 1
        return real_read(self, *args)

    def claim(self: Any, *args: Any) -> Any:
        got = real_claim(self, *args)
        with lock:
            counts["claims"] += 1
            counts["empty"] += got is None
        return got

    monkeypatch.setattr(type(bus), "_poll_state", read)
    monkeypatch.setattr(type(bus), "_claim_once", claim)
    done: list[str] = []
    stop = threading.Event()

    def worker(name: str) -> None:
        got = None
        while not stop.is_set():
            if got is None:
                got = bus.claim(q.id, worker=name, token=q.token, lease_s=30, wait_s=WAIT_S, principal=P)
                continue
            finished = bus.complete(q.id, got.attempt_token, worker=name, token=q.token, principal=P, claim_next=True, lease_s=30)
            with lock:
                done.append(finished.body)
            got = finished.next

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    _until(lambda: counts["claims"] == WORKERS, "the workers never all tried a claim")  # each now waits on the empty queue
    for i in range(TASKS):
        bus.send(q.id, f"task {i}", sender="boss", token=q.token, principal=P)
        time.sleep(0.003)
    deadline = time.monotonic() + 60
    while len(done) < TASKS and time.monotonic() < deadline:
        time.sleep(0.02)
    with lock:
        got = {**counts, "done": sorted(done)}
    _wind_down(lambda body: bus.send(q.id, body, sender="boss", token=q.token, principal=P), stop, threads)
    return got


def test_waiting_workers_neither_reread_nor_race_on_postgres(
    pg_database: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    got = _run(open_memory(pg_database, clock=system_clock).service.bus, monkeypatch)
    assert got["done"] == sorted(f"task {i}" for i in range(TASKS)), "a task was lost or completed twice"
    # before: one read of the queue per send (~1.0 per task) and ~0.5-1.3 empty claims per task
    assert got["reads"] <= TASKS * 0.25, got
    # 0.02-0.1 per task alone; 0.28-0.33 in two suite runs on 3 busy xdist workers (2 CPUs)
    assert got["empty"] <= TASKS * 0.4, got


def test_waiting_workers_do_not_race_on_sqlite(tmp_path: Any, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch) -> None:
    got = _run(open_memory(f"sqlite:///{tmp_path / 'q.db'}", clock=system_clock).service.bus, monkeypatch)
    assert got["done"] == sorted(f"task {i}" for i in range(TASKS)), "a task was lost or completed twice"
    # before: one read of the queue per send (~1.0 per task); SQLite's waiters also wake on its
    # commit counter, and a wake-up that is this process's own send keeps the carried count.
    # The bounds leave room for a slow machine: on a VM running at half its speed (session 11,
    # in a full run of the bus tests) this measured 62 reads / 21 empty claims and 26 / 37 for
    # 120 tasks, twice the quiet numbers; still well below the behaviour they guard against.
    assert got["reads"] <= TASKS * 0.6, got
    assert got["empty"] <= TASKS * 0.4, got


def test_another_process_sends_carry_the_count_on_postgres(
    pg_database: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sends come from another ``Memory`` (its own notifier and NOTIFY mark, as another
    process): their NOTIFY names the count, and this process's waiters carry it instead of
    reading the queue once per send (before: one read per send)."""
    mine = open_memory(pg_database, clock=system_clock).service.bus
    other = open_memory(pg_database, clock=system_clock).service.bus
    q = mine.open(["boss", *[f"w{i}" for i in range(WORKERS)]], kind="queue", principal=P)
    reads = [0]
    real_read = type(mine)._poll_state

    def read(self: Any, *args: Any) -> Any:
        if self is mine:
            reads[0] += 1
        return real_read(self, *args)

    monkeypatch.setattr(type(mine), "_poll_state", read)
    done: list[str] = []
    stop = threading.Event()

    def worker(name: str) -> None:
        got = None
        while not stop.is_set():
            if got is None:
                got = mine.claim(q.id, worker=name, token=q.token, lease_s=30, wait_s=WAIT_S, principal=P)
                continue
            finished = mine.complete(q.id, got.attempt_token, worker=name, token=q.token, principal=P, claim_next=True, lease_s=30)
            done.append(finished.body)
            got = finished.next

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    # every worker waits, and this process's listener is connected (it wakes the waiters once when
    # it has: waited for, not guessed at 0.5 s)
    _until(lambda: mine.notifier.generation > 0, "this process's listener never connected")
    for i in range(60):
        other.send(q.id, f"task {i}", sender="boss", token=q.token, principal=P)
        time.sleep(0.005)
    deadline = time.monotonic() + 60
    while len(done) < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    finished, read = sorted(done), reads[0]
    _wind_down(lambda body: other.send(q.id, body, sender="boss", token=q.token, principal=P), stop, threads)
    assert finished == sorted(f"task {i}" for i in range(60)), "a task was lost or completed twice"
    assert read <= 15, read
