"""Pending-action lifecycle, standard fields (default tier, TTL, required tags), modes,
the admin allowlist and bad input, through the core (``service.governance``)."""

from __future__ import annotations

import logging
import multiprocessing
from datetime import timedelta
from pathlib import Path

import pytest
from tests.conftest import keyword_settings

from memmesh import Memory
from memmesh.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError, PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL, Principal, Tier

NS = "org/legal"
WRITER = Principal(agent_id="writer-1", role="writer", namespaces=["org/*"])
ADMIN = Principal(agent_id="admin-1", role="admin", namespaces=["org/*"])


def queue_write(mem: Memory, content: str = "queued", who: Principal = WRITER) -> str:
    with pytest.raises(PendingApprovalError) as queued:
        mem.service.add({"content": content, "namespace": NS}, principal=who)
    return str(queued.value.details["pending_id"])


@pytest.fixture
def gov(mem: Memory) -> Memory:
    mem.service.governance.set_standard(NS, governance={"write": "approve", "delete": "deny"}, principal=LOCAL_PRINCIPAL)
    return mem


def test_an_approved_action_is_applied_exactly_once(gov: Memory) -> None:
    g = gov.service.governance
    pending_id = queue_write(gov)
    assert g.approve(pending_id, principal=ADMIN).status == "applied"
    with pytest.raises(ConflictError) as again:
        g.approve(pending_id, principal=ADMIN)
    assert "already applied by admin-1" in again.value.message and again.value.http_status == 409
    with pytest.raises(ConflictError):
        g.reject(pending_id, principal=ADMIN)
    assert [m.content for m in gov.get_all()] == ["queued"]


def test_a_rejected_action_writes_nothing_and_stays_decided(gov: Memory) -> None:
    g = gov.service.governance
    pending_id = queue_write(gov)
    rejected = g.reject(pending_id, reason="  not this one  ", principal=ADMIN)
    assert (rejected.status, rejected.decided_by, rejected.reason) == ("rejected", "admin-1", "not this one")
    for decide in (g.approve, g.reject):
        with pytest.raises(ConflictError, match="already rejected"):
            decide(pending_id, principal=ADMIN)
    assert gov.get_all() == [] and g.pending(principal=ADMIN) == []
    assert [p.status for p in g.pending(status="all", principal=ADMIN)] == ["rejected"]


def test_unknown_ids_and_statuses_are_clear_errors(gov: Memory) -> None:
    g = gov.service.governance
    for call in (g.approve, g.reject, g.get_pending):
        with pytest.raises(NotFoundError, match="no pending action with id 'nope'"):
            call("nope", principal=ADMIN)
    with pytest.raises(InvalidInputError, match="status 'maybe' is unknown"):
        g.pending(status="maybe", principal=ADMIN)
    with pytest.raises(InvalidInputError, match="reason must be text"):
        g.reject(queue_write(gov), reason="x" * 5000, principal=ADMIN)
    assert len(g.pending(principal=ADMIN)) == 1  # the bad reject decided nothing


def test_approvers_need_admin_for_the_namespace(gov: Memory) -> None:
    g = gov.service.governance
    pending_id = queue_write(gov)
    other_admin = Principal(agent_id="sales-admin", role="admin", namespaces=["org/sales/*"], key_id="k1")
    with pytest.raises(NotFoundError, match="no pending action with id"):
        g.approve(pending_id, principal=other_admin)
    with pytest.raises(NotFoundError, match="no pending action with id"):
        g.get_pending(pending_id, principal=other_admin)
    assert g.pending(principal=other_admin) == []
    with pytest.raises(ForbiddenError, match="needs 'approver'"):
        g.approve(pending_id, principal=Principal(agent_id="w2", role="writer", namespaces=["*"]))
    assert g.get_pending(pending_id, principal=ADMIN).status == "pending"


def test_an_agent_may_not_approve_its_own_request_but_may_withdraw_it(gov: Memory) -> None:
    g = gov.service.governance
    keyed = Principal(agent_id="lead", role="admin", namespaces=["org/*"], key_id="k-lead")
    pending_id = queue_write(gov, who=keyed)
    with pytest.raises(ForbiddenError, match="may not approve it"):
        g.approve(pending_id, principal=keyed)
    assert g.reject(pending_id, reason="withdrawn", principal=keyed).status == "rejected"


def test_a_revoked_requester_key_fails_the_approved_action(gov: Memory) -> None:
    svc = gov.service
    created = svc.create_key("temp-writer", role="writer", namespaces=["org/*"], principal=LOCAL_PRINCIPAL)
    requester = svc.authenticate(created.key)
    pending_id = queue_write(gov, who=requester)
    svc.revoke_key(created.id, principal=LOCAL_PRINCIPAL)
    decided = svc.governance.approve(pending_id, principal=ADMIN)
    assert decided.status == "failed" and "revoked" in (decided.error or "")
    assert gov.get_all() == []


def test_an_approved_action_goes_through_the_core_checks_again(gov: Memory) -> None:
    """Between the request and the approval the same content was stored directly under a title
    clash: the replayed write meets the core's own conflict rule, and the failure is recorded."""
    svc = gov.service
    with pytest.raises(PendingApprovalError) as queued:
        svc.add({"content": "v1", "title": "policy", "namespace": NS}, principal=WRITER)
    svc.governance.set_standard(NS, governance={"delete": "deny"}, principal=LOCAL_PRINCIPAL)
    svc.add({"content": "direct", "title": "policy", "namespace": NS}, principal=WRITER)
    decided = svc.governance.approve(queued.value.details["pending_id"], principal=ADMIN)
    assert decided.status == "failed" and "already has a memory titled 'policy'" in (decided.error or "")
    assert [m.content for m in gov.get_all()] == ["direct"]
    with pytest.raises(ConflictError):
        svc.governance.approve(decided.id, principal=ADMIN)


def test_standard_defaults_shape_new_memories(mem: Memory, clock) -> None:
    g = mem.service.governance
    g.set_standard("team", default_tier="short", ttl_seconds=600, required_tags="Reviewed, team", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError) as missing:
        mem.add("no tags", namespace="team/x", tags=["team"])
    assert "requires the tag reviewed" in missing.value.message and "'team'" in missing.value.message
    assert missing.value.details["missing_tags"] == ["reviewed"]
    stored = mem.add("tagged", namespace="team/x", tags=["reviewed", "team"])
    assert stored.tier == Tier.short and stored.expires_at - stored.created_at == timedelta(seconds=600)
    kept = mem.add("kept", namespace="team/x", tags=["reviewed", "team"], tier="long")
    assert kept.expires_at is None
    own_ttl = mem.add("own ttl", namespace="team/x", tags=["reviewed", "team"], ttl_seconds=60)
    assert own_ttl.expires_at - own_ttl.created_at == timedelta(seconds=60)
    assert mem.stats().total == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"governance": '{"write": "approve"'}, "governance is not valid JSON"),
        ({"governance": "[1, 2]"}, "governance must be a JSON object"),
        ({"governance": {"wirte": "approve"}}, "governance names an unknown action 'wirte': use write, update, delete, promote, link"),
        ({"governance": {"write": "maybe"}}, "governance.write is 'maybe': use one of allow, approve, deny"),
        ({"default_tier": "forever"}, "default_tier 'forever' is not a tier"),
        ({"ttl_seconds": 0}, "ttl_seconds must be a whole number"),
        ({"retention_days": True}, "retention_days must be a whole number"),
        ({"required_tags": [1]}, "required_tags must be a list of tags"),
        ({}, "a standard needs at least one of"),
    ],
)
def test_bad_standards_are_refused_and_change_nothing(mem: Memory, fields: dict, message: str) -> None:
    g = mem.service.governance
    g.set_standard(NS, governance={"delete": "deny"}, principal=LOCAL_PRINCIPAL)
    before = g.list_standards(principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError) as bad:
        g.set_standard(NS, **fields, principal=LOCAL_PRINCIPAL)
    assert message in bad.value.message
    assert g.list_standards(principal=LOCAL_PRINCIPAL) == before


def test_standards_need_an_admin_of_the_namespace_and_bad_namespaces_are_refused(mem: Memory) -> None:
    g = mem.service.governance
    with pytest.raises(ForbiddenError):
        g.set_standard(NS, governance={"write": "deny"}, principal=WRITER)
    with pytest.raises(ForbiddenError):
        g.set_standard("sales", governance={"write": "deny"}, principal=ADMIN)
    with pytest.raises(InvalidInputError):
        g.set_standard("bad namespace!", governance={"write": "deny"}, principal=LOCAL_PRINCIPAL)
    with pytest.raises(NotFoundError, match="has no standard of its own"):
        g.clear_standard(NS, principal=LOCAL_PRINCIPAL)
    assert g.list_standards(principal=LOCAL_PRINCIPAL) == []


def test_admin_allowlist_limits_who_decides(tmp_path: Path, clock) -> None:
    settings = keyword_settings(tmp_path, governance={"admin_agents": ["chief"]})
    with Memory(f"sqlite:///{tmp_path / 'allow.db'}", settings, clock=clock) as mem:
        g = mem.service.governance
        g.set_standard(NS, governance={"write": "approve"}, principal=LOCAL_PRINCIPAL)
        pending_id = queue_write(mem)
        keyed_admin = Principal(agent_id="deputy", role="admin", namespaces=["*"], key_id="k-deputy")
        with pytest.raises(ForbiddenError, match=r"governance\.admin_agents"):
            g.approve(pending_id, principal=keyed_admin)
        with pytest.raises(ForbiddenError, match=r"governance\.admin_agents"):
            g.set_standard("org", governance={"write": "allow"}, principal=keyed_admin)
        chief = Principal(agent_id="chief", role="admin", namespaces=["*"], key_id="k-chief")
        assert g.approve(pending_id, principal=chief).status == "applied"


def test_advisory_mode_acts_and_records_the_would_be_refusal(tmp_path: Path, clock, caplog: pytest.LogCaptureFixture) -> None:
    settings = keyword_settings(tmp_path, governance={"mode": "advisory"})
    with Memory(f"sqlite:///{tmp_path / 'adv.db'}", settings, clock=clock) as mem:
        g = mem.service.governance
        g.set_standard(NS, governance={"write": "approve", "delete": "deny"}, required_tags="contract", principal=LOCAL_PRINCIPAL)
        with caplog.at_level(logging.WARNING, logger="memmesh.governance"):
            stored = mem.service.add({"content": "acts anyway", "namespace": NS}, principal=WRITER)
            mem.service.delete(stored.id, principal=WRITER)
        assert mem.get_all() == []
        records = g.pending(status="advisory", principal=LOCAL_PRINCIPAL)
        assert [(p.action, p.requested_by, p.status) for p in records] == [
            ("write", "writer-1", "advisory"),
            ("delete", "writer-1", "advisory"),
        ]
        assert g.pending(principal=LOCAL_PRINCIPAL) == []
        with pytest.raises(ConflictError):  # an advisory record is not an approvable action
            g.approve(records[0].id, principal=ADMIN)
        text = caplog.text
        assert "would be queued for approval" in text and "would be refused" in text and "requires the tag contract" in text


def test_mode_off_skips_every_check(tmp_path: Path, clock) -> None:
    settings = keyword_settings(tmp_path, governance={"mode": "off"})
    with Memory(f"sqlite:///{tmp_path / 'off.db'}", settings, clock=clock) as mem:
        g = mem.service.governance
        g.set_standard(NS, governance={"write": "deny", "delete": "deny"}, required_tags="contract", principal=LOCAL_PRINCIPAL)
        stored = mem.service.add({"content": "no checks", "namespace": NS}, principal=WRITER)
        mem.service.delete(stored.id, principal=WRITER)
        assert g.pending(status="all", principal=LOCAL_PRINCIPAL) == []


def test_bad_governance_mode_is_a_config_error(tmp_path: Path) -> None:
    from memmesh.errors import ConfigError

    with pytest.raises(ConfigError, match=r"governance\.mode"):
        keyword_settings(tmp_path, governance={"mode": "strict"})


def _approve_in_process(db: str, data_dir: str, pending_id: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from memmesh.errors import ConflictError as Conflict

    settings = keyword_settings(Path(data_dir))
    with Memory(f"sqlite:///{db}", settings) as mem:
        try:
            results.put(mem.service.governance.approve(pending_id, principal=ADMIN).status)
        except Conflict:
            results.put("conflict")


def test_two_processes_approving_at_once_apply_it_once(tmp_path: Path, gov: Memory, db_path: Path) -> None:
    pending_id = queue_write(gov, "raced")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_approve_in_process, args=(str(db_path), str(tmp_path / f"p{i}"), pending_id, results)) for i in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == ["applied", "conflict", "conflict"]
    assert [m.content for m in gov.get_all()] == ["raced"]
    assert len(gov.history(gov.get_all()[0].id)) == 1


def test_governance_settings_follow_the_usual_precedence(tmp_path: Path) -> None:
    from memmesh.config import load_settings

    config = tmp_path / "config.toml"
    config.write_text('[governance]\nmode = "advisory"\nadmin_agents = ["from-file"]\n')
    from_file = load_settings(config, env={})
    assert (from_file.governance.mode, from_file.governance.admin_agents) == ("advisory", ["from-file"])
    env = {"MEMMESH_GOVERNANCE_MODE": "off", "MEMMESH_GOVERNANCE_ADMIN_AGENTS": "alice, bob"}
    from_env = load_settings(config, env=env)
    assert (from_env.governance.mode, from_env.governance.admin_agents) == ("off", ["alice", "bob"])
    flagged = load_settings(config, overrides={"governance": {"mode": "enforce"}}, env=env)
    assert flagged.governance.mode == "enforce"
