"""Batch claim and batch ack under attack (issue 24): what test_bus_batch.py does not try.

- Fencing is by attempt token, never by worker name: a task lost by attempt 1 and leased
  again to the SAME worker refuses attempt 1's late entry, even in the batch that completes
  attempt 2.
- Two batch completes naming the same tasks in different orders (a client retrying through
  another server process, entries gathered in a different order) must not wait on each other
  in a cycle: PostgreSQL breaks such a deadlock by cancelling one call after
  ``deadlock_timeout``, whose caller is told nothing was stored and whose own entries are
  rolled back with it. Exactly one entry per task completes, every other is refused
  ``lease_lost``, and no call fails.
- Hostile entries are refused whole with their reason, whatever form they come in.
- Each entry's outcome is its own, whichever path completed it, and an error from the call
  means nothing was stored (the batch is one transaction on both backends; a first version
  committed PostgreSQL's one-statement part on its own, then failed the call when the rest
  could not be written).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from memmesh import Memory
from memmesh.bus.model import TaskResult
from memmesh.errors import InvalidInputError
from memmesh.model import LOCAL_PRINCIPAL as P


def test_a_stale_attempt_leased_again_to_the_same_worker_is_refused(
    backend_url: str, open_memory: Callable[..., Memory], clock: Any
) -> None:
    bus = open_memory(backend_url).service.bus
    q = bus.open(["boss", "w1"], kind="queue", principal=P)
    bus.send_many(q.id, ["a", "b"], sender="boss", token=q.token, principal=P)
    first = bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=2, lease_s=5)
    clock.advance(seconds=6)
    second = bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=2, lease_s=60)
    assert [(d.message.body, d.attempt, d.worker) for d in second] == [("a", 2, "w1"), ("b", 2, "w1")]
    # attempt 1's entries, alone and beside attempt 2's (before and after it in the batch)
    late = bus.complete_many(
        q.id, [{"attempt_token": d.attempt_token, "result": "old"} for d in first], worker="w1", token=q.token, principal=P
    )
    assert [o.error.code if o.error else "ok" for o in late.outcomes] == ["lease_lost", "lease_lost"]
    mixed = [
        {"attempt_token": first[0].attempt_token, "result": "old"},
        {"attempt_token": second[0].attempt_token, "result": "new"},
        {"attempt_token": second[1].attempt_token, "result": "new"},
        {"attempt_token": first[1].attempt_token, "result": "old"},
    ]
    batch = bus.complete_many(q.id, mixed, worker="w1", token=q.token, principal=P)
    assert [o.error.code if o.error else "ok" for o in batch.outcomes] == ["lease_lost", "ok", "ok", "lease_lost"]
    tasks = bus.tasks(q.id, token=q.token, principal=P)
    assert [(t.body, t.state, t.attempts, t.result) for t in tasks] == [("a", "done", 2, "new"), ("b", "done", 2, "new")]
    assert all([e["attempt"] for e in t.history if e["event"] == "completed"] == [2] for t in tasks)


def test_two_batches_naming_the_same_tasks_in_opposite_orders_never_deadlock(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    leaser = open_memory(backend_url).service.bus
    # two more processes' buses: they did not lease the tasks (no hint of where each one is)
    others = [open_memory(backend_url).service.bus, open_memory(backend_url).service.bus]
    q = leaser.open(["boss", "w1"], kind="queue", principal=P)
    per_round = 30
    # rounds 0-2: two callers that did not lease; rounds 3-4: the leaser against another caller
    for round_ in range(5):
        leaser.send_many(q.id, [f"r{round_}-{i}" for i in range(per_round)], sender="boss", token=q.token, principal=P)
        held = leaser.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=per_round, lease_s=120)
        assert len(held) == per_round
        entries = [{"attempt_token": d.attempt_token, "result": f"ok {d.message.body}"} for d in held]
        callers = others if round_ < 3 else [leaser, others[0]]
        orders = [entries, entries[::-1]]
        answers: list[Any] = [None, None]
        start = threading.Barrier(2)

        def run(k: int, callers: list[Any] = callers, orders: list[Any] = orders, answers: list[Any] = answers, start: Any = start) -> None:
            start.wait()
            try:
                answers[k] = callers[k].complete_many(q.id, orders[k], worker="w1", token=q.token, principal=P)
            except Exception as exc:  # the failure under test: reported below, per round
                answers[k] = exc

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert [a for a in answers if isinstance(a, Exception)] == [], f"round {round_}"
        assert sum(a.completed for a in answers) == per_round, f"round {round_}: each task completed exactly once"
        codes = {o.error.code for a in answers for o in a.outcomes if o.error}
        assert codes <= {"lease_lost"}, codes
    done = leaser.tasks(q.id, token=q.token, principal=P, state="done", limit=1000)
    assert len(done) == 5 * per_round and all(t.result == f"ok {t.body}" and t.attempts == 1 for t in done)


def test_task_result_objects_are_checked_like_dicts(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    """A TaskResult built without validation (``model_construct``, or a field set after
    construction) is checked as the same entry given as a dict: refused with the reason, not
    a TypeError (an internal error on a face) nor a misleading "result is empty"."""
    bus = open_memory(backend_url).service.bus
    q = bus.open(["boss", "w1"], kind="queue", principal=P)
    bus.send_many(q.id, ["a"], sender="boss", token=q.token, principal=P)
    held = bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=2, lease_s=60)
    changed = TaskResult(attempt_token=held[0].attempt_token)
    changed.attempt_token = None  # type: ignore[assignment]
    cases: list[tuple[TaskResult, str]] = [
        (TaskResult.model_construct(attempt_token=None), r"results\[1\].*attempt_token: input should be a valid string"),
        (changed, r"results\[1\].*attempt_token: input should be a valid string"),
        (
            TaskResult.model_construct(attempt_token=held[0].attempt_token, result=5),
            r"results\[1\].*result: input should be a valid string",
        ),
    ]
    good = TaskResult(attempt_token=held[0].attempt_token, result="fine")
    for bad, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            bus.complete_many(q.id, [good, bad], worker="w1", token=q.token, principal=P)
    assert [t.state for t in bus.tasks(q.id, token=q.token, principal=P)] == ["leased"], "a refused batch wrote nothing"
    assert bus.complete_many(q.id, [good], worker="w1", token=q.token, principal=P).completed == 1


def test_a_batch_mixing_this_process_other_process_garbage_and_foreign_tokens(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    """Each entry's outcome is its own, in the order asked, whichever path completed it (the
    one statement for the tasks this process leased, step by step for the rest)."""
    here = open_memory(backend_url).service.bus
    there = open_memory(backend_url).service.bus  # another process: its tokens are unknown here
    q = here.open(["boss", "w1"], kind="queue", principal=P)
    other_q = here.open(["boss", "w1"], kind="queue", principal=P)
    here.send_many(q.id, [f"t{i}" for i in range(6)], sender="boss", token=q.token, principal=P)
    here.send_many(other_q.id, ["elsewhere"], sender="boss", token=other_q.token, principal=P)
    mine = here.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=3, lease_s=60)
    theirs = there.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=3, lease_s=60)
    foreign = here.claim_many(other_q.id, worker="w1", token=other_q.token, principal=P, limit=2, lease_s=60)
    assert [d.message.body for d in mine + theirs] == [f"t{i}" for i in range(6)] and len(foreign) == 1
    asked = [theirs[2], mine[2], None, mine[0], foreign[0], theirs[0], mine[1], theirs[1]]
    entries = [{"attempt_token": d.attempt_token if d else "0123456789abcdef" * 2, "result": f"by {k}"} for k, d in enumerate(asked)]
    batch = here.complete_many(q.id, entries, worker="w1", token=q.token, principal=P)
    codes = [o.error.code if o.error else "ok" for o in batch.outcomes]
    assert codes == ["ok", "ok", "lease_lost", "ok", "lease_lost", "ok", "ok", "ok"]
    assert [o.attempt_token for o in batch.outcomes] == [e["attempt_token"] for e in entries]
    for k, (o, d) in enumerate(zip(batch.outcomes, asked, strict=True)):
        if o.task is not None:
            assert d is not None and (o.task.body, o.task.result, o.task.seq) == (d.message.body, f"by {k}", d.message.seq)
    stored = {t.body: t.result for t in here.tasks(q.id, token=q.token, principal=P)}
    assert stored == {d.message.body: f"by {k}" for k, d in enumerate(asked) if d is not None and d is not foreign[0]}
    # the foreign queue's task is untouched, and its own complete still works
    assert here.complete(other_q.id, foreign[0].attempt_token, worker="w1", token=other_q.token, principal=P).state == "done"


def test_a_batch_that_fails_part_way_has_stored_nothing(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    """An error from complete_many means the batch stored nothing (the error itself says
    "nothing was stored; try again"), and an answer says for each entry what was stored.
    Here a lock on one task is not granted in time, with the other task leased by this
    process: were the two parts committed separately, the retry of the first would be
    answered ``lease_lost``, a worker told its finished work was lost."""
    here = open_memory(backend_url, storage={"busy_timeout_ms": 300}).service.bus
    there = open_memory(backend_url).service.bus  # another process: its token is unknown here
    q = here.open(["boss", "w1"], kind="queue", principal=P)
    here.send_many(q.id, ["mine", "theirs"], sender="boss", token=q.token, principal=P)
    mine = here.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=1, lease_s=60)[0]
    theirs = there.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=1, lease_s=60)[0]
    entries = [{"attempt_token": mine.attempt_token, "result": "r"}, {"attempt_token": theirs.attempt_token, "result": "r"}]
    with _row_locked(backend_url, q.id, theirs.message.seq):
        try:
            answer: Any = here.complete_many(q.id, entries, worker="w1", token=q.token, principal=P)
        except Exception as exc:  # the lock was not granted in time
            answer = exc
    states = {t.body: t.state for t in here.tasks(q.id, token=q.token, principal=P)}
    if isinstance(answer, Exception):
        assert states == {"mine": "leased", "theirs": "leased"}, f"the call failed ({answer}) yet stored {states}"
    else:  # each entry's outcome says what was stored
        told = {body: "done" if o.task else "leased" for body, o in zip(["mine", "theirs"], answer.outcomes, strict=True)}
        assert told == states
        assert [o.error.code for o in answer.outcomes if o.error] in ([], ["unavailable"])
    # the entries not stored complete on retry (the lock released)
    left = [e for e, body in zip(entries, ["mine", "theirs"], strict=True) if states[body] == "leased"]
    if left:
        assert here.complete_many(q.id, left, worker="w1", token=q.token, principal=P).completed == len(left)


@contextmanager
def _row_locked(url: str, conversation_id: str, seq: int) -> Iterator[None]:
    """Another transaction holding the task's row (PostgreSQL) or the database (SQLite)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as conn:  # libpq takes the URL as it is
        conn.execute("SELECT 1 FROM bus_messages WHERE conversation_id = %s AND seq = %s FOR UPDATE", (conversation_id, seq))
        yield
        conn.rollback()
