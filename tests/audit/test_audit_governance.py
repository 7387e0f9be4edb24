"""Every governance decision reaches the audit log in the transaction that makes it (issue 16):
setting and clearing a standard, queueing an action (and by which rule), approving,
rejecting, the apply outcome, advisory mode's would-be refusals, curator runs and rollbacks,
restores and imports. A refused action (403/404/409/422) appends nothing, and the log still
verifies. Python API on SQLite and a real PostgreSQL (scripts/pg_test_server.py: fails, never
skips), the CLI on both, HTTP on a real uvicorn with API keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import keyword_settings
from tests.federation.test_catchup_backends import pg_url
from tests.http.http_support import ThreadServer, http_settings

from memmesh import Memory
from memmesh.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError, PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL, Principal

__all__ = ["pg_url"]

JSON = {"Content-Type": "application/json"}
GOVERNANCE = ("standard.", "pending.", "governance.", "curator.", "admin.")
WRITER = Principal(agent_id="drafter", role="writer", namespaces=["org/*"])
APPROVER = Principal(agent_id="lead", role="approver", namespaces=["org/*"])


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gov.db'}" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture
def mem(url: str, tmp_path: Path) -> Iterator[Memory]:
    memory = Memory(url, keyword_settings(tmp_path))
    yield memory
    memory.close()


def entries(memory: Memory) -> list[Any]:
    return memory.service.audit.entries(principal=LOCAL_PRINCIPAL, limit=1000).entries


def governed(memory: Memory) -> list[tuple[str, str, str | None]]:
    """(action, actor, target) of every governance/admin entry, oldest first."""
    return [(e.action, e.actor, e.target) for e in entries(memory) if e.action.startswith(GOVERNANCE)]


def verified(memory: Memory) -> None:
    report = memory.service.audit.verify(principal=LOCAL_PRINCIPAL)
    assert report.problems == [], report.problems


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_standards_and_decisions_are_audited_with_actor_target_and_digests(mem: Memory) -> None:
    g = mem.service.governance
    mem.set_standard("org/legal", governance={"write": "approve", "update": "approve"}, required_tags=["contract"])
    with pytest.raises(PendingApprovalError) as queued:
        mem.service.add({"content": "NDA v1", "namespace": "org/legal/nda", "tags": ["contract"]}, principal=WRITER)
    first = queued.value.details["pending_id"]
    applied = g.approve(first, reason="secret reason 42", principal=APPROVER)
    memory_id = applied.result["memory_ids"][0]  # type: ignore[index]
    with pytest.raises(PendingApprovalError) as second:
        mem.service.add({"content": "NDA v2", "namespace": "org/legal/nda", "tags": ["contract"]}, principal=WRITER)
    g.reject(second.value.details["pending_id"], reason="duplicate", principal=APPROVER)
    # an update that cannot be applied any more: the memory is gone by approval time
    with pytest.raises(PendingApprovalError) as update:
        mem.service.update(memory_id, {"priority": 9}, principal=WRITER)
    mem.delete(memory_id)
    failed = g.approve(update.value.details["pending_id"], principal=APPROVER)
    assert failed.status == "failed"
    mem.clear_standard("org/legal")

    log = entries(mem)
    mine = [e for e in log if e.action.startswith(GOVERNANCE)]
    writer, approver = "local agent:drafter", "local agent:lead"
    assert [(e.action, e.actor) for e in mine] == [
        ("standard.set", "local"),
        ("pending.queue", writer),
        ("pending.approve", approver),
        ("pending.apply", approver),
        ("pending.queue", writer),
        ("pending.reject", approver),
        ("pending.queue", writer),
        ("pending.approve", approver),
        ("pending.fail", approver),
        ("standard.clear", "local"),
    ]
    by_action = {e.action: e for e in mine}
    set_entry = by_action["standard.set"]
    assert (set_entry.target, set_entry.namespace) == ("org/legal", "org/legal")
    assert set_entry.detail["fields"] == ["governance", "required_tags"] and len(set_entry.detail["digest"]) == 64
    assert mine[-1].detail["digest"] == set_entry.detail["digest"]  # the clear names the standard it removed
    queue = mine[1]
    assert queue.target == first and queue.namespace == "org/legal/nda"
    assert queue.detail["rule"] == {"action": "write", "decision": "approve", "namespace": "org/legal/nda", "set_on": "org/legal"}
    approve = mine[2]
    assert approve.detail["reason_digest"] == sha("secret reason 42")
    assert "secret reason 42" not in json.dumps([e.detail for e in log])  # no free text, digests only
    assert mine[3].detail["result"] == {"memory_ids": [memory_id]}
    assert "error_digest" in mine[8].detail and "result" not in mine[8].detail
    # the approved write is audited between its approval and its outcome
    adds = [e.index for e in log if e.action == "memory.add" and e.target == memory_id]
    assert mine[2].index < adds[0] < mine[3].index
    verified(mem)


def test_refused_governance_actions_append_nothing(mem: Memory) -> None:
    g = mem.service.governance
    mem.set_standard("org/legal", governance={"write": "approve", "delete": "deny"})
    with pytest.raises(PendingApprovalError) as queued:
        mem.service.add({"content": "clause", "namespace": "org/legal"}, principal=WRITER)
    pending_id = queued.value.details["pending_id"]
    before = len(entries(mem))
    with pytest.raises(InvalidInputError):
        mem.set_standard("org/legal", governance={"write": "maybe"})  # 422
    with pytest.raises(InvalidInputError):
        mem.set_standard("org/legal")  # nothing to set: 422
    with pytest.raises(NotFoundError):
        mem.clear_standard("org/other")  # raised inside the clear's transaction: rolled back, no entry
    with pytest.raises(ForbiddenError):
        g.set_standard("org/legal", governance={"write": "allow"}, principal=APPROVER)  # 403
    with pytest.raises(ForbiddenError):
        g.approve(pending_id, principal=WRITER)  # 403: a writer decides nothing
    with pytest.raises(NotFoundError):
        g.approve("no-such-action", principal=APPROVER)
    with pytest.raises(InvalidInputError):
        g.reject(pending_id, reason="x" * 5000, principal=APPROVER)
    assert len(entries(mem)) == before
    assert g.reject(pending_id, principal=APPROVER).status == "rejected"
    after_reject = len(entries(mem))
    with pytest.raises(ConflictError):
        g.approve(pending_id, principal=APPROVER)  # 409: decided once
    with pytest.raises(ConflictError):
        g.reject(pending_id, principal=APPROVER)
    stored = mem.add("free note", namespace="org/free")
    mem.set_standard("org/free", governance={"delete": "deny"})
    counted = len(entries(mem))
    with pytest.raises(Exception, match="denied"):
        mem.delete(stored.id)  # a deny is refused before any transaction: nothing recorded
    assert len(entries(mem)) == counted and counted == after_reject + 2  # the add and the standard
    verified(mem)


def test_advisory_mode_records_what_enforce_would_have_refused(url: str, tmp_path: Path) -> None:
    with Memory(url, keyword_settings(tmp_path, governance={"mode": "advisory"})) as memory:
        memory.set_standard("org/legal", governance={"write": "deny"})
        stored = memory.service.add({"content": "let through", "namespace": "org/legal"}, principal=WRITER)
        assert stored.content == "let through"
        log = governed(memory)
        assert [a for a, _, _ in log] == ["standard.set", "governance.advisory"]
        advisory = next(e for e in entries(memory) if e.action == "governance.advisory")
        assert advisory.actor == "local agent:drafter" and advisory.detail["rule"]["decision"] == "deny"
        assert advisory.detail["action"] == "write" and advisory.namespace == "org/legal"
        verified(memory)


def test_curator_runs_rollbacks_restores_and_imports_are_admin_entries(mem: Memory, tmp_path: Path) -> None:
    for i in range(3):
        mem.add(f"the deploy script lives in ops/deploy.sh (note {i})", namespace="ops", tags=["deploy"])
    report = mem.service.curator.run(principal=LOCAL_PRINCIPAL)
    dry = mem.service.curator.run(dry_run=True, principal=LOCAL_PRINCIPAL)
    rollback = mem.service.curator.rollback(report.run_id, principal=LOCAL_PRINCIPAL)
    runs = [e for e in entries(mem) if e.action.startswith("curator.")]
    assert [(e.action, e.target, e.actor) for e in runs] == [
        ("curator.run", report.run_id, "local"),
        ("curator.run", dry.run_id, "local"),
        ("curator.rollback", report.run_id, "local"),
    ]
    assert runs[0].detail == {"dry_run": False, "operations": report.operations_attempted, "scanned": report.memories_scanned}
    assert runs[1].detail["dry_run"] is True
    assert runs[2].detail == {"restored": rollback.restored, "conflicts": len(rollback.conflicts)}
    with pytest.raises(ConflictError):
        mem.service.curator.rollback(report.run_id, principal=LOCAL_PRINCIPAL)  # twice: refused, nothing appended
    assert len([e for e in entries(mem) if e.action.startswith("curator.")]) == 3

    exported = "\n".join(line.rstrip("\n") for line in mem.service.transfer.export_lines(principal=LOCAL_PRINCIPAL))
    with Memory(f"sqlite:///{tmp_path / 'imported.db'}", keyword_settings(tmp_path / "imp")) as target:
        written = target.import_text(exported, format="jsonl").memories_written
        target.import_text(exported, format="jsonl", dry_run=True)  # a dry run writes nothing: no entry
        imports = [e for e in entries(target) if e.action == "admin.import"]
        assert [(e.target, e.detail["written"], e.actor) for e in imports] == [("jsonl", written, "local")]
        backup = target.service.transfer.backup(tmp_path / "backups", principal=LOCAL_PRINCIPAL)
        restored = target.service.transfer.restore(backup.snapshot, principal=LOCAL_PRINCIPAL)
        last = entries(target)[-1]
        assert (last.action, last.actor, last.target) == ("admin.restore", "local", Path(backup.snapshot).name)
        assert last.detail == {"written": restored.memories_written, "rejected": restored.rejected}
        verified(target)
    verified(mem)


def test_cli_governance_actions_are_in_audit_export_and_verify(cli, url: str) -> None:
    env = {"MEMMESH_DB": url}
    assert cli("namespace", "set-standard", "-n", "org/legal", "--governance", '{"write":"approve"}', extra_env=env).code == 0
    assert cli("store", "NDA", "--namespace", "org/legal", extra_env=env).code == 3
    pending = json.loads(cli("pending", "list", "--json", extra_env=env).out)[0]["id"]
    bad = cli("namespace", "set-standard", "-n", "org/legal", "--governance", '{"write":"yes"}', extra_env=env)
    assert bad.code == 2  # not one of allow, approve, deny: a usage error
    assert cli("pending", "approve", pending, "--reason", "ok", extra_env=env).code == 0
    assert cli("pending", "approve", pending, extra_env=env).code == 1  # decided once: nothing appended
    assert cli("namespace", "clear-standard", "-n", "org/legal", extra_env=env).code == 0
    exported = [json.loads(line) for line in cli("audit", "export", extra_env=env).out.splitlines()]
    assert [(e["action"], e["actor"], e["target"]) for e in exported if e["action"].startswith(GOVERNANCE)] == [
        ("standard.set", "local", "org/legal"),
        ("pending.queue", "local", pending),
        ("pending.approve", "local", pending),
        ("pending.apply", "local", pending),
        ("standard.clear", "local", "org/legal"),
    ]
    ok = cli("audit", "verify", extra_env=env)
    assert ok.code == 0 and "ok: entries 0..5 verified" in ok.out, ok.out + ok.err


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    made = ThreadServer(http_settings(tmp_path))
    running = made.start()
    yield running
    running.close_clients()
    made.stop()


def test_http_decisions_name_the_key_and_refusals_append_nothing(server: Any) -> None:
    service = server.service
    admin = service.create_key("boss", role="admin", principal=LOCAL_PRINCIPAL)  # store-wide: may read the log
    writer = service.create_key("drafter", role="writer", namespaces=["org/*"], principal=LOCAL_PRINCIPAL)
    lead = service.create_key("lead", role="approver", namespaces=["org/*"], principal=LOCAL_PRINCIPAL)
    boss, draft, approver = server.http(admin.key), server.http(writer.key), server.http(lead.key)

    put = boss.put("/api/v1/namespaces/org/legal/standard", json={"governance": {"write": "approve"}}, headers=JSON)
    assert put.status_code == 200, put.text
    queued = draft.post("/api/v1/memories", json={"content": "NDA", "namespace": "org/legal"}, headers=JSON)
    assert queued.status_code == 202, queued.text
    pending_id = queued.json()["error"]["details"]["pending_id"]
    before = service.audit.entries(principal=LOCAL_PRINCIPAL, limit=1000).entries
    refused = [
        draft.put("/api/v1/namespaces/org/legal/standard", json={"governance": {"write": "allow"}}, headers=JSON),  # 403
        boss.put("/api/v1/namespaces/org/legal/standard", json={"governance": {"write": "perhaps"}}, headers=JSON),  # 422
        draft.post(f"/api/v1/pending/{pending_id}/approve", json={}, headers=JSON),  # 403
        boss.delete("/api/v1/namespaces/org/none/standard"),  # 404
    ]
    assert [r.status_code for r in refused] == [403, 422, 403, 404], [r.text for r in refused]
    assert service.audit.entries(principal=LOCAL_PRINCIPAL, limit=1000).entries == before
    approved = approver.post(f"/api/v1/pending/{pending_id}/approve", json={"reason": "fine"}, headers=JSON)
    assert approved.status_code == 200 and approved.json()["status"] == "applied", approved.text
    again = approver.post(f"/api/v1/pending/{pending_id}/approve", json={}, headers=JSON)
    assert again.status_code == 409
    page = boss.get("/api/v1/audit", params={"limit": 1000})
    assert page.status_code == 200, page.text
    rows = page.json()["entries"]
    gov = [(e["action"], e["actor"], e["target"]) for e in rows if e["action"].startswith(GOVERNANCE)]
    assert gov == [
        ("standard.set", f"key:{admin.id} agent:boss", "org/legal"),
        ("pending.queue", f"key:{writer.id} agent:drafter", pending_id),
        ("pending.approve", f"key:{lead.id} agent:lead", pending_id),
        ("pending.apply", f"key:{lead.id} agent:lead", pending_id),
    ]
    assert service.audit.verify(principal=LOCAL_PRINCIPAL).problems == []


def test_mcp_decisions_are_audited_and_tool_errors_append_nothing(cli, url: str, tmp_path: Path) -> None:
    import asyncio
    import os
    import sys

    from mcp import ClientSession, StdioServerParameters, stdio_client

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        {
            "MEMMESH_DB": url,
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
        }
    )
    (tmp_path / "absent.toml").write_text("")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "memmesh.interfaces.cli.app", "mcp", "--profile", "full"], env=env, cwd=str(tmp_path)
    )
    errors: list[str] = []

    async def run() -> str:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()

            async def call(name: str, **arguments: Any) -> tuple[bool, str]:
                result = await session.call_tool(name, arguments)
                text = "".join(getattr(part, "text", "") for part in result.content)
                return bool(getattr(result, "is_error", None) or getattr(result, "isError", False)), text

            refused, text = await call("memory_namespace_set_standard", namespace="org/legal", governance={"write": "approve"})
            assert not refused, text
            bad = await call("memory_namespace_set_standard", namespace="org/legal", governance={"write": "yes"})
            assert bad[0], bad
            errors.append(bad[1])
            await call("memory_store", content="NDA", namespace="org/legal")
            pending = json.loads((await call("memory_pending_list"))[1])
            pending_id = str((pending["items"] if isinstance(pending, dict) else pending)[0]["id"])
            missing = await call("memory_pending_reject", id="no-such-id")
            assert missing[0], missing
            errors.append(missing[1])
            failed, text = await call("memory_pending_reject", id=pending_id, reason="not now")
            assert not failed, text
            again = await call("memory_pending_approve", id=pending_id)  # decided: a tool error
            assert again[0], again
            errors.append(again[1])
            return pending_id

    pending_id = asyncio.run(run())
    assert "governance.write is 'yes'" in errors[0] and "no pending action" in errors[1] and "already rejected" in errors[2], errors
    exported = [json.loads(line) for line in cli("audit", "export", extra_env={"MEMMESH_DB": url}).out.splitlines()]
    assert [(e["action"], e["actor"], e["target"]) for e in exported] == [
        ("standard.set", "local", "org/legal"),
        ("pending.queue", "local", pending_id),
        ("pending.reject", "local", pending_id),
    ]
    assert cli("audit", "verify", extra_env={"MEMMESH_DB": url}).code == 0
