"""How many statements an SQLite queue call runs (issue 24: the bus's client CPU per task).

Under SQLite's one writer every statement of a claim, complete or send is time the write lock
is held with Python running, so the queue's rate is set by how many there are. Before: ~20 per
task (the conversation read 2.9 times, a lapsed-lease check and a ready select per claim, and
one claim in two finding the queue empty). Now:

- send: one UPDATE that checks the token, liveness and both names and numbers the message,
  then the INSERT (the conversation is not read on its own);
- claim: one SELECT holding the queue checks and the oldest ready task, then the lease UPDATE;
- complete of a task this process leased: one SELECT holding the queue checks and the leased
  row (by key), then the UPDATE; with ``claim_next`` the ready select and the lease UPDATE;
- the lapsed-lease check runs only when a lease may have run out (the earliest expiry known,
  re-read at least every HINT_TTL_S), and ``complete(claim_next=True)`` skips a claim this
  process's count says would find nothing.

Each refusal still names its reason and writes nothing (the step-by-step checks run then).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.bus import core, hints
from memmesh.bus.hints import HINT_TTL_S
from memmesh.bus.sql import Rows
from memmesh.errors import ForbiddenError, InvalidInputError, LeaseLostError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL as P


def _captured(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the bus runs through Rows from now on (its one SQL seam)."""
    seen: list[str] = []
    for name in ("run", "one", "all"):
        real = getattr(Rows, name)

        def spy(self: Rows, sql: str, params: Any = (), _real: Any = real) -> Any:
            seen.append(sql)
            return _real(self, sql, params)

        monkeypatch.setattr(Rows, name, spy)
    return seen


def _conversation_reads(seen: list[str]) -> int:
    return sum(1 for sql in seen if sql.startswith("SELECT id, kind, topic"))


def _lapsed_checks(seen: list[str]) -> int:
    return sum(1 for sql in seen if "lease_expires <= ?" in sql)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'queue.db'}"


def test_claim_complete_and_send_run_their_fewest_statements(
    sqlite_url: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    # what the first claim learns (the earliest lease expiry) is trusted for HINT_TTL_S (1 s):
    # put far off, so a loaded machine's pause between these calls cannot add a lapsed-lease check
    monkeypatch.setattr(hints, "HINT_TTL_S", 60.0)
    bus = open_memory(sqlite_url).service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    bus.send_many(q.id, ["a", "b", "c"], sender="boss", token=q.token, principal=P)
    first = bus.claim(q.id, worker="w", token=q.token, lease_s=30, principal=P)  # learns the earliest lease expiry
    assert first is not None and first.message.body == "a"
    seen = _captured(monkeypatch)

    got = bus.claim(q.id, worker="w", token=q.token, lease_s=30, principal=P)
    assert got is not None and got.message.body == "b"
    assert len(seen) == 2, seen  # checks + ready task, lease (before: conversation, lapsed leases, ready, lease)
    assert _conversation_reads(seen) == 0 and _lapsed_checks(seen) == 0

    seen.clear()
    done = bus.complete(q.id, first.attempt_token, worker="w", token=q.token, result="ok", principal=P, claim_next=True, lease_s=30)
    assert done.state == "done" and done.result == "ok" and done.next is not None and done.next.message.body == "c"
    assert [e["event"] for e in done.history] == ["delivered", "completed"]
    assert len(seen) == 4, seen  # checks + leased row, done; ready task, lease
    assert _conversation_reads(seen) == 0 and _lapsed_checks(seen) == 0

    seen.clear()
    sent = bus.send(q.id, "d", sender="boss", token=q.token, principal=P)
    assert sent.seq == 4
    assert len(seen) == 1, seen  # check + number (the INSERT goes through executemany)
    assert _conversation_reads(seen) == 0

    # the tasks read back as stored: ordered, with their histories as valid JSON
    tasks = bus.tasks(q.id, token=q.token, principal=P)
    assert [(t.body, t.state) for t in tasks] == [("a", "done"), ("b", "leased"), ("c", "leased"), ("d", "ready")]


def test_every_refusal_is_still_named_and_writes_nothing(sqlite_url: str, open_memory: Callable[..., Memory], clock: Any) -> None:
    bus = open_memory(sqlite_url).service.bus
    q = bus.open(["boss", "w"], kind="queue", principal=P)
    chat = bus.open(["boss", "w"], principal=P)
    bus.send_many(q.id, ["a", "b"], sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w", token=q.token, lease_s=30, principal=P)
    assert got is not None
    wrong = "f" * 64
    with pytest.raises(NotFoundError, match="no conversation"):
        bus.claim(q.id, worker="w", token=wrong, principal=P)
    with pytest.raises(NotFoundError, match="no conversation"):
        bus.complete(q.id, got.attempt_token, worker="w", token=wrong, principal=P, claim_next=True)
    with pytest.raises(NotFoundError, match="no conversation"):
        bus.send(q.id, "x", sender="boss", token=wrong, principal=P)
    with pytest.raises(ForbiddenError, match="not a participant"):
        bus.claim(q.id, worker="stranger", token=q.token, principal=P)
    with pytest.raises(ForbiddenError, match="not a participant"):
        bus.send(q.id, "x", sender="stranger", token=q.token, principal=P)
    with pytest.raises(InvalidInputError, match="recipient"):
        bus.send(q.id, "x", sender="boss", to="stranger", token=q.token, principal=P)
    with pytest.raises(ForbiddenError, match="leased to w"):
        bus.complete(q.id, got.attempt_token, worker="boss", token=q.token, principal=P, claim_next=True)
    with pytest.raises(InvalidInputError, match="chat, not a task queue"):
        bus.claim(chat.id, worker="w", token=chat.token, principal=P)
    # nothing of that was written: the same task is held, the same one is ready, no message was added
    assert [(t.body, t.state, t.attempts) for t in bus.tasks(q.id, token=q.token, principal=P)] == [("a", "leased", 1), ("b", "ready", 0)]
    # the lease runs out: the late ack is refused by the fence, not taken
    clock.advance(seconds=31)
    with pytest.raises(LeaseLostError):
        bus.complete(q.id, got.attempt_token, worker="w", token=q.token, principal=P, claim_next=True)
    # an idle conversation is archived: no send, claim or complete in it
    clock.advance(seconds=bus.policy.conversation_timeout_s + 1)
    with pytest.raises(ForbiddenError, match="archived"):
        bus.claim(q.id, worker="w", token=q.token, principal=P)
    with pytest.raises(ForbiddenError, match="archived"):
        bus.send(q.id, "x", sender="boss", token=q.token, principal=P)


def test_a_lease_another_process_granted_is_rescued_within_the_hint(
    sqlite_url: str, open_memory: Callable[..., Memory], clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim skips the lapsed-lease check while its earliest known expiry is ahead; a short
    lease granted by another process (its own hints) is seen once the hint lapses."""
    here, there = open_memory(sqlite_url).service.bus, open_memory(sqlite_url).service.bus
    q = here.open(["boss", "w1", "w2"], kind="queue", principal=P)
    here.send_many(q.id, ["a", "b", "c", "d"], sender="boss", token=q.token, principal=P)
    held = here.claim(q.id, worker="w1", token=q.token, lease_s=60, principal=P)
    short = there.claim(q.id, worker="w2", token=q.token, lease_s=1, principal=P)
    assert held is not None and short is not None and short.message.body == "b"
    clock.advance(seconds=2)  # w2's lease ran out; nothing told this process
    time.sleep(HINT_TTL_S + 0.1)
    seen = _captured(monkeypatch)
    again = here.claim(q.id, worker="w1", token=q.token, lease_s=60, principal=P)
    assert _lapsed_checks(seen) == 1
    assert again is not None and again.message.body == "b" and again.attempt == 2
    returned = [e for e in here.tasks(q.id, token=q.token, principal=P)[1].history if e["event"] == "returned"]
    assert len(returned) == 1 and "lease expired" in returned[0]["reason"]
    # its own short lease is known at once: no wait for the hint
    mine = here.claim(q.id, worker="w2", token=q.token, lease_s=1, principal=P)
    assert mine is not None and mine.message.body == "c"
    clock.advance(seconds=2)
    back = here.claim(q.id, worker="w1", token=q.token, lease_s=60, principal=P)
    assert back is not None and back.message.body == "c" and back.attempt == 2


def test_a_complete_skips_the_claim_its_count_says_finds_nothing(
    sqlite_url: str, open_memory: Callable[..., Memory], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = open_memory(sqlite_url).service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    bus.send(q.id, "a", sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker="w1", token=q.token, lease_s=30, principal=P)
    assert got is not None
    # w2 waits on the empty queue: its poll counts 0 ready tasks for this wake-up. The count is
    # good for TICKET_TTL_S (0.5 s): put that far off, and wait for the poll itself, so a loaded
    # machine neither misses it (a fixed 0.1 s) nor lets the count lapse before the complete
    monkeypatch.setattr(core, "TICKET_TTL_S", 60.0)
    waiting = threading.Thread(target=bus.claim, args=(q.id,), kwargs={"worker": "w2", "token": q.token, "principal": P, "wait_s": 0.3})
    waiting.start()
    deadline = time.monotonic() + 60
    while not ((held := bus._tickets.get(q.id)) and held[0] == bus.notifier.generation and held[1] == 0):
        assert time.monotonic() < deadline, "the waiting claim never counted the empty queue"
        time.sleep(0.005)
    seen = _captured(monkeypatch)
    done = bus.complete(q.id, got.attempt_token, worker="w1", token=q.token, principal=P, claim_next=True)
    waiting.join()
    assert done.state == "done" and done.next is None
    # no ready select, no lease (the waiting claim's own poll aside)
    assert not any("ORDER BY seq LIMIT 1" in sql or "SET state = 'leased'" in sql for sql in seen), seen
    # a send moves the count on: the next complete's claim runs and finds the task
    bus.send_many(q.id, ["b", "c"], sender="boss", token=q.token, principal=P)
    nxt = bus.claim(q.id, worker="w1", token=q.token, lease_s=30, principal=P)
    assert nxt is not None and nxt.message.body == "b"
    seen.clear()
    more = bus.complete(q.id, nxt.attempt_token, worker="w1", token=q.token, principal=P, claim_next=True)
    assert more.next is not None and more.next.message.body == "c"
