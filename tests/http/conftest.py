"""Fixtures that start real servers (see http_support.py) and stop them after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from http_support import Running, SpawnedServer, ThreadServer, http_settings

from memmesh.config import Settings


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start in-process servers: ``serve(limits={...}, auth={...})``; all stopped at the end."""
    started: list[tuple[ThreadServer, Running]] = []

    def start(settings: Settings | None = None, **sections: dict[str, Any]) -> Running:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        server = ThreadServer(settings or http_settings(folder, **sections))
        running = server.start()
        started.append((server, running))
        return running

    yield start
    for server, running in started:
        running.close_clients()
        server.stop()


@pytest.fixture
def server(serve: Callable[..., Running]) -> Running:
    """One open (loopback, no keys) keyword-only server."""
    return serve()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., SpawnedServer]]:
    """Start ``memmesh serve`` subprocesses; each is terminated (by pid) at the end."""
    started: list[SpawnedServer] = []

    def start(db: Path, *args: str, env: dict[str, str] | None = None, ready: bool = True, sigint_ignored: bool = False) -> SpawnedServer:
        proc = SpawnedServer(tmp_path, db, *args, env=env, sigint_ignored=sigint_ignored)
        started.append(proc)
        return proc.wait_ready() if ready else proc

    yield start
    for proc in started:
        proc.terminate()
