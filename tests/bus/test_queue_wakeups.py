"""A send wakes only as many waiting claims of its queue as it sent tasks (issue 24).

Waking every waiting thread of the process for each task cost 11-13 context switches per task
with 16 workers. Now a send of n tasks wakes n of the queue's waiting claims, none of another
conversation's long-polls (each still wakes for its own sends), and a claim woken for a task
that leaves without claiming it (its client gone, its wait run out) hands the wake-up on.

Each waiter's looks at the queue are counted through the bus's own check (``Bus._claimable``),
per thread. The store is in memory: no SQLite watcher, whose first reading wakes every waiter
once. The re-check is put 60 s off, so only a wake-up can get a task claimed within the bounds
below (a missed one waits out the claim's whole wait, however slow the machine).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.bus import notify
from memmesh.bus.core import Bus
from memmesh.clock import system_clock
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.waits import Abandoned

PROMPT_S = 20.0
"""A woken claim gets its task well within this (the re-check is 60 s off, each wait longer)."""


def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    monkeypatch.setattr(notify, "RECHECK_S", 60.0)
    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory("sqlite:///:memory:", settings, clock=system_clock) as mem:
        yield mem.service.bus
        mem.service.bus.end_waits()  # whoever still waits answers at once


class Looks:
    """Counts each thread's looks at a queue (``Bus._claimable``); ``then(thread name, look
    number, ready)`` runs after a look, in the looking thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.then: Callable[[str, int, bool], None] | None = None
        real = Bus._claimable

        def claimable(bus: Bus, conversation_id: str) -> tuple[bool, float | None]:
            got = real(bus, conversation_id)
            name = threading.current_thread().name
            with self.lock:
                self.counts[name] += 1
                number = self.counts[name]
            if self.then is not None:
                self.then(name, number, got[0])
            return got

        monkeypatch.setattr(Bus, "_claimable", claimable)

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


def _claimer(
    bus: Bus, q: Any, worker: str, results: dict[str, Any], wait_s: float = 60.0, abandoned: Abandoned | None = None
) -> threading.Thread:
    def run() -> None:
        results[worker] = bus.claim(q.id, worker=worker, token=q.token, wait_s=wait_s, abandoned=abandoned, principal=P)
        results[worker + " at"] = time.monotonic()

    thread = threading.Thread(target=run, name=worker)
    thread.start()
    return thread


def test_one_task_wakes_one_waiting_claim_and_no_other_conversations_poll(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    looks = Looks(monkeypatch)
    workers = [f"w{i}" for i in range(8)]
    q = bus.open(["boss", *workers], kind="queue", principal=P)
    chat = bus.open(["a", "b"], principal=P)
    chat_looks = [0]
    real_wait_for = bus.notifier.wait_for

    def counted_wait_for(check: Callable[[], Any], *args: Any, **kwargs: Any) -> Any:
        def counted() -> Any:
            chat_looks[0] += 1
            return check()

        return real_wait_for(counted, *args, **kwargs)

    monkeypatch.setattr(bus.notifier, "wait_for", counted_wait_for)
    results: dict[str, Any] = {}
    threads = [_claimer(bus, q, w, results) for w in workers]

    def read() -> None:
        results["chat"] = bus.unread(chat.id, agent="b", token=chat.token, wait_s=60, principal=P)

    reader = threading.Thread(target=read, name="reader")
    reader.start()
    _until(lambda: all(looks.snapshot()[w] >= 1 for w in workers) and chat_looks[0] >= 1, "every poll looked once")
    before, chat_before = looks.snapshot(), chat_looks[0]
    sent = time.monotonic()
    bus.send(q.id, "the one task", sender="boss", token=q.token, principal=P)
    _until(lambda: any(results.get(w) is not None for w in workers), "the task was never claimed")
    (claimant,) = [w for w in workers if results.get(w) is not None]
    assert results[claimant + " at"] - sent < PROMPT_S, "the task waited for a re-check, not a wake-up"
    # the chat's poll still wakes for its own conversation's send, promptly
    bus.send(chat.id, "hello", sender="a", token=chat.token, principal=P)
    reader.join(PROMPT_S)
    assert not reader.is_alive() and [m.body for m in results["chat"].messages] == ["hello"]
    after = looks.snapshot()
    woken = sorted(w for w in workers if after[w] > before[w])
    # before: every waiting claim of the process looked again (8 looks, one claim)
    assert woken == [claimant], f"claims woken for one task: {woken}"
    assert chat_looks[0] == chat_before + 1, "the chat's poll woke for a send to another conversation"
    assert all(results.get(w) is None for w in workers if w != claimant)
    bus.end_waits()
    for t in threads:
        t.join(60)
    assert results[claimant].message.body == "the one task"


def test_a_woken_claim_whose_client_left_hands_the_task_on(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    looks = Looks(monkeypatch)
    workers = ["w0", "w1", "w2"]
    q = bus.open(["boss", *workers], kind="queue", principal=P)
    flags = {w: Abandoned() for w in workers}
    sent = threading.Event()
    left: list[str] = []

    def leave_when_ready(name: str, number: int, ready: bool) -> None:
        # the first claim that finds the task ready after the send loses its client right then
        if sent.is_set() and ready and not left:
            left.append(name)
            flags[name].set()

    looks.then = leave_when_ready
    results: dict[str, Any] = {}
    threads = [_claimer(bus, q, w, results, wait_s=45.0, abandoned=flags[w]) for w in workers]
    _until(lambda: all(looks.snapshot()[w] >= 1 for w in workers), "every claim looked once")
    sent.set()
    at = time.monotonic()
    bus.send(q.id, "the task", sender="boss", token=q.token, principal=P)
    # before: the abandoned claim took the count's one ticket with it, and the others slept
    # on until the re-check (60 s, past their 45 s waits): nobody claimed the task
    _until(lambda: any(results.get(w) is not None for w in workers) or all(w in results for w in workers), "every claim ended")
    taken = [w for w in workers if results.get(w) is not None]
    assert len(taken) == 1 and taken[0] not in left, f"the task was not handed on (left: {left}, results: {results})"
    assert results[taken[0] + " at"] - at < PROMPT_S, "the task waited for a re-check, not a hand-off"
    assert results[left[0]] is None
    bus.end_waits()
    for t in threads:
        t.join(60)


def test_a_claim_whose_wait_ran_out_as_it_was_woken_hands_the_task_on(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first waiter's wait runs out; its last look at the queue finds nothing, and the
    send lands right after that look began: the wake-up is this waiter's, which leaves (its
    time is up). Another claim gets the task at once, and only one."""
    looks = Looks(monkeypatch)
    workers = ["w0", "w1", "w2", "w3"]
    q = bus.open(["boss", *workers], kind="queue", principal=P)
    others_wait = threading.Event()
    before: dict[str, Counter[str]] = {}
    sent_at: list[float] = []

    def send_during_last_look(name: str, number: int, ready: bool) -> None:
        if name == "w0" and number == 2:  # w0's look after its first: its wait ran out (nothing else wakes it)
            assert others_wait.wait(60)
            before["looks"] = looks.snapshot()
            sent_at.append(time.monotonic())
            bus.send(q.id, "the task", sender="boss", token=q.token, principal=P)

    looks.then = send_during_last_look
    results: dict[str, Any] = {}
    threads = [_claimer(bus, q, "w0", results, wait_s=0.5)]
    _until(lambda: looks.snapshot()["w0"] >= 1, "w0 looked once")
    threads += [_claimer(bus, q, w, results) for w in workers[1:]]
    _until(lambda: all(looks.snapshot()[w] >= 1 for w in workers[1:]), "every other claim looked once")
    others_wait.set()
    threads[0].join(60)
    assert "w0" in results and results["w0"] is None
    _until(lambda: any(results.get(w) is not None for w in workers[1:]), "the task was never claimed")
    (taker,) = [w for w in workers[1:] if results.get(w) is not None]
    assert results[taker + " at"] - sent_at[0] < PROMPT_S, "the task waited for a re-check, not a wake-up"
    after = looks.snapshot()
    woken = sorted(w for w in workers[1:] if after[w] > before["looks"][w])
    # before: the send woke all three other claims
    assert woken == [taker], f"claims woken for one task: {woken}"
    bus.end_waits()
    for t in threads:
        t.join(60)
