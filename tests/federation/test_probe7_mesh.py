"""Probe of the mesh surfaces merged in session 6 (standards, pending actions, bus chats):
what a peer may send and what an approval may do. In-process nodes on SQLite: the checks
live in the governance core, the same for both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.federation.test_catchup_backends import node

from memmesh.errors import ForbiddenError, InvalidInputError, PendingApprovalError
from memmesh.federation.changes import SyncBatch, SyncItem
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.model import Principal
from memmesh.service import Service


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    a, b = node(f"sqlite:///{tmp_path / 'a.db'}", "node-a", "node-b"), node(f"sqlite:///{tmp_path / 'b.db'}", "node-b", "node-a")
    yield a, b
    a.close()
    b.close()


def queued_item(a: Service) -> dict[str, Any]:
    """A genuine pending-action feed item from ``a`` (a write queued under ``approve``)."""
    a.governance.set_standard("public", governance={"write": "approve", "delete": "approve"}, principal=P)
    with pytest.raises(PendingApprovalError):
        a.add({"content": "A fact waiting for approval.", "namespace": "public/x"}, principal=P)
    page = a.replica.feed(peer="node-b", since=0, principal=P)
    return next(i.model_dump(mode="json", exclude_none=True) for i in page.items if i.pending is not None)


def with_action(item: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**item, "pending": {**item["pending"], "action": {**item["pending"]["action"], **fields}}}


def push(b: Service, item: dict[str, Any]) -> Any:
    return b.replica.apply(SyncBatch(node="node-a", items=[SyncItem.model_validate(item)]), principal=P)


def state(b: Service) -> Any:
    return (
        [p.model_dump(mode="json") for p in b.governance.pending(status=None, principal=P)],
        b.store.change_counter(),
        sorted(m.id for m in b.store.iter_memories()),
    )


FORGED = {
    "empty payload (approve would crash and leave it stuck 'approved')": ({"payload": {}}, "payload.namespaces"),
    "write without items": ({"payload": {"namespaces": ["public/x"]}}, "needs items"),
    "write items outside its namespaces": (
        {"payload": {"items": [{"content": "x", "namespace": "secret"}], "namespaces": ["public/x"]}},
        "outside the action's namespaces",
    ),
    "delete without memory_id": ({"action": "delete", "payload": {"namespaces": ["public/x"]}}, "needs memory_id"),
    "update without changes": ({"action": "update", "payload": {"memory_id": "m1", "namespaces": ["public/x"]}}, "needs changes"),
    "link without ends": ({"action": "link", "payload": {"source_id": "m1", "namespaces": ["public/x"]}}, "target_id"),
    "applied with no decision": ({"status": "applied"}, "does not fit"),
    "undecided with a decider": ({"decided_by": "mallory", "decided_at": "2026-01-01T00:00:00Z"}, "does not fit"),
    "pending with a result": ({"result": {"memory_ids": ["m9"]}}, "does not fit"),
    "approved without a time": ({"status": "approved", "decided_by": "mallory"}, "does not fit"),
    "failed without an error": ({"status": "failed", "decided_at": "2026-01-01T00:00:00Z"}, "does not fit"),
    "namespace not normal": ({"namespace": "public//x/"}, "normal form"),
    "namespace not among those touched": ({"namespace": "secret"}, "not among"),
    "rule set on an unrelated namespace": ({"rule_namespace": "secret"}, "neither"),
    "requester other than requested_by": ({"requested_by": "alice"}, "is not requested_by"),
    "empty id": ({"id": ""}, "id must be"),
    "huge id": ({"id": "x" * 5000}, "id must be"),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_a_forged_or_malformed_pending_state_is_refused_whole(pair: tuple[Service, Service], case: str) -> None:
    a, b = pair
    item = queued_item(a)
    before = state(b)
    fields, message = FORGED[case]
    with pytest.raises(InvalidInputError, match=message):
        push(b, with_action(item, **fields))
    assert state(b) == before
    assert push(b, item).applied == 1  # the genuine record still goes in


def test_an_approval_never_applies_outside_the_actions_namespaces(pair: tuple[Service, Service]) -> None:
    """A record that says 'delete in public' but names a memory in 'secret' (forged, or the
    memory moved since it was queued): an approver of 'public' must not delete it."""
    a, b = pair
    secret = b.add({"content": "The launch date is a secret.", "namespace": "secret"}, principal=P)
    item = queued_item(a)
    forged = with_action(
        item,
        id="forged-delete",
        action="delete",
        namespace="public",
        rule_namespace="public",
        payload={"memory_id": secret.id, "namespaces": ["public"]},
    )
    assert push(b, forged).applied == 1  # well-formed: the mismatch shows only against this node's memories
    approver = Principal(agent_id="pub-admin", role="approver", namespaces=["public"])
    decided = b.governance.approve("forged-delete", principal=approver)
    assert decided.status == "failed" and decided.error is not None
    assert "outside the namespaces" in decided.error and "(public)" in decided.error
    assert "secret" not in decided.error  # the approver of 'public' is not told where the memory lives
    assert b.get(secret.id, principal=P).content == "The launch date is a secret."


def test_a_memory_moved_after_its_delete_was_queued_is_not_deleted_by_the_approval(tmp_path: Path) -> None:
    """The same rule locally: the approver was asked about 'public', the memory is now in 'vault'."""
    svc = node(f"sqlite:///{tmp_path / 'a.db'}", "node-a", "node-b")
    try:
        memory = svc.add({"content": "A note that will move.", "namespace": "public"}, principal=P)
        svc.governance.set_standard("public", governance={"delete": "approve"}, principal=P)
        with pytest.raises(PendingApprovalError) as queued:
            svc.delete(memory.id, principal=P)
        svc.update(memory.id, {"namespace": "vault"}, principal=P)
        approver = Principal(agent_id="pub-admin", role="approver", namespaces=["public"])
        decided = svc.governance.approve(queued.value.details["pending_id"], principal=approver)
        assert decided.status == "failed" and "outside the namespaces" in (decided.error or "")
        assert "vault" not in (decided.error or "")  # nor where it went
        assert svc.get(memory.id, principal=P).namespace == "vault"
    finally:
        svc.close()


def test_a_peer_key_made_for_one_node_cannot_speak_for_another(tmp_path: Path) -> None:
    """node-b's key pushing as node-c with a huge ``upto`` would move node-c's cursor on a, so
    node-c's real pushes were skipped as 'already applied'; the batch is refused (403)."""
    a = node(f"sqlite:///{tmp_path / 'a.db'}", "node-a", "node-b")
    c = node(f"sqlite:///{tmp_path / 'c.db'}", "node-c", "node-a")
    try:
        a.replica.known("node-c", None)
        b_key = Principal(agent_id="node-b", role="peer", namespaces=["*"], key_id="kb")
        c_key = Principal(agent_id="node-c", role="peer", namespaces=["*"], key_id="kc")
        counter = a.store.change_counter()
        with pytest.raises(ForbiddenError, match="made for node 'node-b'"):
            a.replica.apply(SyncBatch(node="node-c", since=0, upto=10**9, items=[]), principal=b_key)
        with pytest.raises(ForbiddenError, match="made for node 'node-b'"):
            a.replica.feed(peer="node-c", since=counter, principal=b_key)
        assert {p.node_id: p.recv_seq for p in a.store.peers()}["node-c"] == 0
        written = c.add({"content": "Node c's own fact.", "namespace": "ops"}, principal=P)
        page = c.replica.feed(peer="node-a", since=0, principal=P)
        assert a.replica.apply(page, principal=c_key).applied >= 1  # c itself still gets through
        assert a.get(written.id, principal=P).content == "Node c's own fact."
        lead = Principal(agent_id="mesh-ops", role="peer", namespaces=["*"], key_id="km")  # not a node id: not bound
        assert a.replica.apply(SyncBatch(node="node-c", items=[]), principal=lead).applied == 0
    finally:
        a.close()
        c.close()
