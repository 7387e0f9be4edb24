"""Pending actions and their decisions replicate (issue 15, schema 20): an action queued on
one node is visible and decidable on every node; a decision made anywhere is recorded
everywhere and a second approve is 409; two approves made at once on partitioned nodes apply
one effect (the queued write names its memory id, so both writes are one memory) and settle
on one decision record; an applied action wins over a concurrent reject; malformed decisions
are refused whole. In-process nodes on both backends, real ``memmesh serve`` nodes for HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.federation.mesh_support import mesh, wait_for
from tests.federation.test_catchup_backends import pg_url
from tests.federation.test_replicate_standards import pair, replay, sync

from memmesh.errors import ConflictError, InvalidInputError, PendingApprovalError
from memmesh.federation.changes import SyncBatch, SyncItem
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.service import Service

__all__ = ["pair", "pg_url"]


def queue_write(a: Service, b: Service) -> str:
    """A ``write = approve`` standard on both nodes and one write queued on ``a``: its id."""
    a.governance.set_standard("legal", governance={"write": "approve"}, principal=P)
    with pytest.raises(PendingApprovalError) as queued:
        a.add({"content": "The supplier contract renews in March.", "namespace": "legal"}, principal=P)
    sync(a, b)
    return str(queued.value.details["pending_id"])


def record(service: Service, pending_id: str) -> dict[str, Any]:
    found = service.governance.get_pending(pending_id, principal=P)
    return found.model_dump(mode="json")


def memories(service: Service) -> list[tuple[str, str, str]]:
    return sorted((m.id, m.namespace, m.content) for m in service.store.iter_memories())


def test_an_action_queued_on_one_node_is_approved_on_another_and_applied_once(pair: tuple[Service, Service]) -> None:
    a, b = pair
    pending_id = queue_write(a, b)
    assert record(b, pending_id)["status"] == "pending"

    decided = b.governance.approve(pending_id, principal=P)
    assert decided.status == "applied" and decided.result is not None
    (memory_id,) = decided.result["memory_ids"]
    decision = sync(b, a)
    assert record(a, pending_id) == record(b, pending_id)
    assert memories(a) == memories(b) and [m[0] for m in memories(a)] == [memory_id]
    counter = a.store.change_counter()
    assert replay(decision, a).applied == 0  # the decision and its write, pushed again: nothing changes
    assert a.store.change_counter() == counter and record(a, pending_id) == record(b, pending_id)
    with pytest.raises(ConflictError, match="already applied"):
        a.governance.approve(pending_id, principal=P)
    with pytest.raises(ConflictError):
        a.governance.reject(pending_id, principal=P)
    assert memories(a) == memories(b)  # nothing applied twice


def test_concurrent_approves_on_partitioned_nodes_converge_to_one_effect(pair: tuple[Service, Service]) -> None:
    a, b = pair
    pending_id = queue_write(a, b)
    # partitioned: both approve and apply
    on_a = a.governance.approve(pending_id, principal=P)
    time.sleep(0.01)
    on_b = b.governance.approve(pending_id, principal=P)
    assert on_a.status == on_b.status == "applied" and on_a.result == on_b.result
    sync(a, b)
    sync(b, a)
    sync(a, b)
    assert memories(a) == memories(b) and len(memories(a)) == 1  # one memory: the queued id on both sides
    assert record(a, pending_id) == record(b, pending_id)
    assert a.replica.conflicts(principal=P) == b.replica.conflicts(principal=P)
    assert [h.event.value for h in a.history(on_a.result["memory_ids"][0], principal=P)].count("add") >= 1


def test_an_applied_action_wins_over_a_concurrent_reject(pair: tuple[Service, Service]) -> None:
    a, b = pair
    pending_id = queue_write(a, b)
    b.governance.reject(pending_id, reason="not now", principal=P)
    time.sleep(0.01)
    a.governance.approve(pending_id, principal=P)  # later, and applied: its write already exists
    sync(b, a)
    sync(a, b)
    assert record(a, pending_id)["status"] == record(b, pending_id)["status"] == "applied"
    assert record(a, pending_id) == record(b, pending_id)
    assert memories(a) == memories(b) and len(memories(b)) == 1


def test_a_malformed_pending_action_in_a_batch_is_refused_and_nothing_is_written(pair: tuple[Service, Service]) -> None:
    a, b = pair
    a.governance.set_standard("legal", governance={"write": "approve"}, principal=P)
    with pytest.raises(PendingApprovalError) as queued:
        a.add({"content": "A clause waiting for approval.", "namespace": "legal"}, principal=P)
    page = a.replica.feed(peer="node-b", since=0, principal=P)
    item = next(i.model_dump(mode="json", exclude_none=True) for i in page.items if i.pending is not None)
    before = (b.governance.pending(status=None, principal=P), b.store.change_counter())
    for field, value in (("status", "half-done"), ("action", "erase"), ("requester", {"role": "emperor"})):
        bad = {**item, "pending": {**item["pending"], "action": {**item["pending"]["action"], field: value}}}
        with pytest.raises(InvalidInputError, match=f"replicated pending action '{queued.value.details['pending_id']}'"):
            b.replica.apply(SyncBatch(node="node-a", items=[SyncItem.model_validate(bad)]), principal=P)
        assert (b.governance.pending(status=None, principal=P), b.store.change_counter()) == before


def test_pending_approved_on_one_served_node_is_applied_and_seen_on_the_other(tmp_path: Path) -> None:
    a, b = mesh(tmp_path, 2)
    try:
        assert a.call("PUT", "/api/v1/namespaces/legal/standard", json={"governance": {"write": "approve"}}).status_code == 200
        wait_for(lambda: b.call("GET", "/api/v1/namespaces/legal/standard").json().get("standard") is not None, 30, "standard on b")
        r = a.call("POST", "/api/v1/memories", json={"content": "The supplier contract renews in March.", "namespace": "legal"})
        assert r.status_code == 202, r.text
        pending_id = r.json()["error"]["details"]["pending_id"]
        wait_for(lambda: b.call("GET", f"/api/v1/pending/{pending_id}").status_code == 200, 30, "the pending action on b")
        r = b.call("POST", f"/api/v1/pending/{pending_id}/approve", json={})
        assert r.status_code == 200 and r.json()["status"] == "applied", r.text
        (memory_id,) = r.json()["result"]["memory_ids"]
        wait_for(lambda: memory_id in a.ids(), 30, "the approved write on a")
        wait_for(lambda: a.call("GET", f"/api/v1/pending/{pending_id}").json()["status"] == "applied", 30, "the decision on a")
        r = a.call("POST", f"/api/v1/pending/{pending_id}/approve", json={})
        assert r.status_code == 409, r.text
        assert "already applied" in r.json()["error"]["message"]
        assert a.ids() == b.ids() == {memory_id}
    finally:
        a.stop()
        b.stop()
