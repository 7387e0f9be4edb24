"""Stopping ``memmesh serve`` (a real subprocess): long-polls end at once and answer as empty
polls, writes in flight still commit, and the process ends by the signal that stopped it
(docs/http.md, docs/bus.md "Long-poll")."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest

from memmesh import Client


def _open(http: httpx.Client, kind: str = "chat") -> tuple[str, dict[str, str]]:
    opened = http.post("/api/v1/bus/conversations", json={"participants": ["a", "b"], "kind": kind}).json()
    return opened["conversation_id"], {"X-Bus-Token": opened["token"]}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_answers_waiting_long_polls_at_once_and_keeps_writes(spawn, tmp_path, stop):
    db = tmp_path / "polls.db"
    server = spawn(db, env={"MEMMESH_BUS_MAX_LONG_POLLS": "2"})  # two slots: a third poll's 429 says both polls wait
    http = httpx.Client(base_url=server.url, timeout=60)
    chat, chat_token = _open(http)
    queue, queue_token = _open(http, "queue")
    probe, probe_token = _open(http, "queue")
    unread = f"/api/v1/bus/conversations/{chat}/unread"
    claim = f"/api/v1/bus/conversations/{queue}/claim"
    assert http.get(unread, params={"agent": "b"}, headers=chat_token).status_code == 200  # the routes are warm
    assert http.post(claim, json={"worker": "b"}, headers=queue_token).status_code == 200

    answers: dict[str, Any] = {}

    def poll(name: str, send: Any) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as own:
            started = time.monotonic()
            while (response := send(own)).status_code == 429:  # the probe below held a slot for a moment
                time.sleep(0.05)
            answers[name] = (response.status_code, response.json(), response.headers.get("connection"), time.monotonic() - started)

    polls = [
        threading.Thread(target=poll, args=("unread", lambda c: c.get(unread, params={"agent": "b", "wait": 60}, headers=chat_token))),
        threading.Thread(target=poll, args=("claim", lambda c: c.post(claim, json={"worker": "b", "wait_s": 60}, headers=queue_token))),
    ]
    acknowledged: list[str] = []
    done = threading.Event()

    def writer() -> None:  # writes go on through the stop: every one answered 201 must be stored
        with httpx.Client(base_url=server.url, timeout=30) as own:
            for i in range(10_000):
                if done.is_set():
                    return
                try:
                    response = own.post("/api/v1/memories", json={"id": f"w-{i}", "content": f"write {i}", "namespace": "stop"})
                except httpx.HTTPError:
                    return
                if response.status_code == 201:
                    acknowledged.append(f"w-{i}")

    writing = threading.Thread(target=writer)
    for thread in [*polls, writing]:
        thread.start()
    deadline = time.monotonic() + 60
    while True:  # until both polls wait (a fixed 1.5 s raced a loaded machine): a third poll finds no slot left
        reply = http.post(f"/api/v1/bus/conversations/{probe}/claim", json={"worker": "b", "wait_s": 0.01}, headers=probe_token)
        if reply.status_code == 429:
            assert "2 long-polls already wait" in reply.json()["error"]["message"], reply.text
            break
        assert reply.status_code == 200 and time.monotonic() < deadline, f"the two long-polls never both waited: {answers}"
        time.sleep(0.05)
    assert not answers, answers
    while not acknowledged:  # the writes go on through the stop: the first (the embedder loads) may take seconds under load
        assert time.monotonic() < deadline and writing.is_alive(), "no write was acknowledged before the stop"
        time.sleep(0.05)

    signalled = time.monotonic()
    server.proc.send_signal(stop)
    code = server.proc.wait(50)
    stopped_in = time.monotonic() - signalled
    done.set()
    for thread in [*polls, writing]:
        thread.join(10)
    http.close()

    assert stopped_in < 20, f"the server took {stopped_in:.1f} s to stop: it waited for its long-polls"
    status, body, connection, _ = answers["unread"]
    assert (status, body["messages"], connection) == (200, [], "close")  # an empty poll, on a closing connection
    status, body, connection, _ = answers["claim"]
    assert (status, body["delivery"], body["deliveries"], connection) == (200, None, [], "close")
    log = server.log.read_text()
    assert "stopping: answered 2 waiting long-polls at once" in log, log[-2000:]
    assert "Traceback" not in log, log[-3000:]
    assert code == -stop, f"memmesh serve should end by {stop.name} (got {code}): {log[-1500:]}"

    assert acknowledged
    stored: set[str] = set()
    with Client(spawn(db).url) as m:  # a write answered 201 during the stop is there after a restart
        cursor = None
        while True:
            page = m.list(namespace="stop", limit=1000, cursor=cursor)
            stored |= {item.id for item in page.items}
            if (cursor := page.next_cursor) is None:
                break
    assert set(acknowledged) <= stored


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_ends_by_the_signal_that_stopped_it(spawn, tmp_path, stop):
    """Death by the signal, not an exit code: systemd's default SuccessExitStatus counts death
    by SIGTERM/SIGINT as a clean stop, a shell shows 143/130, and a script stops on Ctrl-C."""
    server = spawn(tmp_path / "signal.db")
    server.proc.send_signal(stop)
    code = server.proc.wait(30)
    log = server.log.read_text()
    assert code == -stop, f"exit {code}: {log[-1500:]}"
    assert "Finished server process" in log and "Traceback" not in log, log[-2000:]


def test_serve_started_with_sigint_ignored_keeps_ignoring_it_and_stops_on_sigterm(spawn, tmp_path):
    """`memmesh serve &` from a script: the shell started it with SIGINT ignored, so that a
    Ctrl-C meant for the foreground command leaves it running (docs/http.md)."""
    server = spawn(tmp_path / "background.db", sigint_ignored=True)
    server.proc.send_signal(signal.SIGINT)
    time.sleep(1)
    assert server.proc.poll() is None and httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(30)
    log = server.log.read_text()
    assert code == -signal.SIGTERM, f"exit {code}: {log[-1500:]}"
    assert "Ctrl-C (SIGINT) is ignored" in log and "Finished server process" in log and "Traceback" not in log, log[-2000:]


_RUN = """
import logging, signal, sys
from fastapi import FastAPI
from memmesh.interfaces.http.server import run_uvicorn
logging.basicConfig(level=logging.INFO)
signal.signal(signal.SIGINT, lambda *_: None)  # swallows the SIGINT uvicorn raises again after its shutdown
try:
    run_uvicorn(FastAPI(), None, host="127.0.0.1", port=0, log_config=None)
except KeyboardInterrupt:
    sys.exit(42)
"""


def test_a_stop_signal_raised_again_into_a_handler_that_returns_still_stops_serving(tmp_path):
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _RUN], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "Uvicorn running" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 42, log.read_text()[-2000:]  # KeyboardInterrupt, as serve() expects, not a return
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("disposition", ["ignored", "blocked"])
def test_die_of_never_exits_0(disposition):
    """die_of after a stop by SIGTERM: it dies of SIGTERM even where SIGTERM was ignored, and
    exits 143 (128 + 15) where it cannot be delivered (blocked)."""
    prepare = {
        "ignored": "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
        "blocked": "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})",
    }[disposition]
    code = f"import signal\nfrom memmesh.interfaces.http.server import die_of\n{prepare}\ndie_of(signal.SIGTERM)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == {"ignored": -signal.SIGTERM, "blocked": 128 + signal.SIGTERM}[disposition], done.stderr
