"""The governance store module (one SQL text for both backends) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from memmesh import Memory
from memmesh.errors import ConflictError, GovernanceDeniedError, NotFoundError, PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL, Principal

WRITER = Principal(agent_id="w1", role="writer", namespaces=["*"], key_id=None)
ADMIN = Principal(agent_id="boss", role="admin", namespaces=["org/*"])


def test_standards_round_trip_and_inherit(mem_on: Memory) -> None:
    g = mem_on.service.governance
    big_ttl = 3 * 10**9  # past 32 bits: the columns are BIGINT on both backends
    set_ = g.set_standard(
        "org",
        governance={"delete": "deny", "write": "approve"},
        default_tier="long",
        ttl_seconds=big_ttl,
        retention_days=400,
        required_tags=["Legal", "legal", "signed"],
        principal=LOCAL_PRINCIPAL,
    )
    g.set_standard("org/legal", governance={"write": "allow"}, principal=LOCAL_PRINCIPAL)
    assert g.list_standards(principal=LOCAL_PRINCIPAL)[0] == set_
    assert set_.required_tags == ["legal", "signed"]
    view = g.get_standard("org/legal/contracts", principal=LOCAL_PRINCIPAL)
    assert view.standard is None
    assert view.governance["write"].set_on == "org/legal" and view.governance["delete"].set_on == "org"
    assert (view.ttl_seconds.value, view.retention_days.value, view.default_tier.value) == (big_ttl, 400, "long")
    assert [s.namespace for s in g.list_standards(principal=LOCAL_PRINCIPAL)] == ["org", "org/legal"]
    replaced = g.set_standard("org/legal", governance={"link": "deny"}, principal=LOCAL_PRINCIPAL)
    assert g.get_standard("org/legal", principal=LOCAL_PRINCIPAL).standard == replaced
    assert g.clear_standard("org/legal", principal=LOCAL_PRINCIPAL) == replaced
    with pytest.raises(NotFoundError):
        g.clear_standard("org/legal", principal=LOCAL_PRINCIPAL)
    assert [s.namespace for s in g.list_standards(principal=LOCAL_PRINCIPAL)] == ["org"]


def test_pending_lifecycle_on_each_backend(mem_on: Memory) -> None:
    svc = mem_on.service
    svc.governance.set_standard("org/legal", governance={"write": "approve", "delete": "deny"}, principal=LOCAL_PRINCIPAL)
    ids = []
    for content in ("first", "second"):
        with pytest.raises(PendingApprovalError) as queued:
            svc.add({"content": content, "namespace": "org/legal", "tags": ["x"]}, principal=WRITER)
        ids.append(queued.value.details["pending_id"])
    svc.governance.set_standard("organic", governance={"write": "approve"}, principal=LOCAL_PRINCIPAL)
    with pytest.raises(PendingApprovalError):  # a namespace that only starts like org: not the admin's
        svc.add({"content": "elsewhere", "namespace": "organic"}, principal=WRITER)
    listed = svc.governance.pending(principal=ADMIN)
    assert [p.id for p in listed] == ids and listed[0].payload["items"][0]["content"] == "first"
    assert listed[0].requester == WRITER
    applied = svc.governance.approve(ids[0], reason="ok", principal=ADMIN)
    assert (applied.status, applied.decided_by, applied.reason) == ("applied", "boss", "ok")
    with pytest.raises(ConflictError):
        svc.governance.approve(ids[0], principal=ADMIN)
    assert svc.governance.reject(ids[1], principal=ADMIN).status == "rejected"
    with pytest.raises(ConflictError):
        svc.governance.reject(ids[1], principal=ADMIN)
    stored = mem_on.get_all(namespace="org")
    assert [m.content for m in stored] == ["first"] and stored[0].agent_id == "w1"
    with pytest.raises(GovernanceDeniedError):
        svc.delete(stored[0].id, principal=WRITER)
    assert [p.status for p in svc.governance.pending(status="all", principal=ADMIN)] == ["applied", "rejected"]
    assert svc.governance.pending(status="applied", principal=ADMIN)[0].result == {"memory_ids": [stored[0].id]}
