"""PostgreSQL: another process's send wakes only as many of this process's waiting claims as
it sent tasks (its NOTIFY names the queue and the count), as a send in the process does (see
tests/bus/test_queue_wakeups.py). Before, every NOTIFY woke every waiter of the process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from tests.bus.test_queue_wakeups import PROMPT_S, Looks, _claimer, _until

from memmesh import Memory
from memmesh.bus import notify
from memmesh.clock import system_clock
from memmesh.model import LOCAL_PRINCIPAL as P


def test_another_process_send_wakes_one_waiting_claim_per_task(
    pg_database: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "RECHECK_S", 60.0)  # only a wake-up gets the tasks claimed in time
    looks = Looks(monkeypatch)
    mine = open_memory(pg_database, clock=system_clock).service.bus
    other = open_memory(pg_database, clock=system_clock).service.bus  # its own notifier and NOTIFY mark: another process
    workers = [f"w{i}" for i in range(6)]
    q = mine.open(["boss", *workers], kind="queue", principal=P)
    # this process's listener connects first (it wakes every waiter once when it has)
    assert mine.notifier.wait_for(lambda: False, 0.01) is False
    _until(lambda: mine.notifier.generation > 0, "this process's listener never connected")
    results: dict[str, Any] = {}
    threads = [_claimer(mine, q, w, results) for w in workers]
    try:
        _until(lambda: all(looks.snapshot()[w] >= 1 for w in workers), "every claim looked once")
        before = looks.snapshot()
        sent = time.monotonic()
        other.send_many(q.id, ["task 0", "task 1"], sender="boss", token=q.token, principal=P)
        _until(lambda: sum(results.get(w) is not None for w in workers) == 2, "the two tasks were never claimed")
        takers = sorted(w for w in workers if results.get(w) is not None)
        assert max(results[w + " at"] for w in takers) - sent < PROMPT_S, "a task waited for a re-check, not a wake-up"
        after = looks.snapshot()
        woken = sorted(w for w in workers if after[w] > before[w])
        # before: the NOTIFY woke all six waiting claims
        assert woken == takers, f"claims woken for two tasks: {woken}"
        assert sorted(results[w].message.body for w in takers) == ["task 0", "task 1"]
    finally:
        mine.end_waits()
        for t in threads:
            t.join(60)
