"""Real ``memmesh serve`` nodes on 127.0.0.1: start, kill -9, restart, and a fault-injecting
TCP proxy between them (partition, delay).

Each node is its own process with its own SQLite store, so a SIGKILL is a real crash and a
cut proxy is a real network partition as far as the nodes can tell.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_env(workdir: Path) -> dict[str, str]:
    """The environment of a spawned node: no inherited ``MEMMESH_*`` settings, an empty
    config file and no embedder, so a run depends on its arguments alone (and starts fast)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (workdir / "absent.toml").write_text("")
    env.update(
        {"MEMMESH_DATA_DIR": str(workdir / "data"), "MEMMESH_CONFIG": str(workdir / "absent.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"}
    )
    return env


class Node:
    """One mesh node: its own SQLite store, a fixed port (kept across restarts) and its peers."""

    def __init__(self, workdir: Path, name: str, port: int | None = None, *, db: Path | str | None = None) -> None:
        self.tmp_path = workdir
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.read_url = self.url
        """Where the chaos clients send register reads: the node itself, or a double in front of it."""
        self.db: Path | str = db if db is not None else workdir / f"{name}.db"
        """A SQLite file, or any store URL (a PostgreSQL node)."""
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.args: list[str] = []
        self.env: dict[str, str] = {}
        self.headers: dict[str, str] = {}
        self.spare: subprocess.Popen[bytes] | None = None
        """The warm process of the next start (:meth:`prepare_spare`), if one is waiting."""
        self.warm_starts = 0
        self.last_ready_s = 0.0
        """How long the last start took to answer ``/readyz``."""
        self.last_start_warm = False
        """Whether the last start was served by a warm spare."""
        """Starts served by a warm spare (the rest started cold)."""

    def command(self) -> list[str]:
        """The ``memmesh serve`` arguments of this node (after ``memmesh``)."""
        return ["serve", "--db", str(self.db), "--port", str(self.port), "--node-id", self.name, *self.args]

    def start(self, *args: str, wait: bool = True) -> Node:
        """Start ``memmesh serve`` (again, after a kill) with ``args`` (or the last ones): in
        the warm spare when :meth:`prepare_spare` made one, else in a new process."""
        if args:
            self.args = list(args)
        spare, self.spare = self.spare, None
        self.last_start_warm = spare is not None and spare.poll() is None and spare.stdin is not None
        if spare is not None and spare.poll() is None and spare.stdin is not None:
            order = {"argv": self.command(), "env": {**node_env(self.tmp_path), **self.env}}
            spare.stdin.write((json.dumps(order) + "\n").encode())
            spare.stdin.close()
            self.proc = spare
            self.warm_starts += 1
        else:
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "memmesh.interfaces.cli.app", *self.command()],
                    env={**node_env(self.tmp_path), **self.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        if wait:
            self.wait_ready()
        return self

    def prepare_spare(self) -> None:
        """Spawn the process of this node's next start now (:mod:`memmesh.chaos.warm`): it
        imports while the node still runs, so a restart after a kill costs only the store's
        recovery and the server's start, not Python's imports."""
        if self.spare is not None and self.spare.poll() is None:
            return
        with self.log.open("ab") as log:
            self.spare = subprocess.Popen(
                [sys.executable, "-m", "memmesh.chaos.warm"],
                env={**node_env(self.tmp_path), **self.env},
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def drop_spare(self) -> None:
        """Let an unused spare go (end of its input: it exits without serving)."""
        spare, self.spare = self.spare, None
        if spare is not None and spare.poll() is None:
            with contextlib.suppress(OSError):
                assert spare.stdin is not None
                spare.stdin.close()
            try:
                spare.wait(10)
            except subprocess.TimeoutExpired:
                spare.kill()
                spare.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> float:
        """Until ``/readyz`` answers 200 (the store is open and the schema current), polled
        every 20 ms; a node that exits first fails with its log's tail. The seconds it took."""
        began = time.monotonic()
        deadline = began + timeout
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
                try:
                    if http.get(self.url + "/readyz").status_code == 200:
                        self.last_ready_s = time.monotonic() - began
                        return self.last_ready_s
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not become ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it is paused); SIGKILL if it does not exit in 30 s.
        A waiting spare stays (the next :meth:`start` uses it); :func:`stop_mesh` lets it go."""
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

    def memories(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every live memory this node holds (in ``namespace`` and below, when given), through
        its public list route (all pages)."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if namespace:
                params["namespace"] = namespace
            if cursor:
                params["cursor"] = cursor
            response = self.call("GET", "/api/v1/memories", params=params)
            response.raise_for_status()
            page = response.json()
            out.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def ids(self) -> set[str]:
        """Every live memory id this node holds."""
        return {m["id"] for m in self.memories()}

    def state(self) -> dict[str, tuple[str, str, str]]:
        """id → (content, winning hlc, winning node) of every live memory: what must converge."""
        return {m["id"]: (m["content"], m["version"]["hlc"], m["version"]["node"]) for m in self.memories()}

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.call("GET", "/api/v1/sync/status").json()
        return status


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 0.1 s; an AssertionError naming ``what`` when it never holds."""
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


def peers_identified(nodes: list[Node]) -> bool:
    """Every node has said hello to every other (each peer's node id is known)."""
    return all(len([p for p in n.status()["peers"] if p.get("node_id")]) == len(nodes) - 1 for n in nodes)


class Proxy:
    """A fault-injecting TCP proxy from one node to another: :meth:`cut` drops every
    connection and refuses new ones (a partition), :meth:`heal` lets traffic through again,
    and ``delay`` (seconds) holds back every chunk in either direction (a slow link)."""

    def __init__(self, target_port: int, avoid: Collection[int] = ()) -> None:
        self.target_port = target_port
        self.server = self._bind(avoid)
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.blocked = False
        self.delay = 0.0
        self.live: set[Any] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _bind(avoid: Collection[int]) -> socket.socket:
        """A listening socket on a port the kernel picks, never one of ``avoid``: the ports
        chosen for nodes that have not bound them yet are free right now, so the kernel may
        hand one to a proxy, and that node would then fail to start ("port already in use")."""
        while True:
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", 0))
            if server.getsockname()[1] not in avoid:
                return server
            server.close()

    def _accept(self) -> None:
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
                if self.delay:
                    time.sleep(self.delay)
                    if self.blocked:
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
        self.blocked = True
        with self.lock:
            for sock in list(self.live):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def heal(self) -> None:
        self.blocked = False
        self.delay = 0.0

    def close(self) -> None:
        self.cut()
        self.server.close()


NAMES = ("node-a", "node-b", "node-c", "node-d", "node-e")


def start_mesh(
    workdir: Path,
    count: int,
    *extra: str,
    proxied: bool = False,
    catchup_secs: float = 1,
    db_for: Callable[[str], Path] | None = None,
    names: Sequence[str] = NAMES,
    env_for: Callable[[Node], dict[str, str]] | None = None,
) -> tuple[list[Node], dict[tuple[str, str], Proxy]]:
    """``count`` nodes, each with every other as a peer (through its own :class:`Proxy` when
    ``proxied``: proxies[(src, dst)] carries src's calls to dst), started and introduced.
    ``db_for(name)`` places a node's SQLite file (default: ``workdir/<name>.db``); ``env_for(node)``
    adds to a node's environment (its settings)."""
    nodes = [Node(workdir, names[i], db=db_for(names[i]) if db_for else None) for i in range(count)]
    ports = {n.port for n in nodes}  # chosen, not yet bound: no proxy may take one
    proxies = {(s.name, d.name): Proxy(d.port, ports) for s in nodes for d in nodes if s is not d} if proxied else {}
    for node in nodes:
        urls = [proxies[(node.name, o.name)].url if proxied else o.url for o in nodes if o is not node]
        node.args = ["--peers", ",".join(urls), "--catchup-interval-secs", str(catchup_secs), *extra]
        if env_for is not None:
            node.env.update(env_for(node))
    try:
        for node in nodes:
            node.start(wait=False)
        for node in nodes:
            node.wait_ready()
        wait_for(lambda: peers_identified(nodes), 60, "peers identified")
    except BaseException:
        stop_mesh(nodes, proxies)
        raise
    return nodes, proxies


def stop_mesh(nodes: list[Node], proxies: dict[tuple[str, str], Proxy]) -> None:
    """Stop every node and close every proxy (always safe to call)."""
    for node in nodes:
        with contextlib.suppress(Exception):
            node.stop()
        with contextlib.suppress(Exception):
            node.drop_spare()
    for proxy in proxies.values():
        proxy.close()
