"""An approved action whose applier died is applied exactly once later (issue 15 "Left": it
stayed ``approved`` forever). A real process approves and is killed (SIGKILL at a fault
point) between the decision and the write, or between the write and its outcome; while its
apply lease is live, approving again is a 409 that changes nothing; once the lease has run
out, approving again (or gc) applies it once — one memory, one ``pending.apply`` entry by
``system:recovery`` — and the audit log verifies. SQLite and PostgreSQL
(scripts/pg_test_server.py: fails, never skips)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.conftest import keyword_settings
from tests.federation.test_catchup_backends import pg_url

from memmesh import Memory
from memmesh.errors import ConflictError, PendingApprovalError
from memmesh.governance.recovery import APPLY_LEASE_S, FAULT_ENV
from memmesh.model import LOCAL_PRINCIPAL

__all__ = ["pg_url"]

APPROVER = textwrap.dedent(
    """
    import sys
    from memmesh import Memory
    from memmesh.config import load_settings
    url, data, pending_id = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = load_settings(None, overrides={"data_dir": data, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory(url, settings) as memory:
        memory.approve(pending_id)
    print("not killed")
    """
)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crash.db'}" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def later() -> datetime:
    """A clock past the dead applier's lease."""
    return datetime.now(UTC) + timedelta(seconds=APPLY_LEASE_S + 5)


def approve_and_die(url: str, tmp_path: Path, pending_id: str, point: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")} | {FAULT_ENV: point}
    done = subprocess.run(
        [sys.executable, "-c", APPROVER, url, str(tmp_path / "child"), pending_id], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL and "not killed" not in done.stdout, done.stdout + done.stderr


@pytest.fixture
def queued(url: str, tmp_path: Path) -> Iterator[str]:
    """A write queued for approval in a store that is then closed: the pending id."""
    with Memory(url, keyword_settings(tmp_path)) as memory:
        memory.set_standard("legal", governance={"write": "approve", "delete": "approve"})
        with pytest.raises(PendingApprovalError) as queued:
            memory.add("The supplier contract renews in March.", namespace="legal")
    yield str(queued.value.details["pending_id"])


def outcomes(memory: Memory, pending_id: str) -> list[tuple[str, str]]:
    entries = memory.service.audit.entries(principal=LOCAL_PRINCIPAL, limit=1000).entries
    return [(e.action, e.actor) for e in entries if e.target == pending_id and e.action in ("pending.apply", "pending.fail")]


def test_a_write_killed_after_it_committed_is_recorded_applied_once(url: str, tmp_path: Path, queued: str) -> None:
    approve_and_die(url, tmp_path, queued, "governance.after_apply")
    with Memory(url, keyword_settings(tmp_path)) as memory:
        assert memory.service.governance.get_pending(queued, principal=LOCAL_PRINCIPAL).status == "approved"
        (written,) = memory.get_all()  # the write itself committed before the kill
        with pytest.raises(ConflictError, match="being applied now") as busy:
            memory.approve(queued)  # the dead applier's lease is still live: nothing changes
        assert busy.value.details == {"status": "approved"}
        assert memory.service.governance.get_pending(queued, principal=LOCAL_PRINCIPAL).status == "approved"
        assert outcomes(memory, queued) == []
    with Memory(url, keyword_settings(tmp_path), clock=later) as memory:
        done = memory.approve(queued)
        assert done.status == "applied" and done.result == {"memory_ids": [written.id]}
        assert [m.id for m in memory.get_all()] == [written.id]  # one memory: the replay wrote nothing new
        assert outcomes(memory, queued) == [("pending.apply", "system:recovery local")]
        with pytest.raises(ConflictError, match="already applied"):
            memory.approve(queued)
        assert memory.gc().archived == 0 and len(outcomes(memory, queued)) == 1  # gc finds nothing left to drive
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).problems == []


def test_a_decision_killed_before_its_write_is_applied_by_the_next_gc(url: str, tmp_path: Path, queued: str) -> None:
    approve_and_die(url, tmp_path, queued, "governance.after_claim")
    with Memory(url, keyword_settings(tmp_path)) as memory:
        assert memory.get_all() == []  # decided, never written
        memory.gc()  # the lease is live: gc leaves it to its applier
        assert memory.service.governance.get_pending(queued, principal=LOCAL_PRINCIPAL).status == "approved"
    with Memory(url, keyword_settings(tmp_path), clock=later) as memory:
        memory.gc()
        done = memory.service.governance.get_pending(queued, principal=LOCAL_PRINCIPAL)
        assert done.status == "applied" and [m.content for m in memory.get_all()] == ["The supplier contract renews in March."]
        assert outcomes(memory, queued) == [("pending.apply", "system:recovery agent:local")]
        memory.gc()
        assert len(memory.get_all()) == 1 and len(outcomes(memory, queued)) == 1
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).problems == []


def test_a_delete_killed_after_it_committed_is_applied_not_failed(url: str, tmp_path: Path, queued: str) -> None:
    with Memory(url, keyword_settings(tmp_path)) as memory:
        memory.approve(queued)
        (stored,) = memory.get_all()
        with pytest.raises(PendingApprovalError) as delete:
            memory.delete(stored.id)
    delete_id = str(delete.value.details["pending_id"])
    approve_and_die(url, tmp_path, delete_id, "governance.after_apply")
    with Memory(url, keyword_settings(tmp_path), clock=later) as memory:
        assert memory.get_all() == []
        done = memory.approve(delete_id)
        assert (done.status, done.result, done.error) == ("applied", {"memory_id": stored.id}, None)
        assert outcomes(memory, delete_id) == [("pending.apply", "system:recovery local")]


REDRIVER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from memmesh import Memory
    from memmesh.config import load_settings
    from memmesh.errors import ConflictError
    url, data, pending_id, ahead = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    settings = load_settings(None, overrides={"data_dir": data, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory(url, settings, clock=lambda: datetime.now(UTC) + timedelta(seconds=ahead)) as memory:
        try:
            print(memory.approve(pending_id).status)
        except ConflictError as exc:
            print("conflict", exc.details.get("status"))
    """
)


def test_two_processes_re_driving_at_once_apply_it_once(url: str, tmp_path: Path, queued: str) -> None:
    approve_and_die(url, tmp_path, queued, "governance.after_claim")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    args = [url, str(tmp_path / "child"), queued, str(APPLY_LEASE_S + 5)]
    procs = [subprocess.Popen([sys.executable, "-c", REDRIVER, *args], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    said = sorted(proc.communicate(timeout=120)[0].strip() for proc in procs)
    assert said.count("applied") == 1 and all(s == "applied" or s.startswith("conflict") for s in said), said
    with Memory(url, keyword_settings(tmp_path), clock=later) as memory:
        assert len(memory.get_all()) == 1
        assert len(outcomes(memory, queued)) == 1
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).problems == []
