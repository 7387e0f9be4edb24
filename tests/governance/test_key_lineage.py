"""Self-approval through a minted key: a namespace admin may create keys for new agents, so the
rule "the requester may not approve its own request" also refuses an approver whose key was
created, directly or through a chain of keys, by a key of the requester's agent. Keys record
the key that created them (``created_by``); keys made before that (schema 28) have none and
keep working. Through HTTP and the core with real keys (``service.authenticate``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.conformance.conftest import backend_url, open_memory, pg_database, pg_server  # noqa: F401 - backend fixtures
from tests.http.http_support import Running
from tests.schema_rewind import rewind

from memmesh import Memory
from memmesh.errors import ForbiddenError, PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL, Principal
from memmesh.store.sqlite import register_functions

NS = "org/legal"


def minted(mem: Memory, agent_id: str, role: str, by: Principal = LOCAL_PRINCIPAL, namespaces: str = "org/*") -> Principal:
    """The caller of a new real key for ``agent_id``, created by ``by``."""
    return mem.service.authenticate(mem.service.create_key(agent_id, role=role, namespaces=[namespaces], principal=by).key)


def queue_write(mem: Memory, who: Principal, content: str = "clause 9 is void") -> str:
    with pytest.raises(PendingApprovalError) as queued:
        mem.service.add({"content": content, "namespace": NS}, principal=who)
    return str(queued.value.details["pending_id"])


def refused(mem: Memory, pending_id: str, approver: Principal) -> ForbiddenError:
    """The approval is a 403, and the action still waits with nothing written."""
    before = sorted(m.content for m in mem.get_all(namespace=NS))
    with pytest.raises(ForbiddenError) as error:
        mem.service.governance.approve(pending_id, principal=approver)
    assert error.value.http_status == 403
    assert mem.service.governance.get_pending(pending_id, principal=LOCAL_PRINCIPAL).status == "pending"
    assert sorted(m.content for m in mem.get_all(namespace=NS)) == before
    return error.value


@pytest.fixture
def gov(mem: Memory) -> Memory:
    mem.set_standard(NS, governance={"write": "approve"})
    return mem


def test_an_admin_cannot_approve_its_own_request_with_keys_it_minted_over_http(http_server: Running, cli_in_process: Any) -> None:
    svc = http_server.service
    assert svc is not None
    alice_key = svc.create_key("alice", role="admin", namespaces=["org/legal/*"], principal=LOCAL_PRINCIPAL)
    alice = http_server.http(alice_key.key)
    assert alice.put(f"/api/v1/namespaces/{NS}/standard", json={"governance": {"write": "approve"}}).status_code == 200
    queued = alice.post("/api/v1/memories", json={"content": "alice's clause", "namespace": NS})
    assert queued.status_code == 202, queued.text
    pending_id = queued.json()["pending_id"]
    assert alice.post(f"/api/v1/pending/{pending_id}/approve").status_code == 403  # the plain self-approval

    made_ids = []
    for agent, role in (("alice-approver", "approver"), ("alice-admin", "admin")):
        made = alice.post("/api/v1/keys", json={"agent_id": agent, "role": role, "namespaces": ["org/legal/*"]})
        assert made.status_code == 201 and made.json()["created_by"] == alice_key.id, made.text
        made_ids.append(made.json()["id"])
        answer = http_server.http(made.json()["key"]).post(f"/api/v1/pending/{pending_id}/approve", json={"reason": "lgtm"})
        assert answer.status_code == 403, answer.text
        error = answer.json()["error"]
        assert error["code"] == "forbidden"
        assert error["message"] == (
            f"an approval must come from someone other than the requester: key {made.json()['id']} was created by key "
            f"{alice_key.id} of agent 'alice', the requester of pending action {pending_id}; ask another approver"
        )
    assert alice.get(f"/api/v1/pending/{pending_id}").json()["status"] == "pending"
    assert alice.get("/api/v1/memories", params={"namespace": NS}).json()["items"] == []
    listed = {k["agent_id"]: k["created_by"] for k in alice.get("/api/v1/keys").json()}
    assert listed == {"alice": None, "alice-approver": alice_key.id, "alice-admin": alice_key.id}
    table = cli_in_process("keys", "list")  # the same store file
    assert table.code == 0 and "created by" in table.out, table
    for made_id in made_ids:  # each minted key's row names alice's key in its "created by" column
        assert next(line for line in table.out.splitlines() if made_id in line).split()[-2] == alice_key.id, table.out

    # someone alice did not make decides it
    other = svc.create_key("bob", role="approver", namespaces=["org/legal/*"], principal=LOCAL_PRINCIPAL)
    approved = http_server.http(other.key).post(f"/api/v1/pending/{pending_id}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "applied", approved.text


def test_a_key_minted_through_another_key_is_still_the_requesters(gov: Memory) -> None:
    alice = minted(gov, "alice", "admin")
    deputy = minted(gov, "deputy", "admin", by=alice, namespaces="org/legal/*")
    puppet = minted(gov, "puppet", "approver", by=deputy, namespaces="org/legal/*")
    pending_id = queue_write(gov, alice)
    error = refused(gov, pending_id, puppet)
    assert error.message == (
        f"an approval must come from someone other than the requester: key {puppet.key_id} was created, through key "
        f"{deputy.key_id}, by key {alice.key_id} of agent 'alice', the requester of pending action {pending_id}; ask another approver"
    )
    refused(gov, pending_id, deputy)  # the direct child too
    # rejecting stays open to them (it writes nothing: the requester may withdraw its own request)
    assert gov.service.governance.reject(pending_id, reason="withdrawn", principal=puppet).status == "rejected"


def test_a_request_by_a_key_the_approver_minted_is_the_ordinary_flow(gov: Memory) -> None:
    root_admin = minted(gov, "lead", "admin")
    writer = minted(gov, "drafter", "writer", by=root_admin)
    sibling = minted(gov, "reviewer", "approver", by=root_admin)
    first = queue_write(gov, writer, "first clause")
    assert gov.service.governance.approve(first, principal=root_admin).status == "applied"
    # a key made by the same admin as the requester's is a sibling, not the requester's
    second = queue_write(gov, writer, "second clause")
    assert gov.service.governance.approve(second, principal=sibling).status == "applied"
    assert sorted(m.content for m in gov.get_all(namespace=NS)) == ["first clause", "second clause"]
    # the admin's own request: a key it minted may not approve it, a key it did not may
    third = queue_write(gov, root_admin, "third clause")
    refused(gov, third, minted(gov, "lead-bot", "approver", by=root_admin))
    assert gov.service.governance.approve(third, principal=minted(gov, "counsel", "approver")).status == "applied"


def test_a_revoked_key_in_the_chain_does_not_hide_the_lineage(gov: Memory) -> None:
    alice = minted(gov, "alice", "admin")
    deputy = minted(gov, "deputy", "admin", by=alice, namespaces="org/legal/*")
    puppet = minted(gov, "puppet", "approver", by=deputy, namespaces="org/legal/*")
    assert deputy.key_id is not None
    gov.service.revoke_key(deputy.key_id, principal=alice)
    pending_id = queue_write(gov, alice)
    assert f"through key {deputy.key_id}, by key {alice.key_id} of agent 'alice'" in refused(gov, pending_id, puppet).message
    # a requester's other key counts as the requester: alice's second key, made by the owner
    second = minted(gov, "alice", "admin")
    refused(gov, pending_id, minted(gov, "puppet-2", "approver", by=second, namespaces="org/legal/*"))


def _as_schema_27(url: str, tmp_path: Path) -> None:
    """Set a store back to schema 27: ``api_keys`` without ``created_by``."""
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "conformance.db", isolation_level=None) as conn:
            register_functions(conn)
            rewind(conn, 27, "sqlite")
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            rewind(conn, 27, "postgres")


def test_keys_made_before_lineage_was_recorded_still_work(
    backend_url: str,  # noqa: F811 - the conformance fixture
    open_memory: Callable[..., Memory],  # noqa: F811
    tmp_path: Path,
) -> None:
    old = open_memory(backend_url)
    old.set_standard(NS, governance={"write": "approve"})
    lead = old.service.create_key("lead", role="admin", namespaces=["org/*"], principal=LOCAL_PRINCIPAL)
    drafter = old.service.create_key("drafter", role="writer", namespaces=["org/*"], principal=old.service.authenticate(lead.key))
    old.close()
    _as_schema_27(backend_url, tmp_path)

    mem = open_memory(backend_url)  # opening migrates: the old rows get no lineage (NULL)
    assert mem.service.store.schema_version >= 28
    assert {k.agent_id: k.created_by for k in mem.service.keys(principal=LOCAL_PRINCIPAL)} == {"lead": None, "drafter": None}
    as_lead, as_drafter = mem.service.authenticate(lead.key), mem.service.authenticate(drafter.key)
    pending_id = queue_write(mem, as_drafter)
    assert mem.service.governance.approve(pending_id, principal=as_lead).status == "applied"
    # keys minted after the upgrade record their creator, and the rule holds on this backend too
    puppet = minted(mem, "puppet", "approver", by=as_lead, namespaces="org/legal/*")
    assert [k.created_by for k in mem.service.keys(principal=LOCAL_PRINCIPAL) if k.agent_id == "puppet"] == [lead.id]
    refused(mem, queue_write(mem, as_lead, "lead's own"), puppet)
