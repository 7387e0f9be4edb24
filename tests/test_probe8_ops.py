"""Probe of session 7 (probe3) as an SRE: two real ``memmesh serve`` processes on one store
(SQLite file, then PostgreSQL from scripts/pg_test_server.py, which fails, never skips) take
turns at scheduled gc through the ``gc`` lease; ``memmesh doctor`` names the holder; kill -9 the
holder and the other process takes the next turn once the lease ran out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.http.http_support import SpawnedServer, server_env

PG_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pg_test_server.py"
INTERVAL = 1.0
"""gc every second: its lease lasts 0.9 s, so a dead holder blocks nobody for long."""


@pytest.fixture
def pg_probe_url() -> Iterator[str]:
    import psycopg

    done = subprocess.run([sys.executable, str(PG_SCRIPT), "ensure"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    admin = done.stdout.strip().splitlines()[-1]
    name = f"mm_probe8_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(admin).items() if k != "dbname" and v not in (None, "")}
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(params.items()))
    yield f"postgresql:///{name}" + (f"?{query}" if query else "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _doctor(tmp_path: Path, db: str) -> dict[str, str]:
    """``memmesh doctor --json``'s leases check: its detail, and its status."""
    done = subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", db, "doctor", "--json"],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "leases"]
    assert len(found) == 1, done.stdout
    return found[0]


def _holder_pid(tmp_path: Path, db: str, pids: set[int], timeout: float = 60) -> int:
    """The pid (one of ``pids``) doctor names as holding the gc lease now, waiting for one."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        check = _doctor(tmp_path, db)
        assert check["status"] == "ok", check
        seen = check["detail"]
        if "gc held by " in seen:
            holder = seen.split("gc held by ", 1)[1].split(" ", 1)[0]  # host:pid:process:turn
            pid = int(holder.split(":")[1])
            if pid in pids:
                return pid
        time.sleep(0.2)
    raise AssertionError(f"no live gc lease of {pids} seen by doctor; last: {seen!r}")


def _take_over(tmp_path: Path, db: str) -> None:
    """Two servers, gc every second: doctor names one as the holder; kill -9 it; the other
    then holds the lease (a dead holder's lease runs out instead of blocking gc forever)."""
    env = {"MEMMESH_GC_INTERVAL_SECS": str(INTERVAL)}
    servers = [_spawn(tmp_path, db, env) for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready(timeout=60)
        by_pid = {s.proc.pid: s for s in servers}
        first = _holder_pid(tmp_path, db, set(by_pid))
        os.kill(first, signal.SIGKILL)
        by_pid[first].proc.wait(10)
        (survivor,) = set(by_pid) - {first}
        assert _holder_pid(tmp_path, db, {survivor}) == survivor
        log = by_pid[survivor].log.read_text()
        assert "Traceback" not in log, log
    finally:
        for server in servers:
            server.terminate()


def _spawn(tmp_path: Path, db: str, env: dict[str, str]) -> SpawnedServer:
    """``memmesh serve --db DB``; DB a path or a URL (SpawnedServer passes it as given)."""
    return SpawnedServer(tmp_path, db, env=env)  # type: ignore[arg-type]


def test_doctor_names_the_gc_lease_holder_and_a_killed_holder_is_taken_over_sqlite(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", db, "init"], env=server_env(tmp_path), check=True, capture_output=True
    )
    assert _doctor(tmp_path, db)["detail"] == "none held (no server, curator run or gc turn going)"
    _take_over(tmp_path, db)


def test_doctor_names_the_gc_lease_holder_and_a_killed_holder_is_taken_over_postgresql(tmp_path: Path, pg_probe_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", pg_probe_url, "init"],
        env=server_env(tmp_path),
        check=True,
        capture_output=True,
    )
    _take_over(tmp_path, pg_probe_url)
