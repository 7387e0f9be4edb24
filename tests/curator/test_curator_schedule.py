"""The scheduled curator in ``serve``: off by default; with ``[curator] interval_secs`` it
runs on its own, and two ``memmesh serve`` processes on one store never run it at once
(the run lease), checked from the run records they leave."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from tests.conftest import keyword_settings
from tests.http.http_support import SpawnedServer

from memmesh import Memory


def _seed(db: Path, n: int) -> None:
    with Memory(f"sqlite:///{db}", keyword_settings(db.parent)) as mem:
        mem.add_many(
            [
                {"content": f"fact {i}: service s{i % 97} runs on host h{i % 31} in rack r{i % 7}", "namespace": f"ns{i % 3}"}
                for i in range(n)
            ]
        )


def _runs(db: Path) -> list[tuple[float, float]]:
    with Memory(f"sqlite:///{db}", keyword_settings(db.parent)) as mem:
        runs = mem.curator_runs(limit=1000)
    return sorted((r.started_at.timestamp(), r.completed_at.timestamp()) for r in runs if r.completed_at and not r.dry_run)


def test_serve_does_not_curate_unless_configured(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    _seed(db, 10)
    server = SpawnedServer(tmp_path, db).wait_ready()
    try:
        time.sleep(1.5)
    finally:
        server.terminate()
    assert _runs(db) == []


def test_two_serve_processes_on_one_store_take_turns(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    _seed(db, 3000)
    env = {"MEMMESH_CURATOR_INTERVAL_SECS": "0.2"}
    servers = [SpawnedServer(tmp_path, db, env=env) for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_runs(db)) < 6:
            time.sleep(0.5)
    finally:
        for server in servers:
            server.terminate()
    runs = _runs(db)
    assert len(runs) >= 6, runs
    for (_s1, end), (start, _e2) in itertools.pairwise(runs):
        assert end <= start, f"two runs overlapped: one ended at {end}, the next started at {start}"
    logs = "".join(s.log.read_text() for s in servers)
    assert "Traceback" not in logs


def test_a_killed_run_frees_the_lease_after_lease_secs(tmp_path: Path) -> None:
    """A process that dies holding the run lease (kill -9: no release) blocks runs only until
    the lease runs out, then the next run goes ahead."""
    import signal
    import subprocess
    import sys

    from memmesh.errors import ConflictError

    db = tmp_path / "m.db"
    _seed(db, 5)
    holder = (
        "import os, signal, time, sys\n"
        "from memmesh import Memory\n"
        "from tests.conftest import keyword_settings\n"
        "from pathlib import Path\n"
        f"mem = Memory('sqlite:///{db}', keyword_settings(Path({str(tmp_path)!r}), curator={{'lease_secs': 2}}))\n"
        "assert mem.service.curator.lease.acquire('doomed-run', time.time(), 2) is None\n"
        "print('held', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", holder], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert proc.stdout.strip() == "held" and proc.returncode == -signal.SIGKILL, proc.stderr
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path, curator={"lease_secs": 2})) as mem:
        with pytest.raises(ConflictError, match="doomed-run"):
            mem.curate()  # the dead process's lease is still live
        time.sleep(2.2)
        assert mem.curate().operations_attempted > 0
