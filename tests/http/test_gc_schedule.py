"""Scheduled gc in ``serve`` (``[gc] interval_secs``): two real ``memmesh serve`` processes on
one store take turns (never two runs in one turn), and expired memories get archived;
``POST /api/v1/admin/gc`` runs it now for an admin of every namespace."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any

from tests.conftest import keyword_settings
from tests.http.http_support import SpawnedServer

from memmesh import Memory
from memmesh.model import LOCAL_PRINCIPAL

RUN_LINE = re.compile(r"gc: scheduled run by (\S+) \(turn taken at ([0-9.]+)\): (\d+) archived")


def _live(db: Path) -> int:
    with Memory(f"sqlite:///{db}", keyword_settings(db.parent)) as mem:
        return mem.stats().total


def test_two_serve_processes_take_turns_and_expired_memories_are_archived(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        mem.add_many([{"content": f"short-lived note {i}", "ttl_seconds": 1} for i in range(20)])
        mem.add("kept for good", tier="long")
    interval = 0.5
    env = {"MEMMESH_GC_INTERVAL_SECS": str(interval)}
    servers = [SpawnedServer(tmp_path, db, env=env) for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        started = time.monotonic()
        time.sleep(5)
        elapsed = time.monotonic() - started
    finally:
        for server in servers:
            server.terminate()
    logs = [s.log.read_text() for s in servers]
    assert "Traceback" not in "".join(logs)
    runs = sorted((float(taken), holder, int(archived)) for log in logs for holder, taken, archived in RUN_LINE.findall(log))
    assert len(runs) >= 3, logs
    # the lease lasts 90 % of the interval: whoever runs a turn, no two runs share one
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(runs)]
    assert min(gaps) >= interval * 0.9 - 0.05, gaps
    assert len(runs) <= (elapsed + 2) / (interval * 0.9) + 1
    assert sum(archived for _, _, archived in runs) == 20, runs
    assert _live(db) == 1


def test_serve_gc_off_when_interval_is_zero(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        mem.add("a note", ttl_seconds=1)
    server = SpawnedServer(tmp_path, db, env={"MEMMESH_GC_INTERVAL_SECS": "0"}).wait_ready()
    try:
        time.sleep(1.5)
    finally:
        server.terminate()
    assert not RUN_LINE.search(server.log.read_text())


def test_admin_gc_route(serve: Any) -> None:
    running = serve()
    svc = running.service
    for i in range(3):
        svc.add({"content": f"expiring {i}", "ttl_seconds": 1}, principal=LOCAL_PRINCIPAL)
    admin = svc.create_key("ops", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key
    scoped = svc.create_key("team-admin", role="admin", namespaces=["team/*"], principal=LOCAL_PRINCIPAL).key
    writer = svc.create_key("bot", role="writer", principal=LOCAL_PRINCIPAL).key
    time.sleep(1.2)
    assert running.http().post("/api/v1/admin/gc").status_code == 401
    for key in (scoped, writer):
        refused = running.http(key).post("/api/v1/admin/gc")
        assert refused.status_code == 403 and refused.json()["error"]["message"], refused.text
    done = running.http(admin).post("/api/v1/admin/gc")
    assert done.status_code == 200, done.text
    # all 3: the refused calls archived nothing
    assert done.json() == {"archived": 3, "tombstones_purged": 0, "retention_forgotten": 0}
    assert running.http(admin).post("/api/v1/admin/gc").json()["archived"] == 0
