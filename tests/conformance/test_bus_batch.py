"""Batch claim and batch ack (issue 24), on both backends, through the Python API.

``claim_many`` leases up to ``limit`` of the oldest ready tasks in one write, each with its
own attempt token; ``complete_many`` completes up to 100 leased tasks in one durable write.
Batching shares the cost of a call and of a commit, never the fencing:

- every entry of a batch complete is fenced alone, exactly as ``complete`` fences it: a lost
  lease, another worker's task or a token listed twice is refused with its reason and changes
  nothing, while the other entries complete;
- malformed input refuses the whole call before anything is written;
- across real processes with workers that pause past their leases, every task is completed
  exactly once, by the attempt that held it, and every late entry is refused.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.queue_nodes import run_queue_nodes

from memmesh import Memory
from memmesh.bus.model import TaskResult
from memmesh.clock import system_clock
from memmesh.errors import ContentTooLargeError, ForbiddenError, InvalidInputError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL as P


def _states(bus: Any, q: Any) -> list[tuple[str, str, int]]:
    return [(t.body, t.state, t.attempts) for t in bus.tasks(q.id, token=q.token, principal=P)]


def test_claim_many_leases_the_oldest_ready_tasks_each_fenced_alone(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    bus = open_memory(backend_url).service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    bus.send_many(q.id, [f"t{i}" for i in range(12)], sender="boss", token=q.token, principal=P)
    first = bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=5, lease_s=30)
    assert [d.message.body for d in first] == ["t0", "t1", "t2", "t3", "t4"]
    assert len({d.attempt_token for d in first}) == 5 and all(d.worker == "w1" and d.attempt == 1 for d in first)
    second = bus.claim_many(q.id, worker="w2", token=q.token, principal=P, limit=100, lease_s=30)
    assert [d.message.body for d in second] == [f"t{i}" for i in range(5, 12)], "the rest, and never a task leased already"
    assert bus.claim_many(q.id, worker="w2", token=q.token, principal=P, limit=3) == []
    # a batch complete: one outcome per entry, in the order asked
    done = bus.complete_many(
        q.id, [{"attempt_token": d.attempt_token, "result": f"ok {d.message.body}"} for d in first], worker="w1", token=q.token, principal=P
    )
    assert (done.completed, done.refused) == (5, 0)
    assert [o.task.result for o in done.outcomes if o.task] == [f"ok t{i}" for i in range(5)]
    assert [o.attempt_token for o in done.outcomes] == [d.attempt_token for d in first]
    assert all(o.task and o.task.state == "done" and o.error is None for o in done.outcomes)
    assert [e["event"] for e in done.outcomes[0].task.history] == ["delivered", "completed"]  # type: ignore[union-attr]
    # TaskResult objects work the same as dicts; a result may be left out
    more = bus.complete_many(q.id, [TaskResult(attempt_token=d.attempt_token) for d in second[:2]], worker="w2", token=q.token, principal=P)
    assert more.completed == 2 and more.outcomes[0].task is not None and more.outcomes[0].task.result is None
    assert [s for _, s, _ in _states(bus, q)] == ["done"] * 7 + ["leased"] * 5


def test_a_stale_entry_is_refused_alone_and_changes_nothing(backend_url: str, open_memory: Callable[..., Memory], clock: Any) -> None:
    bus = open_memory(backend_url).service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    bus.send_many(q.id, ["a", "b", "c", "d"], sender="boss", token=q.token, principal=P)
    short = bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=2, lease_s=5)
    long = bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=2, lease_s=60)
    clock.advance(seconds=6)
    # w1 paused past its first leases: w2 is given "a" and "b" again
    again = bus.claim_many(q.id, worker="w2", token=q.token, principal=P, limit=10, lease_s=60)
    assert [(d.message.body, d.attempt) for d in again] == [("a", 2), ("b", 2)]
    late = [*short, *long]
    batch = bus.complete_many(
        q.id, [{"attempt_token": d.attempt_token, "result": "w1"} for d in late], worker="w1", token=q.token, principal=P
    )
    assert (batch.completed, batch.refused) == (2, 2)
    assert [o.error.code if o.error else "ok" for o in batch.outcomes] == ["lease_lost", "lease_lost", "ok", "ok"]
    assert "no longer holds its task" in batch.outcomes[0].error.message  # type: ignore[union-attr]
    # another worker's task, and a token listed twice, are refused alone too
    mixed = bus.complete_many(
        q.id,
        [{"attempt_token": again[0].attempt_token}, {"attempt_token": again[1].attempt_token}, {"attempt_token": again[1].attempt_token}],
        worker="w1",
        token=q.token,
        principal=P,
    )
    assert [o.error.code if o.error else "ok" for o in mixed.outcomes] == ["forbidden", "forbidden", "invalid_input"]
    assert "leased to w2" in mixed.outcomes[0].error.message  # type: ignore[union-attr]
    assert "listed twice" in mixed.outcomes[2].error.message  # type: ignore[union-attr]
    assert _states(bus, q) == [("a", "leased", 2), ("b", "leased", 2), ("c", "done", 1), ("d", "done", 1)]
    # w2 completes its attempts; the spent tokens of w1 complete nothing again
    fine = bus.complete_many(
        q.id, [{"attempt_token": d.attempt_token, "result": "w2"} for d in again], worker="w2", token=q.token, principal=P
    )
    assert fine.completed == 2
    spent = bus.complete_many(q.id, [{"attempt_token": d.attempt_token} for d in long], worker="w1", token=q.token, principal=P)
    assert [o.error.code for o in spent.outcomes if o.error] == ["lease_lost", "lease_lost"]
    tasks = bus.tasks(q.id, token=q.token, principal=P)
    assert [(t.body, t.result) for t in tasks] == [("a", "w2"), ("b", "w2"), ("c", "w1"), ("d", "w1")]


def test_malformed_batches_are_refused_whole_before_anything_is_written(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(backend_url)
    bus = mem.service.bus
    q = bus.open(["boss", "w1"], kind="queue", principal=P)
    bus.send_many(q.id, ["a", "b"], sender="boss", token=q.token, principal=P)
    held = bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=2, lease_s=60)
    good = {"attempt_token": held[0].attempt_token, "result": "fine"}
    too_big = "x" * (bus.policy.max_message_bytes + 1)
    cases: list[tuple[Any, type[Exception], str]] = [
        ([], InvalidInputError, "non-empty list"),
        ("abc", InvalidInputError, "non-empty list"),
        ({"attempt_token": held[0].attempt_token}, InvalidInputError, "non-empty list"),
        ([good, {"attempt_token": "nope"}], InvalidInputError, r"results\[1\]\.attempt_token is malformed"),
        ([good, {"result": "x"}], InvalidInputError, r"results\[1\].*attempt_token: field required"),
        ([good, {"attempt_token": held[1].attempt_token, "result": 5}], InvalidInputError, r"results\[1\].*result"),
        ([good, {"attempt_token": held[1].attempt_token, "result": too_big}], ContentTooLargeError, r"results\[1\]"),
        ([good] * 101, InvalidInputError, "at most 100"),
    ]
    for results, error, message in cases:
        with pytest.raises(error, match=message):
            bus.complete_many(q.id, results, worker="w1", token=q.token, principal=P)
    # the conversation's own checks refuse the whole call as the single calls do
    with pytest.raises(NotFoundError):
        bus.complete_many(q.id, [good], worker="w1", token="f" * 64, principal=P)
    with pytest.raises(ForbiddenError, match="participant"):
        bus.complete_many(q.id, [good], worker="stranger", token=q.token, principal=P)
    for limit in (0, 101, "3", True, 2.5):
        with pytest.raises(InvalidInputError, match="limit must be between 1 and 100"):
            bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=limit)  # type: ignore[arg-type]
    assert _states(bus, q) == [("a", "leased", 1), ("b", "leased", 1)], "a refused batch wrote nothing"
    assert bus.complete_many(q.id, [good], worker="w1", token=q.token, principal=P).completed == 1


def test_claim_many_waits_for_a_task_then_takes_what_is_ready(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    bus = open_memory(backend_url, clock=system_clock).service.bus
    q = bus.open(["boss", "w1"], kind="queue", principal=P)
    waits = []  # an empty claim returns at its timeout: never early; late only by a loaded machine's pause, so the best of three
    for _ in range(3):
        started = time.monotonic()
        assert bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=5, wait_s=0.3) == []
        waits.append(time.monotonic() - started)
    assert min(waits) >= 0.25 and min(waits) < 2.0, waits
    later = threading.Timer(0.2, lambda: bus.send_many(q.id, ["x", "y", "z"], sender="boss", token=q.token, principal=P))
    later.start()
    got = bus.claim_many(q.id, worker="w1", token=q.token, principal=P, limit=5, wait_s=10)
    later.join()
    assert [d.message.body for d in got] == ["x", "y", "z"]


NODE = textwrap.dedent(
    """
    import json, sys, threading, time
    from memmesh import Memory
    from memmesh.config import load_settings
    from memmesh.model import LOCAL_PRINCIPAL as P
    url, data_dir, queue, token, me, count, workers = sys.argv[1:8]
    settings = load_settings(None, overrides={"data_dir": data_dir, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    done, late, errors, stop = [], [], [], threading.Event()
    with Memory(url, settings) as m:
        bus = m.service.bus

        def produce():
            try:
                for i in range(0, int(count), 10):
                    bodies = [f"{me}:{j}" for j in range(i, min(i + 10, int(count)))]
                    bus.send_many(queue, bodies, sender=f"p{me}", token=token, principal=P)
            except Exception as exc:
                errors.append(repr(exc))

        def work(name):
            batches = 0
            try:
                while not stop.is_set():
                    pause = batches in (1, 3)  # two batches per worker are held past their lease
                    got = bus.claim_many(queue, worker=name, token=token, limit=7, lease_s=0.3 if pause else 30, wait_s=0.2, principal=P)
                    if not got:
                        continue
                    batches += 1
                    if pause:
                        time.sleep(0.6)
                    entries = [{"attempt_token": d.attempt_token, "result": name} for d in got]
                    out = bus.complete_many(queue, entries, worker=name, token=token, principal=P)
                    for d, o in zip(got, out.outcomes):
                        if o.task is not None:
                            done.append([o.task.body, name, d.attempt, o.task.attempts, pause])
                        else:
                            late.append([d.message.body, o.error.code, pause])
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=work, args=(f"w{me}{k}",)) for k in range(int(workers))]
        for t in threads:
            t.start()
        produce()
        sys.stdout.write("produced\\n")
        sys.stdout.flush()
        sys.stdin.readline()  # the parent saw every task done (or gave up)
        stop.set()
        for t in threads:
            t.join()
    print(json.dumps({"done": done, "late": late, "errors": errors}))
    """
)


def test_batches_across_processes_complete_every_task_once_and_refuse_every_late_ack(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    per_node, workers, nodes = 150, 3, ["a", "b"]
    mem = open_memory(backend_url, clock=system_clock)
    bus = mem.service.bus
    names = [f"p{n}" for n in nodes] + [f"w{n}{k}" for n in nodes for k in range(workers)]
    q = bus.open(names, kind="queue", principal=P)
    results = run_queue_nodes(NODE, backend_url, tmp_path, bus, q, nodes, per_node, workers)
    assert [e for r in results for e in r["errors"]] == []
    done = [d for r in results for d in r["done"]]
    late = [x for r in results for x in r["late"]]
    assert sorted(body for body, *_ in done) == sorted(f"{n}:{i}" for n in nodes for i in range(per_node)), "lost or done twice"
    assert all(attempt == stored for _, _, attempt, stored, _ in done), "a completion by an attempt that no longer held its task"
    assert not any(paused for *_, paused in done), "a batch held past its lease completed something"
    assert late and all(code == "lease_lost" and paused for _, code, paused in late), late[:5]
    tasks = {t.body: t for t in bus.tasks(q.id, token=q.token, principal=P, limit=1000)}
    assert all(t.state == "done" for t in tasks.values())
    assert {body: name for body, name, *_ in done} == {body: t.result for body, t in tasks.items()}


def test_a_heartbeat_that_shortens_a_lease_is_seen_by_the_next_claim(
    backend_url: str, open_memory: Callable[..., Memory], clock: Any
) -> None:
    """A worker may heartbeat with a shorter lease than it claimed with (it knows it is about
    to stop): once that shorter lease runs out, the next claim gives the task to another
    worker, as for any lease run out (found by the faces' review, session 11)."""
    bus = open_memory(backend_url).service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    bus.send(q.id, "job", sender="boss", token=q.token, principal=P)
    held = bus.claim(q.id, worker="w1", token=q.token, lease_s=60, principal=P)
    assert held is not None
    assert bus.claim(q.id, worker="w2", token=q.token, principal=P) is None  # the claim looks, and learns the 60 s lease
    bus.heartbeat(q.id, held.attempt_token, worker="w1", token=q.token, lease_s=5, principal=P)
    clock.advance(seconds=6)
    again = bus.claim(q.id, worker="w2", token=q.token, principal=P)
    assert again is not None and again.message.body == "job" and again.attempt == 2
