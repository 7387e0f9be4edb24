"""Subscriptions, their delivery queue and inboxes (one SQL text) on SQLite and PostgreSQL:
queueing from the change feed, signed delivery, retry, dead letter, two processes' worth of
passes never queueing a change twice, and the inbox."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from memmesh import Memory
from memmesh.model import LOCAL_PRINCIPAL, Principal
from memmesh.subscriptions import inbox, signing

L = LOCAL_PRINCIPAL


@pytest.fixture
def hook() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"status": 200, "bodies": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["bodies"].append((dict(self.headers), body))
            self.send_response(state["status"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


def test_queue_deliver_retry_and_dead_letter(
    backend_url: str, open_memory: Callable[..., Memory], hook: dict[str, Any], clock: Any
) -> None:
    settings = {"subscriptions": {"allow_loopback_webhooks": True, "retry_base_s": 5, "max_attempts": 2}}
    mem = open_memory(backend_url, **settings)
    other_process = open_memory(backend_url, **settings)  # a second service on the same store
    sub = mem.subscribe("team", hook["url"])
    first = mem.add("one", namespace="team/a")
    mem.add("elsewhere", namespace="misc")
    # both "processes" queue: each change is queued once
    assert mem.service.subscriptions.enqueue() + other_process.service.subscriptions.enqueue() == 1
    assert other_process.service.subscriptions.deliver_due().delivered == 1
    assert mem.service.subscriptions.deliver_due().delivered == 0
    headers, body = hook["bodies"][0]
    assert signing.verify(sub.secret, headers["X-Memmesh-Timestamp"], headers["X-Memmesh-Signature"], body)
    assert b'"memory.created"' in body and first.id.encode() in body

    hook["status"] = 503
    mem.delete(first.id)
    run = mem.service.subscriptions.run_once(principal=L)
    assert (run.queued, run.retried) == (1, 1)
    clock.advance(seconds=5)
    assert mem.service.subscriptions.run_once(principal=L).dead == 1
    states = sorted(d.state for d in mem.service.subscriptions.deliveries(sub.id, principal=L))
    assert states == ["dead", "delivered"]
    dead = mem.service.subscriptions.deliveries(sub.id, state="dead", principal=L)[0]
    assert dead.last_error == "gave up after 2 attempts: answered HTTP 503" and dead.event == "memory.deleted"
    assert dead.created_at >= clock.now - timedelta(seconds=6)
    assert mem.unsubscribe(sub.id).id == sub.id and mem.subscriptions() == []


def test_inbox_round_trip(mem_on: Memory) -> None:
    mem_on.notify("reviewer", "first", subject="s1", sender="drafter")
    mem_on.notify("reviewer", "second", sender="drafter")
    mem_on.notify("someone-else", "not yours")
    assert [m.body for m in mem_on.inbox("reviewer", mark_read=False)] == ["first", "second"]
    read = mem_on.inbox("reviewer", limit=1)
    assert [m.body for m in read] == ["first"] and read[0].read_at is not None
    assert [m.body for m in mem_on.inbox("reviewer")] == ["second"]
    assert mem_on.inbox("reviewer") == []
    assert [m.subject for m in mem_on.inbox("reviewer", unread_only=False)] == ["s1", None]


def test_inbox_read_pages_past_notes_outside_the_readers_namespaces(mem_on: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "READ_PAGE", 2, raising=False)  # several pages, notes of one instant (FakeClock)
    for i in range(5):
        mem_on.notify("reviewer", f"about b {i}", namespace="b")
    mem_on.notify("reviewer", "about a", namespace="a/x")
    mem_on.notify("reviewer", "for anyone")
    reviewer = Principal(agent_id="reviewer", role="reader", namespaces=["a/*"])
    assert [m.body for m in mem_on.service.inbox.read(limit=1, principal=reviewer)] == ["about a"]
    assert [m.body for m in mem_on.service.inbox.read(principal=reviewer)] == ["for anyone"]
    assert [m.body for m in mem_on.inbox("reviewer")] == [f"about b {i}" for i in range(5)]  # left unread
