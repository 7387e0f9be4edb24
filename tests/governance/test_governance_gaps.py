"""Governance gaps of issue 16: the approver role, retention enforced by gc, imports and
restores through governance, updates that would drop a required tag, and the Python
``Memory`` methods for standards and pending actions (plus the CLI for import and gc)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import FakeClock, keyword_settings

from memmesh import Memory
from memmesh.errors import ForbiddenError, GovernanceDeniedError, InvalidInputError, NotFoundError, PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL, Principal

WRITER = Principal(agent_id="drafter", role="writer", namespaces=["org/*"])
APPROVER = Principal(agent_id="lead", role="approver", namespaces=["org/legal/*"])
OTHER_APPROVER = Principal(agent_id="sales-lead", role="approver", namespaces=["org/sales/*"])


def test_memory_methods_for_standards_and_pending(mem: Memory) -> None:
    standard = mem.set_standard("org/legal", governance={"write": "approve"}, required_tags=["contract"])
    assert standard.governance == {"write": "approve"}
    assert mem.get_standard("org/legal/nda").governance["write"].set_on == "org/legal"  # type: ignore[union-attr]
    with pytest.raises(PendingApprovalError) as queued:
        mem.add("NDA v1", namespace="org/legal/nda", tags=["contract"])
    pending_id = queued.value.details["pending_id"]
    assert [p.id for p in mem.pending()] == [pending_id]
    applied = mem.approve(pending_id, reason="ok")
    assert applied.status == "applied" and [m.content for m in mem.get_all()] == ["NDA v1"]
    with pytest.raises(PendingApprovalError) as second:
        mem.add("NDA v2", namespace="org/legal/nda", tags=["contract"])
    assert mem.reject(second.value.details["pending_id"], reason="dup").status == "rejected"
    assert [p.status for p in mem.pending(status="all")] == ["applied", "rejected"]
    assert mem.clear_standard("org/legal").namespace == "org/legal"
    assert mem.add("free again", namespace="org/legal").content == "free again"


def test_the_approver_role_decides_pending_actions_but_is_not_an_admin(mem: Memory) -> None:
    g = mem.service.governance
    mem.set_standard("org/legal", governance={"write": "approve"})
    with pytest.raises(PendingApprovalError) as queued:
        mem.service.add({"content": "clause 7", "namespace": "org/legal/c"}, principal=WRITER)
    pending_id = queued.value.details["pending_id"]
    with pytest.raises(NotFoundError, match="no pending action with id"):
        g.approve(pending_id, principal=OTHER_APPROVER)
    with pytest.raises(ForbiddenError, match="role 'writer' may not do this; it needs 'approver'"):
        g.approve(pending_id, principal=WRITER)
    assert g.approve(pending_id, principal=APPROVER).status == "applied"
    with pytest.raises(ForbiddenError, match="needs 'admin'"):
        g.set_standard("org/legal", governance={"write": "allow"}, principal=APPROVER)
    with pytest.raises(ForbiddenError, match="needs 'admin'"):
        mem.service.create_key("x", role="reader", namespaces=["org/legal/*"], principal=APPROVER)
    # an approver writes like a writer (its own writes still wait for another approver)
    with pytest.raises(PendingApprovalError) as own:
        mem.service.add({"content": "clause 8", "namespace": "org/legal/c"}, principal=APPROVER)
    key = mem.service.create_key("lead", role="approver", namespaces=["org/legal/*"], principal=LOCAL_PRINCIPAL)
    assert key.role == "approver"
    keyed = Principal(agent_id="lead", role="approver", namespaces=["org/legal/*"], key_id=key.id)
    with pytest.raises(ForbiddenError, match="may not approve it"):
        g.approve(own.value.details["pending_id"], principal=keyed)


def test_retention_days_are_enforced_by_gc_audited_and_restorable(mem: Memory, clock: FakeClock) -> None:
    mem.set_standard("logs", retention_days=7)
    mem.set_standard("logs/keep", retention_days=30)
    old = mem.add("deploy log of monday", namespace="logs/app", tier="long")
    kept = mem.add("kept a month", namespace="logs/keep", tier="long")
    elsewhere = mem.add("not governed", namespace="notes", tier="long")
    clock.advance(days=8)
    fresh = mem.add("deploy log of tuesday week", namespace="logs/app", tier="long")
    report = mem.gc()
    assert report.retention_forgotten == 1
    assert {m.id for m in mem.get_all()} == {kept.id, elsewhere.id, fresh.id}
    last = mem.history(old.id)[-1]
    assert (last.event.value, last.actor) == ("delete", "retention")
    audit = mem.service.audit.entries(principal=LOCAL_PRINCIPAL, limit=1000).entries
    assert [(e.action, e.actor) for e in audit if e.target == old.id][-1] == ("memory.delete", "local agent:retention")
    assert mem.gc().retention_forgotten == 0  # idempotent
    clock.advance(days=30)
    assert mem.gc().retention_forgotten == 2  # kept (30 days, its own standard) and fresh
    assert [m.id for m in mem.get_all()] == [elsewhere.id]
    assert mem.service.lifecycle.restore(old.id, principal=LOCAL_PRINCIPAL).id == old.id  # a delete like any other


def test_imports_and_restores_go_through_governance(tmp_path: Path, clock: FakeClock) -> None:
    with Memory(f"sqlite:///{tmp_path / 'src.db'}", keyword_settings(tmp_path / "s"), clock=clock) as source:
        source.add("contract A", namespace="org/legal")
        source.add("free note", namespace="org/misc")
        exported = "\n".join(line.rstrip("\n") for line in source.service.transfer.export_lines(principal=LOCAL_PRINCIPAL))
    with Memory(f"sqlite:///{tmp_path / 'dst.db'}", keyword_settings(tmp_path / "d"), clock=clock) as target:
        target.set_standard("org/legal", governance={"write": "deny"})
        with pytest.raises(GovernanceDeniedError) as denied:
            target.import_text(exported, format="jsonl")
        assert "import into namespace 'org/legal' is denied by the standard set on 'org/legal'" in denied.value.message
        assert target.get_all() == []  # the whole import refused: nothing written, not even org/misc
        target.set_standard("org/legal", governance={"write": "approve"})
        with pytest.raises(GovernanceDeniedError, match="an import is not queued; nothing was written"):
            target.import_text(exported, format="jsonl")
        assert target.get_all() == [] and target.pending(status="all") == []
        # the other importers refuse record by record, with the same reason
        entity = json.dumps({"type": "entity", "name": "Acme", "entityType": "org", "observations": ["signed"]})
        report = target.import_text(entity, format="mcp-memory", namespace="org/legal/mcp")
        assert "needs approval" in json.dumps(report.model_dump(mode="json")) and target.get_all() == []
        target.clear_standard("org/legal")
        assert target.import_text(exported, format="jsonl").memories_written == 2
        # restore (undelete) is a write too
        doc = target.get_all(namespace="org/legal")[0]
        target.delete(doc.id)
        target.set_standard("org/legal", governance={"write": "deny"})
        with pytest.raises(GovernanceDeniedError, match="restore into namespace 'org/legal' is denied"):
            target.service.lifecycle.restore(doc.id, principal=LOCAL_PRINCIPAL)
        assert target.get_all(namespace="org/legal") == []


def test_an_update_may_not_drop_a_required_tag(mem: Memory) -> None:
    mem.set_standard("org/legal", required_tags=["contract", "legal"])
    doc = mem.add("NDA", namespace="org/legal", tags=["contract", "legal", "draft"])
    with pytest.raises(InvalidInputError) as dropped:
        mem.update(doc.id, tags=["legal", "final"])
    assert "without the tag contract that namespace 'org/legal' requires" in dropped.value.message
    assert dropped.value.http_status == 422 and dropped.value.details["missing_tags"] == ["contract"]
    assert mem.get(doc.id).tags == ["contract", "legal", "draft"]  # unchanged
    assert mem.update(doc.id, tags=["contract", "legal", "final"]).tags == ["contract", "legal", "final"]
    assert mem.update(doc.id, content="NDA, signed").content == "NDA, signed"  # tags untouched: fine
    loose = mem.add("stray", namespace="org/misc")
    with pytest.raises(InvalidInputError, match="without the tags contract, legal"):
        mem.update(loose.id, namespace="org/legal")  # moving in without them
    assert mem.get(loose.id).namespace == "org/misc"


def test_cli_import_into_a_denied_namespace_and_gc_report(cli, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"type": "entity", "name": "Acme", "entityType": "org", "observations": ["signed the NDA"]}) + "\n"
    )
    assert cli("namespace", "set-standard", "-n", "org/legal", "--governance", '{"write":"deny"}').code == 0
    refused = cli("import", str(tmp_path / "in.jsonl"), "--format", "mcp-memory", "--namespace", "org/legal", "--json")
    assert "import into namespace 'org/legal' is denied" in refused.out + refused.err
    assert json.loads(cli("list", "--json").out)["items"] == []
    gc = cli("gc")
    assert gc.code == 0 and "forgot 0 past their namespace's retention" in gc.out


def test_writes_that_commit_with_more_than_their_memories_are_refused_not_queued(mem: Memory) -> None:
    # An approval replays only the memories. Queued, a session's turns came back numbered 1
    # each, outside any session (list empty, rehydrate 404), a remembered conversation was
    # never extracted, and a memory stored with links lost its links. Now they are refused
    # under `approve`, saying what to do, and nothing is written or queued.
    mem.set_standard("gov", governance={"write": "approve"})
    writer = Principal(agent_id="w1", role="writer", namespaces=["gov", "free"])
    sessions = mem.service.sessions
    with pytest.raises(GovernanceDeniedError, match=r"a session append into namespace 'gov/s1' needs approval .* turns are numbered"):
        sessions.append("s1", role="user", content="hello", namespace="gov", principal=writer)
    with pytest.raises(GovernanceDeniedError, match="a session append"):
        mem.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Paris."}], namespace="gov", session_id="s2")
    target = mem.add("the target", namespace="free")
    with pytest.raises(GovernanceDeniedError, match=r"a memory stored with links .* store it without links"):
        mem.add("linked", namespace="gov", links=[{"target_id": target.id, "relation": "related_to"}])
    assert mem.pending(status="all") == [] and mem.session_list() == []
    assert [m.content for m in mem.get_all()] == ["the target"]
    with pytest.raises(PendingApprovalError):  # a plain store is still queued
        mem.service.add({"content": "plain", "namespace": "gov"}, principal=writer)
    mem.set_standard("gov", governance={"write": "allow"})
    assert sessions.append("s1", role="user", content="hello", namespace="gov", principal=writer).turn == 1


def test_a_write_with_more_than_its_memories_must_word_its_own_refusal(mem: Memory) -> None:
    # ``unqueued`` had a default (a write ... "write elsewhere") that told a user nothing; every
    # caller passes its own, and a new one that forgets is stopped at once, not under approve.
    def counter(tx: object, stored: list[object]) -> None:
        raise AssertionError("never reached: the call is refused before anything is read")

    with pytest.raises(TypeError, match=r"within= needs unqueued=\(what the write is, why an approval cannot replay it"):
        mem.service.add_many([{"content": "with a counter", "namespace": "free"}], principal=LOCAL_PRINCIPAL, within=counter)
    with pytest.raises(TypeError, match="needs unqueued"):
        mem.service.add_many_outcome([{"content": "with a counter", "namespace": "free"}], principal=LOCAL_PRINCIPAL, within=counter)
    assert mem.get_all() == []
    mem.set_standard("gov", governance={"write": "approve"})
    words = ("a counted write", "the counter would not be replayed", "count it elsewhere")
    with pytest.raises(GovernanceDeniedError, match=r"a counted write into namespace 'gov' needs approval .* count it elsewhere"):
        mem.service.add_many([{"content": "counted", "namespace": "gov"}], principal=LOCAL_PRINCIPAL, within=counter, unqueued=words)
