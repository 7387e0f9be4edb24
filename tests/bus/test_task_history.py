"""A task's history and ids as the bus writes them: the history is stored as the JSON text
``json.dumps`` writes (each event written without the encoder, issue 24), with every event in
order, and message ids are UUIDv7 text."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from memmesh import Memory
from memmesh.model import LOCAL_PRINCIPAL as P

WORKER = "w.0:a@b-c_d"
"""A worker name with every punctuation mark a name may hold."""


def _stored_history(db_path: Path, task_id: str) -> str:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return str(conn.execute("SELECT history FROM bus_messages WHERE id = ?", (task_id,)).fetchone()[0])


def test_a_tasks_history_holds_each_event_as_json_text(mem: Memory, db_path: Path, clock: Any) -> None:
    bus = mem.service.bus
    q = bus.open(["boss", WORKER], kind="queue", principal=P)
    task = bus.send(q.id, "the task", sender="boss", token=q.token, principal=P)
    got = bus.claim(q.id, worker=f"  {WORKER} ", token=q.token, lease_s=5, principal=P)  # a name is taken stripped
    assert got is not None
    clock.advance(seconds=0.25)  # an instant with microseconds (the claim's has none)
    done = bus.complete(q.id, got.attempt_token, worker=WORKER, token=q.token, result="ok", principal=P)

    expected = [
        {"at": "2026-01-01T12:00:00+00:00", "event": "delivered", "attempt": 1, "worker": WORKER},
        {"at": "2026-01-01T12:00:00.250000+00:00", "event": "completed", "attempt": 1, "worker": WORKER},
    ]
    assert done.history == expected
    assert [t.history for t in bus.tasks(q.id, token=q.token, principal=P)] == [expected]
    assert _stored_history(db_path, task.id) == json.dumps(expected), "stored as json.dumps writes it"


def test_a_task_given_back_and_claimed_again_keeps_every_event(mem: Memory, db_path: Path, clock: Any) -> None:
    bus = mem.service.bus
    q = bus.open(["boss", WORKER, "w2"], kind="queue", principal=P)
    task = bus.send(q.id, "the task", sender="boss", token=q.token, principal=P)
    first = bus.claim(q.id, worker=WORKER, token=q.token, lease_s=5, principal=P)
    assert first is not None
    bus.fail(q.id, first.attempt_token, worker=WORKER, token=q.token, reason="try elsewhere", principal=P)
    again = bus.claim(q.id, worker="w2", token=q.token, lease_s=5, principal=P)
    assert again is not None and again.attempt == 2
    done = bus.complete(q.id, again.attempt_token, worker="w2", token=q.token, principal=P, claim_next=True, lease_s=5)

    assert [(e["event"], e["attempt"], e.get("worker")) for e in done.history] == [
        ("delivered", 1, WORKER),
        ("returned", 1, None),
        ("delivered", 2, "w2"),
        ("completed", 2, "w2"),
    ]
    stored = _stored_history(db_path, task.id)
    assert stored == json.dumps(json.loads(stored)) and json.loads(stored) == done.history


def test_message_ids_are_uuid7_text_in_send_order(mem: Memory) -> None:
    bus = mem.service.bus
    q = bus.open(["a", "b"], principal=P)
    ids = [m.id for m in bus.send_many(q.id, [f"m{i}" for i in range(50)], sender="a", token=q.token, principal=P)]
    ids += [bus.send(q.id, "one more", sender="a", token=q.token, principal=P).id]
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
