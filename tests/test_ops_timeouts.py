"""``server.request_timeout_secs``: real slow socket clients against a real ``memmesh serve``.

Slow clients send their headers, or their body, one byte at a time; one opens a connection
and sends nothing. Each must be answered ``408`` and disconnected within the timeout, while
ordinary clients keep being served quickly the whole time.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.http.http_support import SpawnedServer

TIMEOUT = 2.0
TRICKLE_S = 0.2


@dataclass
class SlowResult:
    cut_after: float | None = None
    answer: bytes = b""
    bytes_sent: int = 0


def trickle(port: int, head: bytes, body: bytes, result: SlowResult, give_up: float = 15.0) -> None:
    """Send ``head`` at once and ``body`` one byte per TRICKLE_S (or, with no head, the whole
    request that way); stop when the server answers or closes the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=give_up) as sock:
        if head:
            sock.sendall(head)
        for byte in body:
            readable, _, _ = select.select([sock], [], [], TRICKLE_S)
            if readable:
                break
            try:
                sock.sendall(bytes([byte]))
                result.bytes_sent += 1
            except OSError:
                break
            if time.monotonic() - started > give_up:
                return
        readable, _, _ = select.select([sock], [], [], give_up)
        if readable:
            try:
                while chunk := sock.recv(65536):
                    result.answer += chunk
            except OSError:
                pass
            result.cut_after = time.monotonic() - started


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[SpawnedServer]:
    server = SpawnedServer(tmp_path, tmp_path / "m.db", env={"MEMMESH_SERVER_REQUEST_TIMEOUT_SECS": str(TIMEOUT)})
    try:
        yield server.wait_ready()
    finally:
        server.terminate()


def test_slow_headers_slow_bodies_and_silent_connections_are_cut_while_others_are_served(slow_server: SpawnedServer) -> None:
    headers = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    payload = json.dumps({"content": "a body sent one byte at a time " * 4}).encode()
    post_head = (
        b"POST /api/v1/memories HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
    )
    cases = {
        "headers": (b"", headers),
        "body": (post_head, payload),
        "silent": (b"GET /healthz HTTP/1.1\r\n", b""),  # a start, then nothing at all
    }
    results = {name: SlowResult() for name in cases}
    threads = [
        threading.Thread(target=trickle, args=(slow_server.port, head, body, results[name]), daemon=True)
        for name, (head, body) in cases.items()
    ]
    crowd = [SlowResult() for _ in range(8)]  # more slow header senders holding connections
    threads += [threading.Thread(target=trickle, args=(slow_server.port, b"", headers, r), daemon=True) for r in crowd]
    for thread in threads:
        thread.start()

    latencies = []
    with httpx.Client(base_url=slow_server.url, timeout=5) as http:
        end = time.monotonic() + TIMEOUT + 0.5
        while time.monotonic() < end:  # the whole time the slow clients are connected
            start = time.monotonic()
            assert http.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - start)
            time.sleep(0.1)
        stored = http.post("/api/v1/memories", json={"content": "served while slow clients were being cut off"})
        assert stored.status_code == 201
    assert max(latencies) < 1.0 and len(latencies) >= 10

    for thread in threads:
        thread.join(20)
    for name, result in [*results.items(), *(("crowd", r) for r in crowd)]:
        assert result.cut_after is not None, f"{name}: never cut off"
        assert TIMEOUT - 0.3 <= result.cut_after <= TIMEOUT + 1.5, f"{name}: cut after {result.cut_after:.2f}s"
        status, _, rest = result.answer.partition(b"\r\n")
        assert status == b"HTTP/1.1 408 Request Timeout", f"{name}: {result.answer[:80]!r}"
        body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "request_timeout" and "server.request_timeout_secs" in body["error"]["message"]
    assert results["headers"].bytes_sent < len(headers) and results["body"].bytes_sent < len(payload)

    with httpx.Client(base_url=slow_server.url, timeout=5) as http:
        listed = http.get("/api/v1/memories").json()
    assert [m["content"] for m in listed["items"]] == ["served while slow clients were being cut off"]  # no half-sent body stored
    log = slow_server.log.read_text()
    assert "request not received within 2s" in log and "Traceback" not in log


def test_a_request_sent_at_normal_speed_is_not_affected(slow_server: SpawnedServer) -> None:
    """A request whose bytes arrive promptly, and a kept-alive connection idle between
    requests for longer than the timeout, both work: only the sending of a request is timed."""
    with httpx.Client(base_url=slow_server.url, timeout=10) as http:
        assert http.post("/api/v1/memories", json={"content": "first"}).status_code == 201
        time.sleep(TIMEOUT + 0.5)
        assert http.post("/api/v1/memories", json={"content": "second, on the same client"}).status_code == 201


def _raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` (stopping if the server closes first) and read the answer to its end."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            for start in range(0, len(request), 65536):
                sock.sendall(request[start : start + 65536])
        except OSError:  # the server answered and closed before the rest was sent
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


@pytest.mark.parametrize(
    "padding",
    [
        b"X-Padding: " + b"a" * (20 * 1024 * 1024) + b"\r\n",  # one 20 MB header
        b"".join(b"X-%d: b\r\n" % i for i in range(100_000)),  # 100,000 short ones
    ],
    ids=["one-huge-header", "many-headers"],
)
def test_headers_past_64_kib_are_431_and_the_connection_closes(slow_server: SpawnedServer, padding: bytes) -> None:
    """uvicorn's httptools protocol read any amount of headers (a 20 MB one, 100,000 short
    ones: both answered 200) with no key needed."""
    answer = _raw_exchange(slow_server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + padding + b"\r\n")
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:120]
    error = json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "headers_too_large" and "65536 bytes" in error["message"]
    with httpx.Client(base_url=slow_server.url, timeout=5) as http:
        assert http.get("/healthz").status_code == 200
        ordinary = http.get("/healthz", headers={"X-Padding": "a" * 16_000, "Cookie": "c=" + "b" * 16_000})
        assert ordinary.status_code == 200  # large but ordinary headers pass
        body = {"content": "a body of 600 KB is not a header", "metadata": {"pad": "x" * 12_000}}
        big = http.post(
            "/api/v1/memories", content=json.dumps(body).encode() + b" " * 600_000, headers={"Content-Type": "application/json"}
        )
        assert big.status_code == 201, big.text
    assert "Traceback" not in slow_server.log.read_text()


@pytest.mark.slow
def test_every_worker_applies_the_timeout(tmp_path: Path) -> None:
    """With ``--workers 2`` each worker process gets the guarded protocol (it is passed by reference)."""
    server = SpawnedServer(tmp_path, tmp_path / "w.db", "--workers", "2", env={"MEMMESH_SERVER_REQUEST_TIMEOUT_SECS": str(TIMEOUT)})
    try:
        server.wait_ready()
        results = [SlowResult() for _ in range(4)]
        threads = [threading.Thread(target=trickle, args=(server.port, b"GET /healthz HTTP/1.1\r\n", b"", r)) for r in results]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        for result in results:
            assert result.cut_after is not None and result.cut_after <= TIMEOUT + 1.5
            assert result.answer.startswith(b"HTTP/1.1 408 Request Timeout")
    finally:
        server.terminate()


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def test_sqlite_busy_timeout_is_how_long_a_writer_waits_for_another_process(cli, db_path: Path) -> None:
    """``storage.busy_timeout_ms``: another process holds the write lock; a writer allowed
    200 ms gives up while the lock is still held, with a clear 'try again' (exit 1, nothing
    written); one allowed 30 s waits until the lock is released and succeeds."""
    import subprocess
    import sys

    assert cli("store", "created the database").code == 0
    for busy_ms, hold_s in ((200, 30), (30_000, 5)):
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db_path), str(hold_s)], stdout=subprocess.PIPE, text=True)
        try:
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            result = cli("store", f"written with busy_timeout_ms={busy_ms}", extra_env={"MEMMESH_STORAGE_BUSY_TIMEOUT_MS": str(busy_ms)})
            still_locked = locker.poll() is None
        finally:
            locker.terminate()
            locker.wait(10)
        if busy_ms == 200:
            assert still_locked and result.code == 1, result  # gave up while the other process held the lock
            assert "stayed locked for 200 ms; try again" in result.err and "Traceback" not in result.err
        else:
            assert result.code == 0, result  # started while the lock was held (5 s) and waited for it
    contents = [m["content"] for m in json.loads(cli("list", "--json").out)["items"]]
    assert "written with busy_timeout_ms=30000" in contents and "written with busy_timeout_ms=200" not in contents
