"""The stdio server's lifecycle: ``--db`` after the subcommand, and every request answered before exit.

These talk raw JSON-RPC to a real ``memmesh mcp`` process (not the SDK client), because the
bug they guard against is about what happens when stdin closes right after the last request,
which a well-behaved client session never does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.mcp.conftest import McpEnv

REQUESTS = 6
RUNS = 24


def _frames(n: int) -> bytes:
    """initialize, initialized, then ``n`` tool calls (ids 2..n+1), newline-delimited."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    lines = [init, {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    for i in range(n):
        args = {"content": f"fact number {i} about closing stdin", "namespace": "lifecycle"}
        lines.append({"jsonrpc": "2.0", "id": i + 2, "method": "tools/call", "params": {"name": "memory_store", "arguments": args}})
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _run_once(env: McpEnv, db: Path) -> set[int]:
    """Send everything at once, close stdin, and collect the ids of the answers."""
    proc = subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "mcp", "--db", str(db)],
        input=_frames(REQUESTS),
        capture_output=True,
        env=env.env,
        cwd=env.tmp,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    answered = set()
    for line in proc.stdout.decode().splitlines():
        message = json.loads(line)
        assert "error" not in message, message
        assert not message["result"].get("isError"), message
        answered.add(message["id"])
    return answered


def test_db_after_the_subcommand_is_accepted(mcp_env: McpEnv, tmp_path: Path) -> None:
    """``memmesh mcp --db PATH`` uses PATH (as ``serve --db`` does), not MEMMESH_DB."""
    other = tmp_path / "other.db"
    assert _run_once(mcp_env, other) == set(range(1, REQUESTS + 2))
    from memmesh import Memory

    with Memory(f"sqlite:///{other}", config=str(tmp_path / "absent.toml")) as mem:
        assert len(mem.list(namespace="lifecycle", limit=100).items) == REQUESTS
    assert not mcp_env.db.exists()


@pytest.mark.slow  # long: started first (tests/conftest.py)
def test_every_request_read_before_stdin_closes_is_answered(mcp_env: McpEnv, tmp_path: Path) -> None:
    """24 runs of send-N-requests-then-close: every run answers all N (+ initialize)."""
    expected = set(range(1, REQUESTS + 2))
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda i: _run_once(mcp_env, tmp_path / f"run{i}.db"), range(RUNS)))
    short = [(i, sorted(expected - got)) for i, got in enumerate(results) if got != expected]
    assert short == [], f"runs that lost replies (run, missing ids): {short}"
