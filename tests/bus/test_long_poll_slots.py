"""Long-poll slots against a real ``memmesh serve``: one key cannot take them all, and a wait
whose client went away ends at once instead of holding its slot (and a worker thread) for
nobody until its timeout.

Found by an attacker probe: one reader key opening ``bus.max_long_polls`` waits turned away
every other agent's long-polls, and clients that disconnected mid-wait left their slots
taken, so after ``max_long_polls`` killed clients every new wait got 429.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.http.http_support import SpawnedServer

from memmesh import ConfigError
from memmesh.config import load_settings

CLIENT = textwrap.dedent(
    """
    import json, sys, httpx
    url, method, token, key, body = sys.argv[1:6]
    headers = {"X-Bus-Token": token, **({"Authorization": "Bearer " + key} if key else {})}
    with httpx.Client(timeout=60) as http:
        print("asking", flush=True)
        def ask():
            if method == "GET":
                return http.get(url, headers=headers)
            return http.post(url, headers=headers, json=json.loads(body))
        while ask().status_code == 429:
            pass  # the test's probe held a slot a moment: ask again until this one waits
    """
)
"""A waiting client in its own process, which the test kills mid-wait (SIGKILL: the kernel
closes its socket, as when a client machine or process dies)."""


@pytest.fixture
def start(tmp_path: Path, db_path: Path) -> Iterator[Callable[..., SpawnedServer]]:
    started: list[SpawnedServer] = []

    def run(**bus: int) -> SpawnedServer:
        env = {f"MEMMESH_BUS_{name.upper()}": str(value) for name, value in bus.items()}
        server = SpawnedServer(tmp_path, db_path, env=env)
        started.append(server)
        return server.wait_ready()

    yield run
    for server in started:
        server.terminate()


@pytest.fixture
def clients() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _client(procs: list[subprocess.Popen[bytes]], url: str, token: str, *, body: dict[str, Any] | None = None) -> None:
    method = "GET" if body is None else "POST"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, url, method, token, "", json.dumps(body or {})], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"asking\n"
    procs.append(proc)


def _open(http: httpx.Client, kind: str = "chat", participants: tuple[str, ...] = ("a", "b")) -> tuple[str, dict[str, str]]:
    opened = http.post("/api/v1/bus/conversations", json={"participants": list(participants), "kind": kind})
    assert opened.status_code == 201, opened.text
    return f"/api/v1/bus/conversations/{opened.json()['id']}", {"X-Bus-Token": opened.json()["token"]}


def _until_refused(http: httpx.Client, base: str, auth: dict[str, str], agent: str, setting: str, within: float = 15) -> httpx.Response:
    """A short wait asked again until the server refuses it with 429 naming ``setting``
    (the waits the test started are then all parked in the server)."""
    deadline = time.monotonic() + within
    while True:
        reply = http.get(f"{base}/unread", params={"agent": agent, "wait": 0.2}, headers=auth)
        if reply.status_code == 429:
            assert setting in reply.json()["error"]["message"], reply.text
            return reply
        assert reply.status_code == 200 and reply.json()["messages"] == [], reply.text
        assert time.monotonic() < deadline, f"the waits never filled {setting}"


def test_one_key_holds_at_most_its_share_of_the_long_polls(start: Callable[..., SpawnedServer], cli: Any) -> None:
    root = json.loads(cli("keys", "create", "--agent", "root", "--role", "admin", "--json").out)["key"]
    keys = {name: json.loads(cli("keys", "create", "--agent", name, "--role", "writer", "--json").out)["key"] for name in ("a", "b")}
    server = start(max_long_polls=6, max_long_polls_per_key=2)
    auth_header = {"Authorization": f"Bearer {root}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=auth_header) as admin:
        base, token = _open(admin)
    hog = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {keys['a']}"})
    other = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {keys['b']}"})
    waits: list[httpx.Response] = []

    def park() -> None:
        with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {keys['a']}"}) as http:
            while (reply := http.get(f"{base}/unread", params={"agent": "a", "wait": 6}, headers=token)).status_code == 429:
                pass  # the probe below held a slot a moment: ask again until this one waits
            waits.append(reply)

    parked = [threading.Thread(target=park) for _ in range(2)]
    for thread in parked:
        thread.start()
    try:
        refused = _until_refused(hog, base, token, "a", "bus.max_long_polls_per_key")
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and error["details"]["retry_after"] == 1
        assert refused.headers["retry-after"] == "1"
        assert "this key already has 2 long-polls waiting" in error["message"]
        # the other key's long-poll still waits and is woken as ever, while the first key's
        # two waits hold 2 of the 6 slots
        send = threading.Timer(0.3, lambda: hog.post(f"{base}/messages", json={"from": "a", "body": "hi"}, headers=token))
        send.start()
        woken = other.get(f"{base}/unread", params={"agent": "b", "wait": 10}, headers=token)
        send.join(10)
        assert woken.status_code == 200 and [m["body"] for m in woken.json()["messages"]] == ["hi"], woken.text
        # without a wait the first key is answered at once: only waiting counts
        assert hog.get(f"{base}/unread", params={"agent": "a"}, headers=token).status_code == 200
    finally:
        for thread in parked:
            thread.join(30)
        hog.close()
        other.close()
    assert [w.status_code for w in waits] == [200, 200]


def test_killed_waiting_clients_free_their_slots_at_once(start: Callable[..., SpawnedServer], clients: list[Any]) -> None:
    slots = 4
    server = start(max_long_polls=slots, max_long_polls_per_key=slots)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        base, token = _open(http)
        for _ in range(3):  # 12 killed waits in all, three times the slots
            batch: list[subprocess.Popen[bytes]] = []
            for _ in range(slots):
                _client(batch, f"{server.url}{base}/unread?agent=b&wait=50", token["X-Bus-Token"])
            clients.extend(batch)
            _until_refused(http, base, token, "b", "bus.max_long_polls")
            for proc in batch:
                proc.send_signal(signal.SIGKILL)
            for proc in batch:
                proc.wait(10)
            killed = time.monotonic()
            while True:
                accepted = http.get(f"{base}/unread", params={"agent": "b", "wait": 0.05}, headers=token)
                if accepted.status_code == 200:
                    break
                assert accepted.status_code == 429, accepted.text
                # at once, not at the killed waits' 50 s end (a 1.0 s bound raced a loaded machine)
                assert time.monotonic() - killed < 20, "the killed clients' waits still hold every slot"
                time.sleep(0.02)
        # the freed waits delivered nothing to nobody: a message sent now is unread as ever
        assert http.post(f"{base}/messages", json={"from": "a", "body": "after"}, headers=token).status_code == 201
        assert [m["body"] for m in http.get(f"{base}/unread", params={"agent": "b"}, headers=token).json()["messages"]] == ["after"]


def test_a_claim_whose_client_vanished_takes_no_task(start: Callable[..., SpawnedServer], clients: list[Any]) -> None:
    server = start(max_long_polls=1, max_long_polls_per_key=1)
    lease = 20.0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        queue, token = _open(http, "queue", ("boss", "ghost", "w"))
        chat, chat_token = _open(http)
        _client(clients, f"{server.url}{queue}/claim", token["X-Bus-Token"], body={"worker": "ghost", "wait_s": 50, "lease_s": lease})
        _until_refused(http, chat, chat_token, "b", "bus.max_long_polls")  # the ghost's claim holds the one slot
        clients[0].send_signal(signal.SIGKILL)
        clients[0].wait(10)
        freed = time.monotonic() + 20  # at once, not at the ghost's 50 s wait (1.0 s raced a loaded machine)
        while http.get(f"{chat}/unread", params={"agent": "b", "wait": 0.05}, headers=chat_token).status_code == 429:
            assert time.monotonic() < freed, "the dead worker's claim still waits"
            time.sleep(0.02)
        sent = http.post(f"{queue}/messages", json={"from": "boss", "body": "task-1"}, headers=token)
        assert sent.status_code == 201, sent.text
        asked = time.monotonic()
        got = http.post(f"{queue}/claim", json={"worker": "w", "wait_s": 10, "lease_s": lease}, headers=token)
        assert got.status_code == 200, got.text
        delivery = got.json()["delivery"]
        assert delivery is not None and delivery["message"]["body"] == "task-1"
        assert delivery["attempt"] == 1 and delivery["worker"] == "w", "the vanished claim took the task first"
        assert time.monotonic() - asked < lease / 2, "the task waited for a dead worker's lease to run out"
        history = http.get(f"{queue}/tasks", headers=token).json()["tasks"][0]
        assert "ghost" not in json.dumps(history), history


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MEMMESH_BUS_MAX_LONG_POLLS_PER_KEY": "0"}, ("bus.max_long_polls_per_key", "greater than or equal to 1")),
        (
            {"MEMMESH_BUS_MAX_LONG_POLLS": "8", "MEMMESH_BUS_MAX_LONG_POLLS_PER_KEY": "9"},
            ("max_long_polls_per_key (9)", "max_long_polls (8)"),
        ),
    ],
)
def test_a_per_key_share_out_of_range_is_a_config_error(tmp_path: Path, env: dict[str, str], words: tuple[str, ...]) -> None:
    (tmp_path / "none.toml").write_text("")
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={**env, "MEMMESH_CONFIG": str(tmp_path / "none.toml")})
    for word in words:
        assert word in str(info.value)


def test_the_per_key_share_follows_a_smaller_total_when_left_unset(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")
    small = load_settings(None, env={"MEMMESH_BUS_MAX_LONG_POLLS": "2", "MEMMESH_CONFIG": str(tmp_path / "none.toml")})
    assert (small.bus.max_long_polls, small.bus.max_long_polls_per_key) == (2, 2)
    default = load_settings(None, env={"MEMMESH_CONFIG": str(tmp_path / "none.toml")})
    assert (default.bus.max_long_polls, default.bus.max_long_polls_per_key) == (16, 4)
