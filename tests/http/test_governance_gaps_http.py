"""Governance gaps of issue 16 over HTTP on a real uvicorn: an approver key decides pending
actions but may not set standards; an update that drops a required tag is a 422 naming it;
an import into a denied namespace writes nothing (its record is reported refused)."""

from __future__ import annotations

import json

from memmesh.model import LOCAL_PRINCIPAL

JSON = {"Content-Type": "application/json"}


def test_approver_key_update_tags_import_and_gc(server) -> None:
    svc = server.service
    writer = server.http(svc.create_key("drafter", role="writer", namespaces=["org/*"], principal=LOCAL_PRINCIPAL).key)
    lead = server.http(svc.create_key("lead", role="approver", namespaces=["org/legal/*"], principal=LOCAL_PRINCIPAL).key)
    admin = server.http(svc.create_key("root", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key)
    standard = {"governance": {"write": "approve"}, "required_tags": ["contract"], "retention_days": 30}
    assert lead.put("/api/v1/namespaces/org/legal/standard", json=standard, headers=JSON).status_code == 403
    assert admin.put("/api/v1/namespaces/org/legal/standard", json=standard, headers=JSON).status_code == 200

    queued = writer.post("/api/v1/memories", json={"content": "NDA", "namespace": "org/legal/nda", "tags": ["contract"]}, headers=JSON)
    assert queued.status_code == 202
    approved = lead.post(f"/api/v1/pending/{queued.json()['pending_id']}/approve", json={"reason": "ok"}, headers=JSON)
    assert approved.status_code == 200 and approved.json()["status"] == "applied" and approved.json()["decided_by"] == "lead"
    memory_id = approved.json()["result"]["memory_ids"][0]

    dropped = writer.patch(f"/api/v1/memories/{memory_id}", json={"tags": ["draft"]}, headers=JSON)
    assert dropped.status_code == 422
    error = dropped.json()["error"]
    assert "without the tag contract that namespace 'org/legal/nda' requires" in error["message"]
    assert error["details"]["missing_tags"] == ["contract"]
    assert writer.get(f"/api/v1/memories/{memory_id}").json()["tags"] == ["contract"]

    entity = json.dumps({"type": "entity", "name": "Acme", "entityType": "org", "observations": ["signed"]})
    admin.put("/api/v1/namespaces/org/sealed/standard", json={"governance": {"write": "deny"}}, headers=JSON)
    imported = admin.post("/api/v1/import", json={"format": "mcp-memory", "content": entity, "namespace": "org/sealed"}, headers=JSON)
    assert "import into namespace 'org/sealed' is denied" in imported.text
    assert admin.get("/api/v1/memories", params={"namespace": "org/sealed"}).json()["items"] == []
