"""Governance over HTTP on a real uvicorn: 202 + pending_id, 403 with the rule, the pending
routes (approve once, 409 after, 404 for a missing id, 403 for another scope, 401 for a
revoked key) and bad standards (one clear 422 each, nothing changed)."""

from __future__ import annotations

import pytest

from memmesh.errors import GovernanceDeniedError, PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def keyed(server):
    svc = server.service
    keys = {
        "writer": svc.create_key("writer-bot", role="writer", namespaces=["org/*"], principal=LOCAL_PRINCIPAL).key,
        "admin": svc.create_key("legal-lead", role="admin", namespaces=["org/legal/*"], principal=LOCAL_PRINCIPAL).key,
        "sales": svc.create_key("sales-lead", role="admin", namespaces=["org/sales/*"], principal=LOCAL_PRINCIPAL).key,
    }
    return server, keys


def test_set_standard_then_writes_queue_and_deletes_are_refused(keyed) -> None:
    server, keys = keyed
    admin, writer = server.http(keys["admin"]), server.http(keys["writer"])
    put = admin.put("/api/v1/namespaces/org/legal/standard", json={"governance": {"write": "approve", "delete": "deny"}})
    assert put.status_code == 200 and put.json()["namespace"] == "org/legal"
    got = writer.get("/api/v1/namespaces/org/legal/contracts/standard").json()
    assert got["governance"]["write"] == {"value": "approve", "set_on": "org/legal"}

    queued = writer.post("/api/v1/memories", json={"content": "NDA v2", "namespace": "org/legal/contracts"})
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert body["status"] == "pending" and body["pending_id"] and body["error"]["code"] == "pending_approval"
    assert writer.get("/api/v1/memories", params={"namespace": "org"}).json()["items"] == []

    listed = admin.get("/api/v1/pending").json()
    assert [p["id"] for p in listed] == [body["pending_id"]] and "requester" not in listed[0]
    approved = admin.post(f"/api/v1/pending/{body['pending_id']}/approve", json={"reason": "fine"})
    assert approved.status_code == 200 and approved.json()["status"] == "applied"
    memory_id = approved.json()["result"]["memory_ids"][0]
    again = admin.post(f"/api/v1/pending/{body['pending_id']}/approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert admin.post(f"/api/v1/pending/{body['pending_id']}/reject").status_code == 409

    denied = writer.delete(f"/api/v1/memories/{memory_id}")
    assert denied.status_code == 403
    error = denied.json()["error"]
    assert error["code"] == "governance_denied" and error["details"]["rule"] == {
        "action": "delete",
        "namespace": "org/legal/contracts",
        "decision": "deny",
        "set_on": "org/legal",
    }
    assert writer.get(f"/api/v1/memories/{memory_id}").status_code == 200


def test_pending_routes_refuse_missing_ids_other_scopes_and_revoked_keys(keyed) -> None:
    server, keys = keyed
    svc = server.service
    svc.governance.set_standard("org/legal", governance={"write": "approve"}, principal=LOCAL_PRINCIPAL)
    writer = server.http(keys["writer"])
    pending_id = writer.post("/api/v1/memories", json={"content": "queued", "namespace": "org/legal"}).json()["pending_id"]

    missing = server.http(keys["admin"]).post("/api/v1/pending/no-such-id/approve")
    assert missing.status_code == 404 and "no pending action" in missing.json()["error"]["message"]
    other = server.http(keys["sales"]).post(f"/api/v1/pending/{pending_id}/approve")
    assert other.status_code == 404 and "org/legal" not in other.json()["error"]["message"]  # like an unknown id
    assert server.http(keys["sales"]).get("/api/v1/pending").json() == []
    as_writer = writer.post(f"/api/v1/pending/{pending_id}/approve")
    assert as_writer.status_code == 403

    admin_key = next(k for k in svc.keys(principal=LOCAL_PRINCIPAL) if k.agent_id == "legal-lead")
    svc.revoke_key(admin_key.id, principal=LOCAL_PRINCIPAL)
    revoked = server.http(keys["admin"]).post(f"/api/v1/pending/{pending_id}/approve")
    assert revoked.status_code == 401
    assert svc.governance.get_pending(pending_id, principal=LOCAL_PRINCIPAL).status == "pending"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"governance": {"write": "sometimes"}}, "governance.write is 'sometimes'"),
        ({"governance": {"erase": "deny"}}, "governance names an unknown action 'erase'"),
        ({"governance": "{not json"}, "governance"),
        ({"default_tier": "eternal"}, "default_tier 'eternal' is not a tier"),
        ({"governance": {"write": "deny"}, "typo": 1}, "unknown field"),
        ({}, "a standard needs at least one of"),
    ],
)
def test_bad_standards_get_one_clear_422(server, body, message) -> None:
    http = server.http()
    assert http.put("/api/v1/namespaces/org/standard", json={"governance": {"delete": "deny"}}).status_code == 200
    response = http.put("/api/v1/namespaces/org/standard", json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]
    assert http.get("/api/v1/namespaces/standards").json()[0]["governance"] == {"delete": "deny"}
    unknown_status = http.get("/api/v1/pending", params={"status": "done"})
    assert unknown_status.status_code == 422 and "status 'done' is unknown" in unknown_status.json()["error"]["message"]


def test_the_python_client_raises_the_same_errors(server) -> None:
    server.service.governance.set_standard("org", governance={"write": "approve", "delete": "deny"}, principal=LOCAL_PRINCIPAL)
    client = server.client()
    with pytest.raises(PendingApprovalError) as queued:
        client.add("through the client", namespace="org/x")
    pending_id = queued.value.details["pending_id"]
    assert server.service.governance.get_pending(pending_id, principal=LOCAL_PRINCIPAL).action == "write"
    server.service.governance.approve(pending_id, principal=LOCAL_PRINCIPAL)
    stored = client.get_all(namespace="org")[0]
    with pytest.raises(GovernanceDeniedError) as denied:
        client.delete(stored.id)
    assert denied.value.details["rule"]["set_on"] == "org"
