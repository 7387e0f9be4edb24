"""``POST /api/v1/memories`` with ``links`` (one transaction through ``Service.add_linked``)
and the answer to a repeated store (200 + ``existed: true`` instead of 201), on a real
uvicorn, plus the remote ``Client`` doing both."""

from __future__ import annotations

import pytest

from memmesh.errors import NotFoundError
from memmesh.model import LOCAL_PRINCIPAL

JSON = {"Content-Type": "application/json"}
NOBODY = "0190" + "0" * 32
"""A well-formed id no memory has."""
RB = "Rollbacks take ten minutes"


def test_store_with_links_is_atomic_and_a_repeat_says_it_existed(server) -> None:
    http = server.http()
    first = http.post("/api/v1/memories", json={"content": "The deploy runbook lives in ops/runbook.md", "namespace": "ops"}, headers=JSON)
    assert first.status_code == 201 and first.json()["existed"] is False
    target = first.json()["id"]

    again = http.post("/api/v1/memories", json={"content": "The deploy runbook lives in ops/runbook.md", "namespace": "ops"}, headers=JSON)
    assert again.status_code == 200, again.text
    assert again.json()["existed"] is True and again.json()["id"] == target

    linked = http.post(
        "/api/v1/memories",
        json={"content": "Deploys need two approvals", "namespace": "ops", "links": [{"target_id": target, "relation": "derived_from"}]},
        headers=JSON,
    )
    assert linked.status_code == 201, linked.text
    body = linked.json()
    assert body["existed"] is False
    assert [(link["source_id"], link["target_id"], link["relation"]) for link in body["links"]] == [(body["id"], target, "derived_from")]
    stored = http.get(f"/api/v1/memories/{body['id']}/links").json()
    assert [(link["target_id"], link["relation"]) for link in stored] == [(target, "derived_from")]

    before = http.get("/api/v1/stats").json()["total"]
    missing = http.post(
        "/api/v1/memories",
        json={
            "content": RB,
            "namespace": "ops",
            "links": [{"target_id": target}, {"target_id": NOBODY}],
        },
        headers=JSON,
    )
    assert missing.status_code == 404, missing.text
    assert "nothing was stored" in missing.json()["error"]["message"]
    bad_relation = http.post(
        "/api/v1/memories",
        json={"content": RB, "links": [{"target_id": target, "relation": "loves"}]},
        headers=JSON,
    )
    assert bad_relation.status_code == 422 and "relation" in bad_relation.text
    no_target = http.post("/api/v1/memories", json={"content": RB, "links": [{"relation": "part_of"}]}, headers=JSON)
    assert no_target.status_code == 422 and "target_id" in no_target.text
    assert http.get("/api/v1/stats").json()["total"] == before, "a refused linked write stored nothing"
    assert http.get("/api/v1/search", params={"q": "rollbacks"}).json()["hits"] == []


def test_a_target_the_key_cannot_read_is_404_like_a_missing_one(server) -> None:
    svc = server.service
    secret = svc.add({"content": "The vault code is 1234", "namespace": "private/vault"}, principal=LOCAL_PRINCIPAL)
    key = svc.create_key("team-writer", role="writer", namespaces=["team/*"], principal=LOCAL_PRINCIPAL).key
    http = server.http(key)
    hidden = http.post(
        "/api/v1/memories", json={"content": "See the vault", "namespace": "team/a", "links": [{"target_id": secret.id}]}, headers=JSON
    )
    missing = http.post(
        "/api/v1/memories",
        json={"content": "See the vault", "namespace": "team/a", "links": [{"target_id": NOBODY}]},
        headers=JSON,
    )
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"].replace(secret.id, "X") == missing.json()["error"]["message"].replace(NOBODY, "X")
    assert svc.list(namespace="team", principal=LOCAL_PRINCIPAL).items == []
    assert svc.links(secret.id, principal=LOCAL_PRINCIPAL) == []


def test_remote_client_stores_links_and_refuses_a_missing_target(server) -> None:
    client = server.client()
    target = client.add("Staging runs on Fridays", namespace="ops")
    again = client.add("Staging runs on Fridays", namespace="ops")
    assert again.id == target.id
    made = client.add("Staging freezes on holidays", namespace="ops", links=[{"target_id": target.id, "relation": "part_of"}])
    assert [(link.target_id, link.relation.value) for link in client.links(made.id)] == [(target.id, "part_of")]
    with pytest.raises(NotFoundError, match="nothing was stored"):
        client.add("Orphan note", namespace="ops", links=[{"target_id": NOBODY}])
    assert client.search("orphan") == []
