"""A background extraction whose process dies is reported failed, not ``running`` forever:
a real process is killed mid-job (its LLM call hangs on the fake server), and a stale row is
written straight into the store; both are read through the public status API."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.conformance.conftest import backend_url, pg_database, pg_server  # noqa: F401 - backend fixtures

from fake_openai import Reply, fake_openai
from memmesh import Memory
from memmesh.config import load_settings
from memmesh.errors import InvalidInputError
from memmesh.model import LOCAL_PRINCIPAL, Kind
from memmesh.store.sqlite import register_functions

TALK = [{"role": "user", "name": "Ana", "content": "I moved to Lyon last month."}]


def open_memory(tmp_path: Path, **extra: object) -> Memory:
    data: dict[str, object] = {"data_dir": str(tmp_path), "embeddings": {"provider": "none"}, **extra}
    settings = load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""})
    return Memory(f"sqlite:///{tmp_path / 'jobs.db'}", settings)


def write_job(db: Path, job_id: str, status: str, updated_at: float) -> None:
    conn = sqlite3.connect(db)
    register_functions(conn)
    with conn:
        conn.execute(
            "INSERT INTO extraction_jobs (id, status, session_id, namespace, created_by, created_at, updated_at) "
            "VALUES (?, ?, 's', 'p', 'local', ?, ?)",
            (job_id, status, updated_at, updated_at),
        )
    conn.close()


def test_a_stale_running_row_is_failed_with_a_reason_and_a_fresh_one_is_not(tmp_path: Path) -> None:
    with open_memory(tmp_path, extraction={"job_stale_s": 60}) as mem:
        mem.add("warm the store up")
    now = time.time()
    stale, queued, fresh, done = (f"ext-01a22b59-8eb7-7282-9203-67fa2cd45b7{n}" for n in range(4))
    write_job(tmp_path / "jobs.db", stale, "running", now - 3600)
    write_job(tmp_path / "jobs.db", queued, "queued", now - 3600)
    write_job(tmp_path / "jobs.db", fresh, "running", now)
    write_job(tmp_path / "jobs.db", done, "done", now - 3600)
    with open_memory(tmp_path, extraction={"job_stale_s": 60}) as mem:
        job = mem.extraction_job(stale)
        assert job.status == "failed" and job.error is not None
        assert "stopped (a crash or restart)" in job.error and "send the messages again" in job.error
        assert mem.extraction_job(queued).status == "failed"  # swept on this process's first poll
        assert mem.extraction_job(fresh).status == "running"  # its owner may well be alive
        assert mem.extraction_job(done).status == "done"


def test_the_stale_limit_is_checked(tmp_path: Path) -> None:
    from memmesh.errors import ConfigError

    with pytest.raises((ConfigError, InvalidInputError, ValueError), match="job_stale_s"):
        open_memory(tmp_path, extraction={"job_stale_s": 0})


CHILD = textwrap.dedent(
    """
    import sys, time
    from memmesh import Memory
    from memmesh.config import load_settings
    from memmesh.model import LOCAL_PRINCIPAL
    data = {"data_dir": sys.argv[1], "embeddings": {"provider": "none"}, "extraction": {"job_stale_s": 3},
            "llm": {"base_url": sys.argv[2], "model": "fake", "timeout_s": 60, "retries": 0}}
    mem = Memory("sqlite:///" + sys.argv[1] + "/jobs.db", load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""}))
    turns = [{"role": "user", "name": "Ana", "content": "I moved to Lyon last month."}]
    result = mem.service.extraction.remember(turns, namespace="p", background=True, principal=LOCAL_PRINCIPAL)
    print(result.job_id, flush=True)
    time.sleep(120)
    """
)


def test_a_killed_process_leaves_a_failed_job_not_a_running_one(tmp_path: Path) -> None:
    with fake_openai() as llm:
        answered = []

        def hang(body: dict[str, object]) -> Reply:
            answered.append(body)
            return Reply(content='{"facts": []}', delay_s=30)

        llm.default = hang
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), llm.url], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            job_id = child.stdout.readline().strip()
            assert job_id.startswith("ext-")
            # a 3 s staleness (the heartbeat beats every 0.75 s): with 1 s, a loaded machine that held
            # the child's heartbeat thread for 0.75 s made a living owner's job look dead
            with open_memory(tmp_path, extraction={"job_stale_s": 3}) as mem:
                deadline = time.monotonic() + 20
                while not answered and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert answered, "the child's job never reached the LLM"
                time.sleep(7.5)  # well past job_stale_s: the living owner's heartbeat keeps it running
                assert mem.extraction_job(job_id).status == "running"
                os.kill(child.pid, signal.SIGKILL)
                child.wait(10)
                deadline = time.monotonic() + 30
                job = mem.extraction_job(job_id)
                while job.status == "running" and time.monotonic() < deadline:
                    time.sleep(0.1)
                    job = mem.extraction_job(job_id)
                assert job.status == "failed" and job.error and "no heartbeat" in job.error
                # the turns the dead process stored are still there
                turns = [m.content for m in mem.get_all(namespace="p", limit=10) if m.kind is Kind.message]
                assert len(turns) == 1 and "I moved to Lyon last month." in turns[0]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)


def test_a_job_finishing_normally_is_not_touched_by_the_heartbeat(tmp_path: Path) -> None:
    with open_memory(tmp_path, extraction={"job_stale_s": 1}) as mem:
        extraction = mem.service.extraction
        result = extraction.remember(TALK, namespace="p", background=True, principal=LOCAL_PRINCIPAL)
        assert result.job_id is not None
        job = extraction.wait(result.job_id, principal=LOCAL_PRINCIPAL)
        assert job.status == "done"
        time.sleep(1.5)
        assert mem.extraction_job(result.job_id).status == "done"


def test_stale_jobs_are_reaped_on_each_backend(tmp_path: Path, backend_url: str) -> None:  # noqa: F811
    """The reaping SQL is one text for both backends: a stale row written through the store."""
    job_id = "ext-01a22b59-8eb7-7282-9203-67fa2cd45b7f"
    with open_memory_at(tmp_path, backend_url) as mem:
        store = mem.service.store
        with store.write() as tx:
            tx.conn.execute(
                store.dialect.q(
                    "INSERT INTO extraction_jobs (id, status, session_id, namespace, created_by, created_at, updated_at) "
                    "VALUES (?, 'running', 's', 'p', 'local', ?, ?)"
                ),
                (job_id, time.time() - 3600, time.time() - 3600),
            )
        job = mem.extraction_job(job_id)
        assert job.status == "failed" and job.error and "no heartbeat for over 60s" in job.error


def open_memory_at(tmp_path: Path, url: str) -> Memory:
    data: dict[str, object] = {"data_dir": str(tmp_path), "embeddings": {"provider": "none"}, "extraction": {"job_stale_s": 60}}
    return Memory(url, load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""}))


def test_serve_fails_the_jobs_a_crashed_server_left_when_it_starts(tmp_path: Path) -> None:
    """No poll needed: starting the server (real uvicorn) sweeps the stale rows."""
    from tests.http.http_support import ThreadServer, http_settings

    settings = http_settings(tmp_path, extraction={"job_stale_s": 60})
    with Memory(str(settings.storage.url), settings) as mem:
        mem.add("warm the store up")
    job_id = "ext-01a22b59-8eb7-7282-9203-67fa2cd45b7e"
    write_job(tmp_path / "memmesh.db", job_id, "running", time.time() - 3600)
    server = ThreadServer(settings)
    running = server.start()
    try:
        with sqlite3.connect(tmp_path / "memmesh.db") as conn:
            status, error = conn.execute("SELECT status, error FROM extraction_jobs WHERE id = ?", (job_id,)).fetchone()
        assert status == "failed" and "stopped (a crash or restart)" in error
        answer = running.http().get(f"/api/v1/remember/jobs/{job_id}")
        assert answer.status_code == 200 and answer.json()["status"] == "failed"
    finally:
        server.stop()
