"""Real servers for the HTTP tests: uvicorn on 127.0.0.1 with a random port.

:class:`ThreadServer` runs the app in a thread of the test process (fast, and the test can
reach the same Service to arrange state); :class:`SpawnedServer` runs ``memmesh serve`` as
a subprocess (for signals and the CLI flags). The fixtures in conftest.py stop them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from tests.signal_support import AS_A_BACKGROUND_JOB, AS_FROM_A_TERMINAL

from memmesh import Client
from memmesh.compose import build
from memmesh.config import Settings, load_settings
from memmesh.interfaces.http.app import create_app
from memmesh.service import Service


def http_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Keyword-only settings on a SQLite file in tmp_path, plus any section overrides."""
    data: dict[str, Any] = {
        "data_dir": str(tmp_path),
        "embeddings": {"provider": "none"},
        "storage": {"url": f"sqlite:///{tmp_path / 'memmesh.db'}"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return load_settings(None, overrides=data, env={})


@dataclass
class Running:
    """A server under test: its URL and (for in-process servers) its service."""

    url: str
    service: Service | None = None
    clients: list[Any] = field(default_factory=list)

    def client(self, key: str | None = None, **options: Any) -> Client:
        made = Client(self.url, api_key=key, **options)
        self.clients.append(made)
        return made

    def http(self, key: str | None = None) -> httpx.Client:
        made = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)
        self.clients.append(made)
        return made

    def close_clients(self) -> None:
        for made in self.clients:
            made.close()


class ThreadServer:
    """``uvicorn.Server`` on a pre-bound socket in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.service = build(settings)
        app = create_app(self.service, settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return Running(url=f"http://127.0.0.1:{self.port}", service=self.service)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        self.service.store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        {"MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_CONFIG": str(tmp_path / "absent.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"}
    )
    (tmp_path / "absent.toml").write_text("")
    return env


class SpawnedServer:
    """``memmesh serve`` in a subprocess; stderr goes to a log file for post-mortems."""

    def __init__(self, tmp_path: Path, db: Path, *args: str, env: dict[str, str] | None = None, sigint_ignored: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"server-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", str(db), "--port", str(self.port), *args],
                env={**server_env(tmp_path), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                # SIGINT as from a terminal, or ignored as `memmesh serve &` from a script: the
                # same whether this test run started in the foreground or in the background
                preexec_fn=AS_A_BACKGROUND_JOB if sigint_ignored else AS_FROM_A_TERMINAL,
            )

    def wait_ready(self, timeout: float = 30) -> SpawnedServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become ready: {self.log.read_text()[-2000:]}")

    def stopped_gracefully(self) -> bool:
        """After :meth:`terminate`: uvicorn finished its shutdown (it then re-raises SIGTERM)."""
        return self.proc.returncode in (0, -signal.SIGTERM) and "Finished server process" in self.log.read_text()

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
