"""Real ``memmesh serve`` nodes on 127.0.0.1 for federation tests: start, kill -9, restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tests.http.http_support import free_port, server_env


class Node:
    """One mesh node: its own SQLite store, a fixed port (kept across restarts) and its peers."""

    def __init__(self, tmp_path: Path, name: str, port: int | None = None) -> None:
        self.tmp_path = tmp_path
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db: Path | str = tmp_path / f"{name}.db"
        """A SQLite file, or any store URL (a PostgreSQL node)."""
        self.log = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.args: list[str] = []
        self.env: dict[str, str] = {}
        self.headers: dict[str, str] = {}

    def start(self, *args: str, wait: bool = True) -> Node:
        if args:
            self.args = list(args)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "memmesh.interfaces.cli.app",
                    "serve",
                    "--db",
                    str(self.db),
                    "--port",
                    str(self.port),
                    "--node-id",
                    self.name,
                    *self.args,
                ],
                env={**server_env(self.tmp_path), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 15)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, **kwargs)

    def ids(self) -> set[str]:
        """Every live memory id this node holds."""
        found: set[str] = set()
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = self.call("GET", "/api/v1/memories", params=params).json()
            found |= {m["id"] for m in page["items"]}
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def state(self) -> dict[str, tuple[str, str, str]]:
        """id → (content, winning hlc, winning node) of every live memory: what must converge."""
        out = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = self.call("GET", "/api/v1/memories", params=params).json()
            for m in page["items"]:
                out[m["id"]] = (m["content"], m["version"]["hlc"], m["version"]["node"])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/api/v1/sync/status").json()


def mesh(tmp_path: Path, count: int, *extra: str, names: tuple[str, ...] = ("node-a", "node-b", "node-c", "node-d")) -> list[Node]:
    """``count`` nodes, each with every other one as a peer, started and introduced."""
    nodes = [Node(tmp_path, names[i]) for i in range(count)]
    for node in nodes:
        peers = ",".join(other.url for other in nodes if other is not node)
        node.args = ["--peers", peers, "--catchup-interval-secs", "1", *extra]
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready()
    wait_for(lambda: all(len([p for p in n.status()["peers"] if p.get("node_id")]) == count - 1 for n in nodes), 30, "peers identified")
    return nodes


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


class Proxy:
    """A fault-injecting TCP proxy from one node to another: :meth:`cut` drops every
    connection and refuses new ones (a partition), :meth:`heal` lets traffic through again."""

    def __init__(self, target_port: int) -> None:
        import socket

        self.target_port = target_port
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.blocked = False
        self.live: set[Any] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.live |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: Any, sink: Any) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or self.blocked:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
            with self.lock:
                self.live -= {source, sink}

    def cut(self) -> None:
        import socket

        self.blocked = True
        with self.lock:
            for sock in list(self.live):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def heal(self) -> None:
        self.blocked = False

    def close(self) -> None:
        self.cut()
        self.server.close()


def proxied_mesh(tmp_path: Path, count: int, *extra: str) -> tuple[list[Node], dict[tuple[str, str], Proxy]]:
    """Like :func:`mesh`, but every node reaches every other through its own :class:`Proxy`."""
    names = ("node-a", "node-b", "node-c", "node-d")
    nodes = [Node(tmp_path, names[i]) for i in range(count)]
    proxies = {(src.name, dst.name): Proxy(dst.port) for src in nodes for dst in nodes if src is not dst}
    for node in nodes:
        peers = ",".join(proxies[(node.name, other.name)].url for other in nodes if other is not node)
        node.args = ["--peers", peers, "--catchup-interval-secs", "1", *extra]
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready()
    wait_for(lambda: all(len([p for p in n.status()["peers"] if p.get("node_id")]) == count - 1 for n in nodes), 30, "peers identified")
    return nodes, proxies
