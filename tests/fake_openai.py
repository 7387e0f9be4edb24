"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests (http.server).

Tests script what it answers: a queue of :class:`Reply` values consumed one per request
(then ``default``, a callable of the request body). It records every request it received
(headers and JSON body) and how many were in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a status, headers, and either the assistant's text (wrapped in a
    chat completion) or a raw body; ``delay_s`` sleeps first (for timeouts)."""

    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None
    delay_s: float = 0.0


def completion(content: str) -> str:
    return json.dumps(
        {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    )


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default: Callable[[dict[str, Any]], Reply] = lambda body: Reply(content='{"facts": []}')
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    reply = fake.script.pop(0) if fake.script else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                counted = True
                try:
                    reply = reply or fake.default(body)
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    text = reply.raw if reply.raw is not None else completion(reply.content or "")
                    data = text.encode()
                    # no longer in flight once the answer leaves: a client that got it may send
                    # its next request before this thread would reach a `finally`
                    with fake.lock:
                        fake.in_flight -= 1
                        counted = False
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    if counted:
                        with fake.lock:
                            fake.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()
