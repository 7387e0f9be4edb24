"""The auth matrix: open loopback, required keys, roles and namespace scopes (nothing leaks)."""

from __future__ import annotations

import pytest

from memmesh import AuthError, ForbiddenError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert set(body["error"]) == {"code", "message", "details"}


def test_loopback_without_keys_is_open(server):
    http = server.http()
    assert http.post("/api/v1/memories", json={"content": "open write"}).status_code == 201
    assert http.get("/api/v1/keys").json() == []


def test_require_auth_closes_even_an_empty_loopback_server(serve):
    running = serve(auth={"require_auth": True})
    http = running.http()
    response = http.post("/api/v1/memories", json={"content": "x"})
    _error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert http.get("/healthz").status_code == 200
    assert running.service.stats(principal=LOCAL_PRINCIPAL).total == 0


def test_any_key_closes_the_server_and_bad_keys_get_401(server):
    admin = server.service.create_key("root", role="admin", principal=LOCAL_PRINCIPAL)
    http = server.http()
    _error(http.get("/api/v1/memories"), 401, "unauthorized")
    _error(server.http("mm_000000000000_wrong").get("/api/v1/memories"), 401, "unauthorized")
    _error(server.http("not-a-memmesh-key").get("/api/v1/memories"), 401, "unauthorized")
    _error(http.get("/api/v1/memories", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "unauthorized")
    wrong_secret = admin.key[:-4] + "AAAA"
    _error(server.http(wrong_secret).get("/api/v1/memories"), 401, "unauthorized")
    assert server.http(admin.key).get("/api/v1/memories").status_code == 200
    assert http.get("/healthz").status_code == 200
    assert http.get("/metrics").status_code == 200  # loopback: metrics stay open
    with pytest.raises(AuthError):
        server.client().stats()


def test_reader_cannot_write_and_nothing_is_stored(server):
    reader = server.service.create_key("viewer", role="reader", principal=LOCAL_PRINCIPAL)
    http = server.http(reader.key)
    _error(http.post("/api/v1/memories", json={"content": "sneaky"}), 403, "forbidden")
    _error(http.post("/api/v1/memories/batch", json={"items": [{"content": "sneaky"}]}), 403, "forbidden")
    existing = server.service.add({"content": "already here"}, principal=LOCAL_PRINCIPAL)
    _error(http.patch(f"/api/v1/memories/{existing.id}", json={"content": "changed"}), 403, "forbidden")
    _error(http.delete(f"/api/v1/memories/{existing.id}"), 403, "forbidden")
    _error(http.get("/api/v1/keys"), 403, "forbidden")
    _error(http.post("/api/v1/keys", json={"agent_id": "me", "role": "admin"}), 403, "forbidden")
    _error(http.get("/api/v1/agents"), 403, "forbidden")
    assert http.get(f"/api/v1/memories/{existing.id}").json()["content"] == "already here"
    assert (
        server.service.stats(principal=LOCAL_PRINCIPAL).total == 1
        and server.service.get(existing.id, principal=LOCAL_PRINCIPAL).content == "already here"
    )
    with pytest.raises(ForbiddenError):
        server.client(reader.key).add("via client")


def test_a_key_for_namespace_a_sees_nothing_of_b(server):
    svc = server.service
    theirs = svc.add({"content": "secret plan of team B", "namespace": "team-b/plans", "title": "plan"}, principal=LOCAL_PRINCIPAL)
    mine = svc.add({"content": "public plan of team A", "namespace": "team-a/plans"}, principal=LOCAL_PRINCIPAL)
    key = svc.create_key("bot-a", role="writer", namespaces=["team-a/*"], principal=LOCAL_PRINCIPAL)
    http = server.http(key.key)

    _error(http.get(f"/api/v1/memories/{theirs.id}"), 404, "not_found")
    _error(http.get(f"/api/v1/memories/{theirs.id}/history"), 404, "not_found")
    _error(http.get(f"/api/v1/memories/{theirs.id}/links"), 404, "not_found")
    _error(http.patch(f"/api/v1/memories/{theirs.id}", json={"content": "defaced"}), 404, "not_found")
    _error(http.delete(f"/api/v1/memories/{theirs.id}"), 404, "not_found")
    _error(http.post("/api/v1/links", json={"source_id": mine.id, "target_id": theirs.id}), 404, "not_found")
    _error(http.get("/api/v1/memories", params={"namespace": "team-b"}), 403, "forbidden")
    _error(http.post("/api/v1/recall", json={"query": "plan", "filters": {"namespace": "team-b"}}), 403, "forbidden")
    _error(http.post("/api/v1/memories", json={"content": "planted", "namespace": "team-b/plans"}), 403, "forbidden")
    _error(http.delete("/api/v1/memories", params={"namespace": "team-b"}), 403, "forbidden")

    listed = http.get("/api/v1/memories").json()["items"]
    assert [m["id"] for m in listed] == [mine.id]
    recalled = http.post("/api/v1/recall", json={"query": "secret plan team"}).json()["hits"]
    assert [h["memory"]["id"] for h in recalled] == [mine.id]
    searched = http.get("/api/v1/search", params={"q": "secret"}).json()["hits"]
    assert searched == []
    stats = http.get("/api/v1/stats").json()
    assert stats["total"] == 1 and [n["namespace"] for n in stats["by_namespace"]] == ["team-a/plans"]
    assert [n["namespace"] for n in http.get("/api/v1/namespaces").json()] == ["team-a/plans"]
    assert "team-b" not in http.get("/api/v1/memories").text

    # nothing of B changed, nothing was planted in B
    assert svc.get(theirs.id, principal=LOCAL_PRINCIPAL).content == "secret plan of team B"
    assert [m.id for m in svc.list(namespace="team-b", principal=LOCAL_PRINCIPAL).items] == [theirs.id]
    assert svc.links(theirs.id, principal=LOCAL_PRINCIPAL) == []
    # and inside its namespace the key works
    assert http.post("/api/v1/memories", json={"content": "new A fact", "namespace": "team-a/notes"}).status_code == 201
    with pytest.raises(NotFoundError):
        server.client(key.key).get(theirs.id)


def test_admin_manages_keys_and_agents_over_http(server):
    root = server.service.create_key("root", role="admin", principal=LOCAL_PRINCIPAL)
    http = server.http(root.key)
    agent = http.post("/api/v1/agents", json={"agent_id": "planner", "display_name": "Planner", "role": "writer", "namespaces": ["team/*"]})
    assert agent.status_code == 201 and agent.json()["display_name"] == "Planner"
    assert {a["agent_id"] for a in http.get("/api/v1/agents").json()} == {"root", "planner"}

    created = http.post("/api/v1/keys", json={"agent_id": "planner", "role": "writer", "namespaces": ["team/*"]})
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("mm_") and body["namespaces"] == ["team/*"]
    listed = http.get("/api/v1/keys").json()
    assert body["id"] in {k["id"] for k in listed} and all("key" not in k and "key_hash" not in k for k in listed)

    planner = server.http(body["key"])
    written = planner.post("/api/v1/memories", json={"content": "planned", "namespace": "team/q3"})
    assert written.status_code == 201 and written.json()["agent_id"] == "planner"

    revoked = http.delete(f"/api/v1/keys/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    _error(planner.get("/api/v1/memories"), 401, "unauthorized")
    _error(http.delete("/api/v1/keys/nope"), 404, "not_found")


def test_scoped_admin_cannot_grant_beyond_its_namespaces(server):
    scoped = server.service.create_key("lead", role="admin", namespaces=["team/*"], principal=LOCAL_PRINCIPAL)
    http = server.http(scoped.key)
    _error(http.post("/api/v1/keys", json={"agent_id": "x", "role": "reader", "namespaces": ["*"]}), 403, "forbidden")
    _error(http.post("/api/v1/keys", json={"agent_id": "x", "role": "reader", "namespaces": ["other"]}), 403, "forbidden")
    assert http.post("/api/v1/keys", json={"agent_id": "x", "role": "reader", "namespaces": ["team/sub"]}).status_code == 201
    bad_agent = {"agent_id": "bad id!", "role": "reader", "namespaces": ["team"]}
    _error(http.post("/api/v1/keys", json=bad_agent), 422, "invalid_input")
    _error(http.post("/api/v1/keys", json={"agent_id": "y", "role": "god", "namespaces": ["team"]}), 422, "invalid_input")
    assert len(server.service.keys(principal=LOCAL_PRINCIPAL)) == 2


def test_backup_route_snapshots_for_a_full_admin_only(server):
    from pathlib import Path

    from memmesh.io.backup import verify

    server.service.add({"content": "worth keeping", "namespace": "team/a"}, principal=LOCAL_PRINCIPAL)
    admin = server.service.create_key("root", role="admin", principal=LOCAL_PRINCIPAL)
    scoped = server.service.create_key("lead", role="admin", namespaces=["team/*"], principal=LOCAL_PRINCIPAL)
    writer = server.service.create_key("bot", role="writer", principal=LOCAL_PRINCIPAL)
    _error(server.http(writer.key).post("/api/v1/backup", json={}), 403, "forbidden")
    _error(server.http(scoped.key).post("/api/v1/backup", json={}), 403, "forbidden")
    _error(server.http(admin.key).post("/api/v1/backup", json={"retain": 0}), 422, "invalid_input")
    http = server.http(admin.key)
    first = http.post("/api/v1/backup", json={})
    assert first.status_code == 201
    body = first.json()
    assert body["manifest"]["memories"] == 1 and Path(body["snapshot"]).exists()
    assert verify(Path(body["snapshot"]), supported_schema=server.service.store.schema_version).sha256 == body["manifest"]["sha256"]
    second = http.post("/api/v1/backup", json={"retain": 1}).json()
    assert second["removed"] == [body["snapshot"]] and not Path(body["snapshot"]).exists()
