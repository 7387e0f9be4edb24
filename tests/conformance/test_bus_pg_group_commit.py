"""Group commit of the bus's single-statement writes on PostgreSQL (issue 24): concurrent
``send`` / ``claim`` / ``complete`` calls of one process's threads share one transaction, one
commit record and one disk flush, while each call keeps its own answer: a refused call (a
wrong token, a lease lost to another worker) gets its own error and its group-mates succeed;
a statement that fails its group's transaction is re-run alone and fails alone; a process
killed with -9 loses nothing it was told was stored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.errors import ForbiddenError, LeaseLostError, MemmeshError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL as P


def _plain_dsn(memmesh_url: str) -> str:
    return memmesh_url.replace("postgresql+memmesh://", "postgresql://", 1)


def _run_all(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread, started together; each one's result or exception."""
    out: list[Any] = [None] * len(calls)
    gate = threading.Barrier(len(calls))

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _held_conversation(dsn: str, conversation_id: str) -> psycopg.Connection:
    """Another session holding the conversation's row lock: the next send waits for it, and
    while it waits (the group's leader) every call that arrives queues up for one group."""
    conn = psycopg.connect(dsn)
    conn.execute("SELECT 1 FROM bus_conversations WHERE id = %s FOR UPDATE", (conversation_id,))
    return conn


def _blocked_on_the_lock(dsn: str) -> None:
    """Wait until a session of this database waits for a row lock (the leader's send, behind
    :func:`_held_conversation`): a fixed 0.3 s raced a loaded machine."""
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] >= 1:
                return
            assert time.monotonic() < deadline, "the leader's send never waited for the held row lock"
            time.sleep(0.01)


def _queue_up(bus: Any, calls: list[Callable[[], Any]], expected: int) -> None:
    """Wait until ``expected`` calls wait in the group commit's queue behind its leader."""
    deadline = time.monotonic() + 20
    while len(bus.sql.group._queue) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(bus.sql.group._queue) >= expected, "the calls never queued behind the blocked leader"


def test_concurrent_sends_and_completes_share_transactions(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(pg_database, clock=system_clock)
    bus = mem.service.bus
    q = bus.open(["boss", *[f"w{i}" for i in range(8)]], kind="queue", principal=P)
    dsn = _plain_dsn(pg_database)
    sends = [lambda i=i: [bus.send(q.id, f"t{i}-{k}", sender="boss", token=q.token, principal=P) for k in range(10)] for i in range(8)]
    results = _run_all(sends)
    assert not [r for r in results if isinstance(r, Exception)], results
    seqs = sorted(m.seq for r in results for m in r)
    assert seqs == list(range(1, 81))  # every send numbered once, no gap, no repeat
    with psycopg.connect(dsn, autocommit=True) as conn:
        xids = conn.execute("SELECT COUNT(DISTINCT xmin::text) FROM bus_messages WHERE conversation_id = %s", (q.id,)).fetchone()[0]  # type: ignore[index]
    assert xids < 80, "concurrent sends of one process committed one transaction each"

    def work(name: str) -> int:
        done = 0
        got = bus.claim(q.id, worker=name, token=q.token, lease_s=60, principal=P)
        while got is not None:
            got = bus.complete(q.id, got.attempt_token, worker=name, token=q.token, principal=P, claim_next=True, lease_s=60).next
            done += 1
        return done

    batches0 = bus.sql.group.batches
    counts = _run_all([lambda n=n: work(f"w{n}") for n in range(8)])
    assert sum(counts) == 80, counts
    calls = 8 + 80  # a first claim per worker, one complete per task
    assert bus.sql.group.batches - batches0 < calls
    with psycopg.connect(dsn, autocommit=True) as conn:
        states = conn.execute(
            "SELECT state, COUNT(*), COUNT(DISTINCT xmin::text) FROM bus_messages WHERE conversation_id = %s GROUP BY state", (q.id,)
        ).fetchall()
    assert [(state, n) for state, n, _ in states] == [("done", 80)]
    assert states[0][2] < 80, "concurrent completes of one process committed one transaction each"


def test_a_refused_call_in_a_group_fails_alone(pg_database: str, open_memory: Callable[..., Memory], clock: Any) -> None:
    mem = open_memory(pg_database)
    bus = mem.service.bus
    q = bus.open(["boss", "w1", "w2", "w3"], kind="queue", principal=P)
    bus.send_many(q.id, ["a", "b", "c"], sender="boss", token=q.token, principal=P)
    lost = bus.claim(q.id, worker="w1", token=q.token, lease_s=5, principal=P)
    assert lost is not None and lost.message.body == "a"
    clock.advance(seconds=6)  # w1's lease ran out: w2 gets the task with a new attempt token
    taken = bus.claim(q.id, worker="w2", token=q.token, lease_s=60, principal=P)
    assert taken is not None and taken.message.body == "a" and taken.attempt_token != lost.attempt_token
    other = bus.claim(q.id, worker="w3", token=q.token, lease_s=60, principal=P)
    assert other is not None and other.message.body == "b"

    held = _held_conversation(_plain_dsn(pg_database), q.id)
    try:
        leader = threading.Thread(target=lambda: bus.send(q.id, "first", sender="boss", token=q.token, principal=P))
        leader.start()
        _blocked_on_the_lock(_plain_dsn(pg_database))  # the leader's send waits for the row lock, holding the lead
        batches0 = bus.sql.group.batches
        calls: list[Callable[[], Any]] = [
            lambda: bus.send(q.id, "good", sender="boss", token=q.token, principal=P),
            lambda: bus.send(q.id, "bad token", sender="boss", token="0" * 64, principal=P),
            lambda: bus.complete(q.id, lost.attempt_token, worker="w1", token=q.token, principal=P, result="late"),
            lambda: bus.complete(q.id, taken.attempt_token, worker="w2", token=q.token, principal=P, result="on time"),
            lambda: bus.complete(q.id, other.attempt_token, worker="w3", token=q.token, principal=P, result="b done", claim_next=True),
        ]
        box: list[list[Any]] = []
        runner = threading.Thread(target=lambda: box.append(_run_all(calls)))
        runner.start()
        _queue_up(bus, calls, len(calls))
    finally:
        held.rollback()
        held.close()
    leader.join(30)
    runner.join(30)
    good, bad, late, on_time, next_one = box[0]
    assert bus.sql.group.batches - batches0 == 1, "the queued calls were written as one group"
    assert good.body == "good"
    assert isinstance(bad, (ForbiddenError, NotFoundError)), bad
    assert isinstance(late, LeaseLostError), late  # a late ack of a lost lease is refused, by itself
    assert on_time.state == "done" and on_time.result == "on time"
    assert next_one.state == "done" and next_one.next is not None and next_one.next.message.body == "c"
    tasks = {t.body: t for t in bus.tasks(q.id, token=q.token, principal=P, limit=100)}
    assert tasks["a"].result == "on time" and tasks["a"].state == "done"
    assert [t.body for t in tasks.values() if t.body == "bad token"] == []
    with psycopg.connect(_plain_dsn(pg_database), autocommit=True) as conn:
        xids = conn.execute(
            "SELECT COUNT(DISTINCT xmin::text) FROM bus_messages WHERE conversation_id = %s AND body IN ('good', 'b', 'c') "
            "OR (conversation_id = %s AND body = 'a')",
            (q.id, q.id),
        ).fetchone()[0]  # type: ignore[index]
    assert xids == 1, "the group's changes were committed in one transaction"


def test_a_statement_that_fails_its_group_is_rerun_alone(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(pg_database, clock=system_clock)
    bus = mem.service.bus
    q = bus.open(["boss"], kind="queue", principal=P)
    dsn = _plain_dsn(pg_database)
    with psycopg.connect(dsn, autocommit=True) as conn:  # a database error for one message body
        conn.execute(
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.body = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER refuse_boom BEFORE INSERT ON bus_messages FOR EACH ROW EXECUTE FUNCTION refuse_boom()")
    held = _held_conversation(dsn, q.id)
    try:
        leader = threading.Thread(target=lambda: bus.send(q.id, "first", sender="boss", token=q.token, principal=P))
        leader.start()
        _blocked_on_the_lock(dsn)
        bodies = ["one", "boom", "two", "three"]
        calls: list[Callable[[], Any]] = [lambda b=b: bus.send(q.id, b, sender="boss", token=q.token, principal=P) for b in bodies]
        box: list[list[Any]] = []
        runner = threading.Thread(target=lambda: box.append(_run_all(calls)))
        runner.start()
        _queue_up(bus, calls, len(calls))
        refused0 = bus.sql.refused_groups
    finally:
        held.rollback()
        held.close()
    leader.join(30)
    runner.join(30)
    one, boom, two, three = box[0]
    assert bus.sql.refused_groups == refused0 + 1
    assert isinstance(boom, MemmeshError) and "boom refused" in str(boom), boom
    assert {one.body, two.body, three.body} == {"one", "two", "three"}
    stored = sorted(t.body for t in bus.tasks(q.id, token=q.token, principal=P, limit=100))
    assert stored == sorted(["first", "one", "two", "three"])
    assert sorted(m.seq for m in (one, two, three)) == [2, 3, 4]  # the failed group's numbers were never used


NODE = textwrap.dedent(
    """
    import sys, threading
    from memmesh import Memory
    from memmesh.config import load_settings
    from memmesh.model import LOCAL_PRINCIPAL as P
    url, data_dir, queue, token, me = sys.argv[1:6]
    settings = load_settings(None, overrides={"data_dir": data_dir, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    out = threading.Lock()

    def say(line):
        with out:
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()

    with Memory(url, settings) as m:
        bus = m.service.bus

        def produce(p):
            i = 0
            while True:
                msg = bus.send(queue, f"{me}{p}:{i}", sender=f"p{me}", token=token, principal=P)
                say(f"sent {msg.body}")
                i += 1

        def work(name):
            got = None
            while True:
                if got is None:
                    got = bus.claim(queue, worker=name, token=token, lease_s=300, wait_s=0.2, principal=P)
                    continue
                fin = bus.complete(
                    queue, got.attempt_token, worker=name, token=token, principal=P, result=name, claim_next=True, lease_s=300
                )
                say(f"done {fin.body} {name}")
                got = fin.next

        threads = [threading.Thread(target=produce, args=(p,), daemon=True) for p in range(2)]
        threads += [threading.Thread(target=work, args=(f"w{me}{k}",), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        say("ready")
        threading.Event().wait()
    """
)


def test_kill_9_loses_no_acknowledged_send_or_complete(pg_database: str, open_memory: Callable[..., Memory], tmp_path: Path) -> None:
    mem = open_memory(pg_database, clock=system_clock)
    bus = mem.service.bus
    nodes = ["a", "b"]
    q = bus.open([f"p{n}" for n in nodes] + [f"w{n}{k}" for n in nodes for k in range(4)], kind="queue", principal=P)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    logs = [tmp_path / f"{n}.log" for n in nodes]
    procs = []
    for n, log in zip(nodes, logs, strict=True):
        with log.open("w") as sink:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", NODE, pg_database, str(tmp_path), q.id, q.token, n], env=env, stdout=sink, stderr=subprocess.PIPE
                )
            )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(log.read_text().count("done ") for log in logs) < 200:
            assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs if p.stderr and p.poll() is not None]
            time.sleep(0.05)
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    sent: set[str] = set()
    done: dict[str, str] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            if line.startswith("sent "):
                sent.add(line.split(" ", 1)[1])
            elif line.startswith("done ") and line.count(" ") == 2:
                _, body, worker = line.split(" ")
                assert body not in done, f"task {body} was completed twice"
                done[body] = worker
    assert len(done) >= 200
    with psycopg.connect(_plain_dsn(pg_database), autocommit=True) as conn:
        stored = {
            r[0]: (r[1], r[2]) for r in conn.execute("SELECT body, state, result FROM bus_messages WHERE conversation_id = %s", (q.id,))
        }
    missing = sorted(sent - stored.keys())
    assert missing == [], f"acknowledged sends lost: {missing[:5]}"
    for body, worker in done.items():
        assert stored[body] == ("done", worker), (body, stored.get(body))
