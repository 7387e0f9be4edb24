"""What idle and busy workers cost the database (issue 24), counted, not timed:

- a worker waiting on an empty queue runs a bounded number of bus statements, however long
  it waits (no re-claiming in a loop);
- PostgreSQL: a send in this process wakes this process's waiters once, not twice (its own
  NOTIFY echo is skipped: the send already woke them), while another process's (here another
  ``Memory``'s) send still wakes them through LISTEN;
- after ``complete(claim_next=True)`` found the queue empty, the worker's waiting claim does
  not run the claim that would find nothing again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.bus import core, notify
from memmesh.bus.notify import Notifier
from memmesh.bus.sql import BusSql
from memmesh.clock import system_clock
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.store.sqlite import SQLiteStore


def _count_sql(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    seen = {"write": 0, "statement": 0, "read": 0}
    for name in seen:
        real = getattr(BusSql, name)

        def counted(self: BusSql, _real: Any = real, _name: str = name) -> Any:
            seen[_name] += 1
            return _real(self)

        monkeypatch.setattr(BusSql, name, counted)
    return seen


def _until(done: Callable[[], bool], failure: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, failure
        time.sleep(0.01)


def test_an_idle_waiting_worker_costs_a_bounded_number_of_statements(
    backend_url: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = open_memory(backend_url, clock=system_clock).service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    seen = _count_sql(monkeypatch)
    started = time.monotonic()
    assert bus.claim(q.id, worker="w", token=q.token, wait_s=1.5, principal=P) is None
    assert time.monotonic() - started >= 1.4
    # one claim, one look at the queue's state, a look on each PostgreSQL re-check (1 s) and the end
    assert sum(seen.values()) <= 5, seen


def test_a_send_wakes_this_process_once_and_another_process_still(
    pg_database: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = open_memory(pg_database, clock=system_clock).service.bus
    other = open_memory(pg_database, clock=system_clock).service.bus
    q = mine.open(["boss", "w"], kind="queue", principal=P)
    wakes: list[Notifier] = []
    real = Notifier.notify

    def counted(self: Notifier, *args: Any) -> None:
        wakes.append(self)
        real(self, *args)

    # a waiter makes this process listen; let the listener connect (it wakes the waiters once
    # when it has: waited for, not guessed at 0.3 s, lest that wake-up land among the counted)
    before = mine.notifier.generation
    waiter = threading.Thread(target=lambda: mine.claim(q.id, worker="w", token=q.token, wait_s=0.3, principal=P))
    waiter.start()
    waiter.join()
    _until(lambda: mine.notifier.generation > before, "the listener never connected")
    monkeypatch.setattr(Notifier, "notify", counted)
    for i in range(10):
        mine.send(q.id, f"job {i}", sender="boss", token=q.token, principal=P)
    time.sleep(0.5)  # any echo would have arrived by now
    assert sum(1 for n in wakes if n is mine.notifier) == 10, "a send here woke this process more than once"
    # another Memory (its own listener and origin): its send wakes this process through LISTEN
    del wakes[:]
    other.send(q.id, "from elsewhere", sender="boss", token=q.token, principal=P)
    deadline = time.monotonic() + 5
    while not any(n is mine.notifier for n in wakes) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(n is mine.notifier for n in wakes), "another process's send did not wake this one"


def test_sqlite_waiters_wake_for_other_processes_commits_not_their_own(
    tmp_path: Path, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite process notices other processes' commits by one watcher reading the writer
    connection's commit counter: its own writes (here 40 memories) wake none of its waiting
    workers, while a commit through another connection (another ``Memory`` on the file, as
    another process would be) wakes them within a few milliseconds."""
    url = f"sqlite:///{tmp_path / 'watch.db'}"
    mine = open_memory(url, clock=system_clock)
    other = open_memory(url, clock=system_clock)
    bus = mine.service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    wakes: list[Notifier] = []
    real = Notifier.notify

    def counted(self: Notifier, *args: Any) -> None:
        wakes.append(self)
        real(self, *args)

    before = bus.notifier.generation
    claimed: list[object] = []
    waiter = threading.Thread(target=lambda: claimed.append(bus.claim(q.id, worker="w", token=q.token, wait_s=60, principal=P)))
    waiter.start()
    # the watcher is watching: its first reading wakes the waiter once (waited for, not guessed
    # at 0.3 s, lest that wake-up land among the counted)
    _until(lambda: bus.notifier.generation > before, "the watcher never took its first reading")
    monkeypatch.setattr(Notifier, "notify", counted)
    for i in range(40):
        mine.add(f"a note of this process {i}")
    time.sleep(0.2)
    assert [n for n in wakes if n is bus.notifier] == [], "this process's own commits woke its waiters"
    other.add("a note from another connection")
    deadline = time.monotonic() + 30  # within milliseconds, or never: no re-check calls notify
    while not any(n is bus.notifier for n in wakes) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert any(n is bus.notifier for n in wakes), "another connection's commit did not wake this process's waiter"
    other.service.bus.send(q.id, "the end", sender="boss", token=q.token, principal=P)  # the waiter takes it and leaves
    waiter.join(60)
    assert claimed and claimed[0] is not None, "the waiter was not woken by the task"


def test_an_empty_claim_next_spares_the_next_claim(
    backend_url: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    # what the empty claim_next learnt stays good for VOUCH_TTL_S (1 s) and TICKET_TTL_S (0.5 s):
    # put far off, so a loaded machine's pause between the complete and the claim cannot make
    # the claim try first (two claims, not one)
    monkeypatch.setattr(core, "VOUCH_TTL_S", 60.0)
    monkeypatch.setattr(core, "TICKET_TTL_S", 60.0)
    bus = open_memory(backend_url, clock=system_clock).service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    bus.send(q.id, "only", sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w", token=q.token, principal=P)
    assert got is not None
    assert bus.complete(q.id, got.attempt_token, worker="w", token=q.token, principal=P, claim_next=True).next is None
    claims: list[str] = []
    real = type(bus)._claim_once

    def counted(self: Any, *args: Any) -> Any:
        claims.append(args[0])
        return real(self, *args)

    monkeypatch.setattr(type(bus), "_claim_once", counted)
    # a send while the worker waits: the wait wakes and claims it (the one claim that runs)
    threading.Timer(0.2, lambda: bus.send(q.id, "later", sender="boss", token=q.token, principal=P)).start()
    woke = bus.claim(q.id, worker="w", token=q.token, wait_s=30, principal=P)
    assert woke is not None and woke.message.body == "later"
    assert len(claims) == 1, claims


def test_waiters_do_not_spin_on_a_lease_already_given_back(
    backend_url: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = open_memory(backend_url, clock=system_clock).service.bus
    q = bus.open(["boss", "dead", "w1", "w2"], kind="queue", principal=P)
    bus.send(q.id, "orphan", sender="boss", token=q.token, principal=P)
    assert bus.claim(q.id, worker="dead", token=q.token, lease_s=0.4, principal=P) is not None  # never completed
    claims: list[str] = []
    real = type(bus)._claim_once

    def counted(self: Any, *args: Any) -> Any:
        claims.append(args[1])
        return real(self, *args)

    monkeypatch.setattr(type(bus), "_claim_once", counted)
    got: dict[str, Any] = {}
    waiters = [
        threading.Thread(target=lambda w=w: got.__setitem__(w, bus.claim(q.id, worker=w, token=q.token, wait_s=1.5, principal=P)))
        for w in ("w1", "w2")
    ]
    for t in waiters:
        t.start()
    for t in waiters:
        t.join()
    rescued = [w for w, d in got.items() if d is not None]
    assert len(rescued) == 1 and got[rescued[0]].attempt == 2
    # each waiter: its first try, a claim when the lease runs out, perhaps one more; never a loop
    assert len(claims) <= 8, claims


def test_an_idle_sqlite_waiter_does_not_poll_the_commit_counter(
    tmp_path: Path, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While nothing is written, a waiting SQLite process sleeps on the write-ahead log's
    inotify events: its watcher reads the commit counter a few times a second (the safety
    net), not every 4 ms (250 a second, ~5 % of a core for one idle worker)."""
    memory = open_memory(f"sqlite:///{tmp_path / 'idle.db'}", clock=system_clock)
    bus = memory.service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    reads: list[float] = []
    real = SQLiteStore.others_commits

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(time.monotonic())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteStore, "others_commits", counted)
    assert bus.claim(q.id, worker="w", token=q.token, wait_s=1.0, principal=P) is None
    assert reads, "no watcher ran while the worker waited"
    assert len(reads) <= 20, f"{len(reads)} reads of the commit counter in a one-second idle wait"


def test_a_sqlite_waiter_wakes_on_another_process_log_write_alone(
    tmp_path: Path, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write-ahead log's inotify event is what wakes a waiting SQLite process: with the
    safety net's period and the waiters' own re-check put an hour off, a task another
    connection (as another process would) sends is still claimed at once."""
    monkeypatch.setattr(notify, "QUIET_CHECK_S", 3600.0, raising=False)
    monkeypatch.setattr(notify, "RECHECK_S", 3600.0)
    url = f"sqlite:///{tmp_path / 'wake.db'}"
    mine = open_memory(url, clock=system_clock).service.bus
    other = open_memory(url, clock=system_clock).service.bus
    q = mine.open(["boss", "w"], kind="queue", principal=P)
    before = mine.notifier.generation
    claimed: list[object] = []
    waiter = threading.Thread(target=lambda: claimed.append(mine.claim(q.id, worker="w", token=q.token, wait_s=60, principal=P)))
    waiter.start()
    _until(lambda: mine.notifier.generation > before, "the watcher never took its first reading")
    time.sleep(0.2)  # past FOLLOW_S of any write so far: the watcher now sleeps on the log's events
    other.send(q.id, "wake up", sender="boss", token=q.token, principal=P)
    waiter.join(30)
    assert not waiter.is_alive(), "the send through another connection did not wake the waiter"
    assert claimed and claimed[0] is not None
