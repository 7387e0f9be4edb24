"""The server both permission matrices call (tests/test_permissions.py over HTTP,
tests/test_permissions_mcp.py over MCP at /mcp): one SQLite store, a key per role × (every
namespace, only :data:`permission_rules.OWN`), and the real HTTP app on uvicorn on 127.0.0.1.

Kept in one place so both matrices check the same callers against the same app."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from memmesh.compose import build
from memmesh.config import load_settings
from memmesh.interfaces.http.app import create_app
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.service import Service
from permission_rules import OWN, ROLES

START_TIMEOUT_S = 30.0


@dataclass
class MatrixServer:
    base_url: str
    service: Service
    keys: dict[tuple[str, bool], str]
    """Bearer key of each (role, scoped to OWN)."""
    app: Any


@contextmanager
def matrix_server(folder: Path, **overrides: Any) -> Iterator[MatrixServer]:
    """Serve a fresh store in ``folder`` (settings ``overrides`` added to the matrix's own:
    no embedder, no rate limit) until the block ends."""
    settings = load_settings(
        None,
        overrides={
            "data_dir": str(folder),
            "embeddings": {"provider": "none"},
            "storage": {"url": f"sqlite:///{folder / 'perm.db'}"},
            "limits": {"rate_limit_per_minute": 0},
            **overrides,
        },
        env={"MEMMESH_CONFIG": ""},
    )
    service = build(settings)
    keys = {
        (role, scoped): service.create_key(
            f"{role}-{'scoped' if scoped else 'all'}", role=role, namespaces=[OWN] if scoped else ["*"], principal=LOCAL_PRINCIPAL
        ).key
        for role in ROLES
        for scoped in (False, True)
    }
    app = create_app(service, settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield MatrixServer(f"http://127.0.0.1:{sock.getsockname()[1]}", service, keys, app)
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()
        service.store.close()
