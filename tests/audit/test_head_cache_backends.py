"""The chain head is reused between appends on PostgreSQL too, not read per append (issue 24:
audit overhead per write), and concurrent writer processes on either backend still leave one
dense chain that verifies. Real processes, a real PostgreSQL (from scripts/pg_test_server.py)
and real SQLite files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from memmesh import Memory
from memmesh.audit import log as audit_log
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.store import audit_sql
from pg_support import fresh_pg_database

WRITER = textwrap.dedent(
    """
    import sys
    from memmesh import Memory
    from memmesh.config import load_settings
    url, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = load_settings(None, overrides={"embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory(url, settings) as memory:
        for i in range(count):
            memory.add(f"{tag} write {i}", namespace="other")
    """
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (the test fails, not skips, when PostgreSQL cannot start)."""
    with fresh_pg_database("mm_audit") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("pg_url"))


def open_memory(url: str) -> Memory:
    settings = load_settings(None, overrides={"embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    return Memory(url, settings)


def other_process(url: str, tag: str, count: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    return subprocess.Popen([sys.executable, "-c", WRITER, url, tag, str(count)], env=env)


def test_concurrent_writer_processes_leave_one_dense_verifying_chain(url: str) -> None:
    """This process writes without pause while two other processes write to the same store:
    its cached head goes stale again and again; every write must succeed and chain on."""
    memory = open_memory(url)
    try:
        memory.add("before the others", namespace="mine")
        others = [other_process(url, f"proc {n}", 120) for n in range(2)]
        mine = 0
        while any(p.poll() is None for p in others):
            memory.add(f"mine {mine}", namespace="mine")
            mine += 1
        assert [p.wait(300) for p in others] == [0, 0]
        memory.add("after the others", namespace="mine")
        audit = memory.service.audit
        report = audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok, report.problems
        entries = list(audit.iter_entries(principal=LOCAL_PRINCIPAL))
        assert [e.index for e in entries] == list(range(len(entries)))  # dense: no index skipped or taken twice
        assert len({e.target for e in entries if e.action == "memory.add"}) == 2 + mine + 2 * 120
    finally:
        memory.close()


def test_a_lone_writer_does_not_read_the_head_per_append(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no other writer, appends chain onto the remembered head: the head query runs
    for the first append only, on PostgreSQL as on SQLite (it was one query per write)."""
    memory = open_memory(url)
    try:
        reads = []
        real_head = audit_sql.head
        monkeypatch.setattr(audit_sql, "head", lambda conn: reads.append(1) or real_head(conn))
        for i in range(20):
            memory.add(f"lone write {i}", namespace="lone")
        assert len(reads) <= 1
        report = memory.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok and report.size == 20, report.problems
    finally:
        memory.close()


def test_a_stale_head_after_another_process_wrote_is_rechained_not_lost(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The remembered head is stale once another process appends within the reuse window:
    the next append must land after the other process's entries, not collide or fork. (The
    window is widened so the other process, which takes a while to start, surely falls in it.)"""
    monkeypatch.setattr(audit_log, "HEAD_CACHE_S", 600.0)
    memory = open_memory(url)
    try:
        memory.add("first", namespace="mine")
        assert memory.service.audit._head is not None  # remembered (white-box: what this test exercises)
        other = other_process(url, "between", 3)
        assert other.wait(120) == 0
        memory.add("second", namespace="mine")
        entries = list(memory.service.audit.iter_entries(principal=LOCAL_PRINCIPAL))
        assert [e.index for e in entries] == [0, 1, 2, 3, 4]
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
    finally:
        memory.close()
