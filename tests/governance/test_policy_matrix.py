"""The policy matrix through the core: allow / approve / deny × every governed action ×
a standard set on the namespace itself or inherited from its parent × caller roles.

Every cell checks the outcome (acted, refused with the rule, or queued with a pending id)
and that a refused or queued action changed nothing; queued cells are then approved and
must take effect exactly as a direct call would have.
"""

from __future__ import annotations

import uuid

import pytest

from memmesh import Memory
from memmesh.errors import ForbiddenError, GovernanceDeniedError, NotFoundError, PendingApprovalError
from memmesh.governance import ACTIONS, DECISIONS
from memmesh.model import LOCAL_PRINCIPAL, Principal, Tier

NS = "org/legal"
WRITER = Principal(agent_id="writer-1", role="writer", namespaces=["org/*"])
ADMIN = Principal(agent_id="admin-1", role="admin", namespaces=["org/*"])
READER = Principal(agent_id="reader-1", role="reader", namespaces=["*"])
APPROVER = Principal(agent_id="approver-1", role="admin", namespaces=["org/legal"])


class Scene:
    """Two memories in NS (made before the standard exists) and the action under test."""

    def __init__(self, mem: Memory) -> None:
        self.svc = mem.service
        self.target = self.svc.add({"content": f"target {uuid.uuid4().hex}", "namespace": NS}, principal=LOCAL_PRINCIPAL).id
        self.other = self.svc.add({"content": f"other {uuid.uuid4().hex}", "namespace": NS}, principal=LOCAL_PRINCIPAL).id
        self.new_content = f"written {uuid.uuid4().hex}"

    def act(self, action: str, who: Principal) -> object:
        svc = self.svc
        if action == "write":
            return svc.add({"content": self.new_content, "namespace": NS}, principal=who)
        if action == "update":
            return svc.update(self.target, {"content": self.new_content}, principal=who)
        if action == "delete":
            return svc.delete(self.target, principal=who)
        if action == "promote":
            return svc.lifecycle.promote(self.target, principal=who)
        return svc.link(self.target, self.other, "related_to", principal=who)

    def done(self, action: str) -> bool:
        """Whether the action took effect."""
        svc, local = self.svc, LOCAL_PRINCIPAL
        if action == "write":
            return any(m.content == self.new_content for m in svc.list(namespace=NS, limit=1000, principal=local).items)
        if action == "update":
            return svc.store.get(self.target).content == self.new_content  # type: ignore[union-attr]
        if action == "delete":
            return svc.store.get(self.target) is None
        if action == "promote":
            return svc.store.get(self.target).tier == Tier.long  # type: ignore[union-attr]
        return any(link.target_id == self.other for link in svc.links(self.target, principal=local))


@pytest.mark.parametrize("inherited", [False, True], ids=["own", "inherited"])
@pytest.mark.parametrize("decision", DECISIONS)
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("who", [WRITER, ADMIN], ids=["writer", "admin"])
def test_policy_cell(mem: Memory, action: str, decision: str, inherited: bool, who: Principal) -> None:
    scene = Scene(mem)
    set_on = "org" if inherited else NS
    mem.service.governance.set_standard(set_on, governance={action: decision}, principal=LOCAL_PRINCIPAL)
    history_before = {mid: len(mem.service.store.history(mid)) for mid in (scene.target, scene.other)}

    if decision == "allow":
        scene.act(action, who)
        assert scene.done(action)
        return
    if decision == "deny":
        with pytest.raises(GovernanceDeniedError) as denied:
            scene.act(action, who)
        rule = denied.value.details["rule"]
        assert rule == {"action": action, "namespace": NS, "decision": "deny", "set_on": set_on}
        assert denied.value.http_status == 403 and set_on in denied.value.message and action in denied.value.message
        assert not scene.done(action)
        assert {mid: len(mem.service.store.history(mid)) for mid in history_before} == history_before
        assert mem.service.governance.pending(status="all", principal=LOCAL_PRINCIPAL) == []
        return
    with pytest.raises(PendingApprovalError) as queued:
        scene.act(action, who)
    pending_id = queued.value.details["pending_id"]
    assert queued.value.http_status == 202 and queued.value.details["rule"]["set_on"] == set_on
    assert not scene.done(action)
    assert {mid: len(mem.service.store.history(mid)) for mid in history_before} == history_before
    listed = mem.service.governance.pending(principal=LOCAL_PRINCIPAL)
    assert [(p.id, p.action, p.namespace, p.rule_namespace, p.requested_by) for p in listed] == [
        (pending_id, action, NS, set_on, who.agent_id)
    ]
    decided = mem.service.governance.approve(pending_id, reason="looks right", principal=APPROVER)
    assert decided.status == "applied", decided.error
    assert (decided.decided_by, decided.reason) == ("approver-1", "looks right") and decided.decided_at is not None
    assert scene.done(action)


@pytest.mark.parametrize("action", ACTIONS)
def test_a_reader_is_refused_by_its_role_whatever_the_standard(mem: Memory, action: str) -> None:
    scene = Scene(mem)
    mem.service.governance.set_standard(NS, governance={action: "allow"}, principal=LOCAL_PRINCIPAL)
    with pytest.raises(ForbiddenError) as refused:
        scene.act(action, READER)
    assert not isinstance(refused.value, GovernanceDeniedError) and "reader" in refused.value.message
    assert not scene.done(action)


def test_the_nearest_standard_wins_per_action(mem: Memory) -> None:
    """org says delete=deny and write=approve; org/legal overrides write=allow only."""
    gov = mem.service.governance
    gov.set_standard("org", governance={"delete": "deny", "write": "approve"}, principal=LOCAL_PRINCIPAL)
    gov.set_standard(NS, governance={"write": "allow"}, principal=LOCAL_PRINCIPAL)
    view = gov.get_standard(f"{NS}/contracts", principal=LOCAL_PRINCIPAL)
    assert view.governance["write"].model_dump() == {"value": "allow", "set_on": NS}
    assert view.governance["delete"].model_dump() == {"value": "deny", "set_on": "org"}
    assert view.governance["link"].model_dump() == {"value": "allow", "set_on": None}
    stored = mem.service.add({"content": "deep write", "namespace": f"{NS}/contracts"}, principal=WRITER)
    with pytest.raises(GovernanceDeniedError) as denied:
        mem.service.delete(stored.id, principal=WRITER)
    assert denied.value.details["rule"]["set_on"] == "org"
    with pytest.raises(PendingApprovalError):
        mem.service.add({"content": "sibling write", "namespace": "org/sales"}, principal=WRITER)


def test_a_link_across_namespaces_takes_the_strictest_rule(mem: Memory) -> None:
    svc = mem.service
    a = svc.add({"content": "in a", "namespace": "org/a"}, principal=LOCAL_PRINCIPAL)
    b = svc.add({"content": "in b", "namespace": "org/b"}, principal=LOCAL_PRINCIPAL)
    svc.governance.set_standard("org/a", governance={"link": "approve"}, principal=LOCAL_PRINCIPAL)
    svc.governance.set_standard("org/b", governance={"link": "deny"}, principal=LOCAL_PRINCIPAL)
    with pytest.raises(GovernanceDeniedError) as denied:
        svc.link(a.id, b.id, principal=WRITER)
    assert denied.value.details["rule"]["set_on"] == "org/b"
    svc.governance.clear_standard("org/b", principal=LOCAL_PRINCIPAL)
    with pytest.raises(PendingApprovalError) as queued:
        svc.link(a.id, b.id, principal=WRITER)
    pending = svc.governance.get_pending(queued.value.details["pending_id"], principal=LOCAL_PRINCIPAL)
    assert sorted(pending.namespaces()) == ["org/a", "org/b"]
    with pytest.raises(NotFoundError):  # an approver of org/a alone may not decide (or see) a link into org/b
        svc.governance.approve(pending.id, principal=Principal(agent_id="a-admin", role="admin", namespaces=["org/a"]))
    assert svc.governance.approve(pending.id, principal=ADMIN).status == "applied"
    assert [link.target_id for link in svc.links(a.id, principal=LOCAL_PRINCIPAL)] == [b.id]


def test_a_batch_with_one_governed_item_waits_as_one_pending_action(mem: Memory) -> None:
    svc = mem.service
    svc.governance.set_standard(NS, governance={"write": "approve"}, principal=LOCAL_PRINCIPAL)
    with pytest.raises(PendingApprovalError) as queued:
        svc.add_many([{"content": "free", "namespace": "org/free"}, {"content": "governed", "namespace": NS}], principal=WRITER)
    assert mem.stats().total == 0
    decided = svc.governance.approve(queued.value.details["pending_id"], principal=ADMIN)
    assert decided.status == "applied" and len(decided.result["memory_ids"]) == 2  # type: ignore[index]
    assert sorted(m.content for m in mem.get_all()) == ["free", "governed"]
    assert {m.agent_id for m in mem.get_all()} == {"writer-1"}


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_bulk_deletes_are_refused_when_any_memory_is_governed(mem: Memory, decision: str) -> None:
    svc = mem.service
    for i in range(3):
        svc.add({"content": f"bulk {i}", "namespace": NS}, principal=LOCAL_PRINCIPAL)
    svc.governance.set_standard(NS, governance={"delete": decision}, principal=LOCAL_PRINCIPAL)
    with pytest.raises(GovernanceDeniedError) as refused:
        svc.delete_all(namespace="org", principal=WRITER)
    assert "bulk" in refused.value.message or "denied" in refused.value.message
    with pytest.raises(GovernanceDeniedError):
        svc.lifecycle.forget(namespace=NS, principal=WRITER)
    assert mem.stats().total == 3
