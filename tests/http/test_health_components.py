"""/readyz reports every component, and the HTTP face stays usable after an internal error."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from memmesh.model import LOCAL_PRINCIPAL
from memmesh.store.sqlite import register_functions


def test_readyz_names_an_unreachable_peer_and_stays_ready(spawn: Any, tmp_path: Path) -> None:
    server = spawn(tmp_path / "node.db", "--peers", "http://127.0.0.1:1")
    deadline = time.monotonic() + 20
    while True:
        reply = httpx.get(server.url + "/readyz", timeout=10)
        body = reply.json()
        if body["components"]["peers"]["status"] == "degraded" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply.status_code == 200, reply.text  # a node whose peers are down still serves
    assert body["status"] == "degraded" and body["peers"] == 1 and body["peers_up"] == 0
    assert "127.0.0.1:1" in body["components"]["peers"]["reason"]
    assert body["components"]["store"] == {"status": "ok"}
    assert set(body["components"]) == {"store", "writes", "vector_index", "embedder", "peers", "outbox", "workers", "bus", "audit"}
    # open to anyone: statuses and reasons, never a count of what the store holds
    for part in body["components"].values():
        assert set(part) <= {"status", "reason"}


def _exchange(sock: socket.socket, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 request on an open (keep-alive) connection; its status and body."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), body


def test_a_keep_alive_connection_stays_usable_after_a_500(serve: Any) -> None:
    server = serve()
    service = server.service
    conv = service.bus.open(["a", "b"], principal=LOCAL_PRINCIPAL)
    # a damaged row (participants that are not JSON), written behind memmesh's back: reading
    # the conversation fails inside the server, an internal error
    conn = sqlite3.connect(service.store.path)
    register_functions(conn)
    conn.execute("UPDATE bus_conversations SET participants = '{not json' WHERE id = ?", (conv.id,))
    conn.commit()
    conn.close()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        status, body = _exchange(sock, "/api/v1/bus/conversations")
        assert status == 500, body
        error = json.loads(body)["error"]
        assert error["code"] == "internal_error" and conv.token not in body.decode()
        for _ in range(3):  # the same connection answers the next requests
            status, body = _exchange(sock, "/healthz")
            assert status == 200 and json.loads(body) == {"status": "ok"}
        status, body = _exchange(sock, "/api/v1/memories")
        assert status == 200
