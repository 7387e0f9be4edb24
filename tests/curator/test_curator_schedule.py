"""The scheduled curator in ``serve``: off by default; with ``[curator] interval_secs`` it
runs on its own, and two ``memmesh serve`` processes on one store never run it at once
(the run lease), checked from the run records they leave."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

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
