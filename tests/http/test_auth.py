"""The auth matrix: open loopback, required keys, roles and namespace scopes (nothing leaks)."""

from __future__ import annotations

import json

import httpx
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
    _error(http.get("/api/v1/memories", params={"tgs": "x"}), 401, "unauthorized")  # no key: 401 before the unknown parameter
    assert server.http(admin.key).get("/api/v1/memories", params={"tgs": "x"}).status_code == 422
    _error(http.get("/metrics"), 401, "unauthorized")  # keys required: metrics too, even on loopback
    assert server.http(admin.key).get("/metrics").status_code == 200
    with pytest.raises(AuthError, match="this client sent no key: pass api_key= to Client"):
        server.client().stats()
    with pytest.raises(AuthError) as wrong:  # a key it sent: nothing to add about keys left out
        server.client(wrong_secret).stats()
    assert "sent no key" not in wrong.value.message


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
    again = http.delete(f"/api/v1/keys/{body['id']}")  # a second revoke is refused, not a silent 200
    _error(again, 409, "conflict")
    assert "was already revoked at" in again.json()["error"]["message"]
    pasted = http.delete(f"/api/v1/keys/{body['key']}")  # a whole key is taken by its id; its secret is never echoed
    _error(pasted, 409, "conflict")
    assert body["key"].split("_", 2)[2] not in pasted.text


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


# -- issue 12 regressions ----------------------------------------------------------------------


def _revoke_last_key_chain(cli, spawn, db_path, *args: str) -> None:
    """Create an admin key, serve, revoke it over HTTP: the server stays closed and says how to open it."""
    root = json.loads(cli("keys", "create", "--agent", "root", "--role", "admin", "--json").out)
    server = spawn(db_path, *args)
    admin = {"Authorization": f"Bearer {root['key']}"}
    assert httpx.post(server.url + "/api/v1/memories", json={"content": "before"}, headers=admin).status_code == 201
    assert httpx.delete(f"{server.url}/api/v1/keys/{root['id']}", headers=admin).status_code == 200

    listed = httpx.get(server.url + "/api/v1/memories")
    _error(listed, 401, "unauthorized")
    assert "memmesh keys create" in listed.json()["error"]["message"] and "revoked" in listed.json()["error"]["message"]
    _error(httpx.post(server.url + "/api/v1/keys", json={"agent_id": "mallory", "role": "admin"}), 401, "unauthorized")
    _error(httpx.get(server.url + "/api/v1/memories", headers=admin), 401, "unauthorized")
    _error(httpx.get(server.url + "/api/v1/keys", headers={"Authorization": "Bearer mm_000000000000_made-up"}), 401, "unauthorized")
    assert json.loads(cli("keys", "list", "--json").out) == []  # nothing was minted by anyone


def test_revoking_the_last_key_leaves_a_loopback_server_closed(cli, spawn, db_path):
    """Finding 1: the no-keys check ran only at start; revoking the last key opened the server."""
    _revoke_last_key_chain(cli, spawn, db_path)
    restarted = spawn(db_path)  # the fact is in the store, so a restart stays closed too
    _error(httpx.get(restarted.url + "/api/v1/memories"), 401, "unauthorized")
    fresh = json.loads(cli("keys", "create", "--agent", "ops", "--role", "admin", "--json").out)
    reopened = httpx.get(restarted.url + "/api/v1/memories", headers={"Authorization": f"Bearer {fresh['key']}"})
    assert reopened.status_code == 200 and [m["content"] for m in reopened.json()["items"]] == ["before"]


def test_revoking_the_last_key_leaves_a_network_server_closed(cli, spawn, db_path):
    _revoke_last_key_chain(cli, spawn, db_path, "--host", "0.0.0.0")
    refused = cli("serve", "--host", "0.0.0.0", "--port", "9")
    assert refused.code == 1 and "refusing to listen on 0.0.0.0" in refused.err
    insecure = spawn(db_path, "--host", "0.0.0.0", "--insecure")  # --insecure never reopens a store that had keys
    _error(httpx.get(insecure.url + "/api/v1/memories"), 401, "unauthorized")
    _error(httpx.post(insecure.url + "/api/v1/keys", json={"agent_id": "mallory", "role": "admin"}), 401, "unauthorized")


def test_a_network_bind_needs_a_key_even_before_any_exists(serve, tmp_path):
    running = serve(server={"host": "0.0.0.0"}, auth={"insecure": False})
    _error(running.http().get("/api/v1/memories"), 401, "unauthorized")
    opened = serve(server={"host": "0.0.0.0"}, auth={"insecure": True})
    assert opened.http().get("/api/v1/memories").status_code == 200


def test_scoped_admin_cannot_see_revoke_or_take_over_outside_its_namespaces(server):
    """Finding 2: an a/* admin listed and revoked every key and re-registered other agents."""
    svc = server.service
    root = svc.create_key("root", role="admin", principal=LOCAL_PRINCIPAL)
    other = svc.create_key("bot-b", role="writer", namespaces=["b/*"], principal=LOCAL_PRINCIPAL)
    lead = svc.create_key("lead-a", role="admin", namespaces=["a/*"], principal=LOCAL_PRINCIPAL)
    http = server.http(lead.key)

    assert {k["id"] for k in http.get("/api/v1/keys", params={"include_revoked": True}).json()} == {lead.id}
    assert {a["agent_id"] for a in http.get("/api/v1/agents").json()} == {"lead-a"}
    for key_id in (root.id, other.id):
        hidden = http.delete(f"/api/v1/keys/{key_id}")
        _error(hidden, 404, "not_found")
        assert hidden.json()["error"]["message"] == http.delete("/api/v1/keys/000000000000").json()["error"]["message"].replace(
            "000000000000", key_id
        )
    for agent in ("root", "bot-b"):
        _error(http.post("/api/v1/agents", json={"agent_id": agent, "role": "reader", "namespaces": ["a"]}), 403, "forbidden")
        _error(http.post("/api/v1/keys", json={"agent_id": agent, "role": "reader", "namespaces": ["a"]}), 403, "forbidden")
    _error(http.post("/api/v1/keys", json={"agent_id": "wide", "role": "reader", "namespaces": ["*"]}), 403, "forbidden")
    _error(http.post("/api/v1/backup", json={}), 403, "forbidden")

    # nothing outside a/* changed: both keys still work, both agents are as registered
    assert server.http(root.key).get("/api/v1/memories").status_code == 200
    assert server.http(other.key).get("/api/v1/memories").status_code == 200
    agents = {a.agent_id: a for a in svc.agents(principal=LOCAL_PRINCIPAL)}
    assert agents["root"].namespaces == ["*"] and agents["bot-b"].namespaces == ["b/*"]
    # inside a/* it still manages
    made = http.post("/api/v1/keys", json={"agent_id": "helper-a", "role": "writer", "namespaces": ["a/x"]})
    assert made.status_code == 201
    assert http.delete(f"/api/v1/keys/{made.json()['id']}").status_code == 200


def test_a_writer_cannot_block_an_agent_name_for_another_namespaces_admin(server):
    """probe18: an a/* writer notified 'b-deploy-bot' (never registered); then a b/* admin's
    register_agent and create_key for that name got 403 "managed outside your namespaces": a
    denial of service on names, and an oracle telling the admin that notes exist."""
    svc = server.service
    writer_a = server.http(svc.create_key("bot-a", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    sent = writer_a.post("/api/v1/notify", json={"to": "b-deploy-bot", "body": "x"})
    assert sent.status_code == 201 and sent.json()["namespace"] == "a"  # kept inside the sender's namespaces
    assert writer_a.post("/api/v1/notify", json={"to": "b-deploy-bot", "body": "y", "namespace": "a/x"}).status_code == 201
    lead_b = server.http(svc.create_key("lead-b", role="admin", namespaces=["b/*"], principal=LOCAL_PRINCIPAL).key)
    registered = lead_b.post("/api/v1/agents", json={"agent_id": "b-deploy-bot", "role": "reader", "namespaces": ["b"]})
    assert registered.status_code == 201, registered.text
    made = lead_b.post("/api/v1/keys", json={"agent_id": "b-deploy-bot", "role": "reader", "namespaces": ["b"]})
    assert made.status_code == 201, made.text
    bot_b = server.http(made.json()["key"])
    assert bot_b.get("/api/v1/inbox").json() == [] and bot_b.get("/api/v1/inbox", params={"all": True}).json() == []
    # the notes are still there, unread, for a key of that name that may read a
    bot_a = server.http(svc.create_key("b-deploy-bot", role="reader", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    seen = bot_a.get("/api/v1/inbox").json()
    assert [(m["body"], m["namespace"]) for m in seen] == [("x", "a"), ("y", "a/x")]
    assert bot_a.get("/api/v1/inbox").json() == []  # read once


def test_history_of_a_moved_memory_stays_with_its_new_namespace(server):
    """Finding 3: history of a memory moved out of a namespace stayed readable there."""
    svc = server.service
    moved = svc.add({"content": "draft written in a", "namespace": "a"}, principal=LOCAL_PRINCIPAL)
    svc.update(moved.id, {"namespace": "b"}, principal=LOCAL_PRINCIPAL)
    svc.update(moved.id, {"content": "written after the move to b"}, principal=LOCAL_PRINCIPAL)
    reader_a = server.http(svc.create_key("ra", role="reader", namespaces=["a"], principal=LOCAL_PRINCIPAL).key)
    reader_b = server.http(svc.create_key("rb", role="reader", namespaces=["b"], principal=LOCAL_PRINCIPAL).key)

    _error(reader_a.get(f"/api/v1/memories/{moved.id}/history"), 404, "not_found")
    seen_by_b = reader_b.get(f"/api/v1/memories/{moved.id}/history")
    assert seen_by_b.status_code == 200
    assert [e["event"] for e in seen_by_b.json()] == ["update", "update"]  # the move and the edit, not the add in a
    assert seen_by_b.json()[1]["new"] == {"content": "written after the move to b"}
    svc.delete(moved.id, principal=LOCAL_PRINCIPAL)  # also once deleted
    _error(reader_a.get(f"/api/v1/memories/{moved.id}/history"), 404, "not_found")
    assert reader_b.get(f"/api/v1/memories/{moved.id}/history").status_code == 200


def test_the_move_into_a_namespace_hides_what_the_memory_held_before(server):
    """Probe (session 5): the entry of a move showed its old side, written in a namespace the
    reader may not see (old content, old namespace name) to readers of the new namespace."""
    svc = server.service
    moved = svc.add({"content": "SECRET in b", "namespace": "b", "tags": ["hidden-tag"]}, principal=LOCAL_PRINCIPAL)
    svc.update(moved.id, {"namespace": "a", "content": "public in a", "tags": []}, principal=LOCAL_PRINCIPAL)
    reader_a = server.http(svc.create_key("ra", role="reader", namespaces=["a"], principal=LOCAL_PRINCIPAL).key)
    seen = reader_a.get(f"/api/v1/memories/{moved.id}/history")
    assert seen.status_code == 200
    assert "SECRET" not in seen.text and "hidden-tag" not in seen.text and '"b"' not in seen.text
    (move,) = seen.json()
    assert move["event"] == "update" and move["old"] is None and move["new"]["namespace"] == "a"
    everywhere = server.http(svc.create_key("all", role="reader", principal=LOCAL_PRINCIPAL).key)
    assert "SECRET in b" in everywhere.get(f"/api/v1/memories/{moved.id}/history").text  # unscoped keys see it all


def test_links_hide_memories_of_other_namespaces(server):
    svc = server.service
    mine, also_mine = (svc.add({"content": c, "namespace": "a"}, principal=LOCAL_PRINCIPAL) for c in ("one", "two"))
    theirs = svc.add({"content": "hidden", "namespace": "b"}, principal=LOCAL_PRINCIPAL)
    svc.link(mine.id, also_mine.id, "related_to", principal=LOCAL_PRINCIPAL)
    svc.link(mine.id, theirs.id, "contradicts", principal=LOCAL_PRINCIPAL)
    svc.link(theirs.id, mine.id, "supersedes", principal=LOCAL_PRINCIPAL)
    scoped = server.http(svc.create_key("ra", role="reader", namespaces=["a"], principal=LOCAL_PRINCIPAL).key)
    seen = scoped.get(f"/api/v1/memories/{mine.id}/links")
    assert seen.status_code == 200 and theirs.id not in seen.text
    assert [(x["source_id"], x["target_id"]) for x in seen.json()] == [(mine.id, also_mine.id)]
    everywhere = server.http(svc.create_key("all", role="reader", principal=LOCAL_PRINCIPAL).key)
    assert len(everywhere.get(f"/api/v1/memories/{mine.id}/links").json()) == 3  # an unscoped key sees all three


def test_another_namespaces_id_answers_like_an_unknown_one(server):
    svc = server.service
    theirs = svc.add({"content": "hidden", "namespace": "b"}, principal=LOCAL_PRINCIPAL)
    writer = server.http(svc.create_key("wa", role="writer", namespaces=["a"], principal=LOCAL_PRINCIPAL).key)
    clash = writer.post("/api/v1/memories", json={"id": theirs.id, "content": "other text", "namespace": "a"})
    _error(clash, 404, "not_found")
    same = writer.post("/api/v1/memories", json={"id": theirs.id, "content": "hidden", "namespace": "a"})
    _error(same, 404, "not_found")
    assert svc.get(theirs.id, principal=LOCAL_PRINCIPAL).namespace == "b"
    assert svc.stats(principal=LOCAL_PRINCIPAL).total == 1


def test_stats_metrics_and_readyz_show_no_store_wide_facts(serve):
    running = serve(server={"host": "0.0.0.0"})
    svc = running.service
    svc.add({"content": "mine", "namespace": "a"}, principal=LOCAL_PRINCIPAL)
    svc.add({"content": "theirs", "namespace": "b"}, principal=LOCAL_PRINCIPAL)
    svc.link(
        svc.add({"content": "b2", "namespace": "b"}, principal=LOCAL_PRINCIPAL).id,
        svc.list(namespace="b", principal=LOCAL_PRINCIPAL).items[-1].id,
        principal=LOCAL_PRINCIPAL,
    )
    scoped = running.http(svc.create_key("ra", role="reader", namespaces=["a"], principal=LOCAL_PRINCIPAL).key)
    stats = scoped.get("/api/v1/stats").json()
    assert stats["total"] == 1 and stats["links_count"] == 0 and stats["db_size_bytes"] == 0
    assert [n["namespace"] for n in stats["by_namespace"]] == ["a"]
    ready = running.http().get("/readyz")
    assert ready.status_code == 200 and set(ready.json()) == {"status", "schema_version", "components"}
    assert all(set(part) <= {"status", "reason"} for part in ready.json()["components"].values()), "no counts, no hashes"
    _error(running.http().get("/metrics"), 401, "unauthorized")  # not loopback: a key is needed
    metrics = scoped.get("/metrics")
    assert metrics.status_code == 200
    assert "memmesh_store_memories 1.0" in metrics.text and "memmesh_store_links 0.0" in metrics.text
    assert "memmesh_store_size_bytes 0.0" in metrics.text
    # a link inside the key's namespace counts; one that reaches out of it does not
    a2 = svc.add({"content": "mine too", "namespace": "a"}, principal=LOCAL_PRINCIPAL)
    first = next(m.id for m in svc.list(namespace="a", principal=LOCAL_PRINCIPAL).items if m.content == "mine")
    svc.link(first, a2.id, principal=LOCAL_PRINCIPAL)
    svc.link(a2.id, svc.list(namespace="b", principal=LOCAL_PRINCIPAL).items[0].id, principal=LOCAL_PRINCIPAL)
    stats = scoped.get("/api/v1/stats").json()
    assert stats["total"] == 2 and stats["links_count"] == 1


def test_metrics_show_a_scoped_key_no_peer_or_count_an_admin_asked_for_before(serve, tmp_path):
    from http_support import http_settings

    from memmesh.compose import build_mesh

    running = serve()
    svc = running.service
    build_mesh(svc, http_settings(tmp_path, federation={"peers": "http://10.255.0.9:9077"}))  # a peer, never started
    svc.add({"content": "mine", "namespace": "a"}, principal=LOCAL_PRINCIPAL)
    svc.add({"content": "theirs", "namespace": "b"}, principal=LOCAL_PRINCIPAL)
    admin = running.http(svc.create_key("root", role="admin", principal=LOCAL_PRINCIPAL).key)
    scoped = running.http(svc.create_key("ra", role="reader", namespaces=["a"], principal=LOCAL_PRINCIPAL).key)
    assert 'memmesh_peer_up{peer="http://10.255.0.9:9077"}' in admin.get("/metrics").text
    assert "memmesh_store_memories 2.0" in admin.get("/metrics").text
    seen = scoped.get("/metrics").text
    assert "memmesh_store_memories 1.0" in seen
    assert "10.255.0.9" not in seen and "memmesh_peer_" not in seen and "memmesh_quorum_not_met" not in seen


def test_a_key_writes_as_its_own_agent(server):
    svc = server.service
    writer = server.http(svc.create_key("bot", role="writer", principal=LOCAL_PRINCIPAL).key)
    _error(writer.post("/api/v1/memories", json={"content": "forged", "agent_id": "root"}), 403, "forbidden")
    _error(writer.post("/api/v1/memories/batch", json={"items": [{"content": "forged", "agent_id": "root"}]}), 403, "forbidden")
    assert writer.post("/api/v1/memories", json={"content": "mine", "agent_id": "bot"}).json()["agent_id"] == "bot"
    assert writer.post("/api/v1/memories", json={"content": "implicit"}).json()["agent_id"] == "bot"
    assert svc.stats(principal=LOCAL_PRINCIPAL).total == 2
    root = server.http(svc.create_key("root", role="admin", principal=LOCAL_PRINCIPAL).key)
    assert root.post("/api/v1/memories", json={"content": "replayed", "agent_id": "bot"}).json()["agent_id"] == "bot"


def test_made_up_keys_are_rate_limited_by_client_address(serve):
    running = serve(limits={"rate_limit_per_minute": 5})
    valid = running.service.create_key("bot", role="reader", principal=LOCAL_PRINCIPAL)
    statuses = [running.http(f"mm_{i:012x}_made-up-secret").get("/api/v1/memories").status_code for i in range(8)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert running.http().get("/api/v1/memories").status_code == 429  # same address, same bucket
    assert running.http(valid.key).get("/api/v1/memories").status_code == 200  # a real key has its own


def test_authentication_never_blocks_the_event_loop(server):
    """Checking a key queries the store; it must run on a worker thread, so a slow store
    delays only the requests that wait for it, never /healthz (issue 13/25)."""
    import threading

    svc = server.service
    key = svc.create_key("bot", role="reader", principal=LOCAL_PRINCIPAL)
    real = svc.store.api_key
    checking = threading.Semaphore(0)
    release = threading.Event()

    def slow(key_id):  # a store that answers only when the test lets it (a fixed 1.5 s raced a loaded machine)
        checking.release()
        release.wait(60)
        return real(key_id)

    svc.store.api_key = slow  # type: ignore[method-assign]
    answers: list[int] = []
    try:
        waiting = [
            threading.Thread(target=lambda: answers.append(server.http(key.key).get("/api/v1/memories").status_code)) for _ in range(3)
        ]
        for thread in waiting:
            thread.start()
        assert checking.acquire(timeout=60), "no request reached the key check"
        # the store holds its key checks until /healthz has answered: on the event loop, a check
        # would hold /healthz with it, and this request would time out
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
        assert not answers, "the key checks were held, yet a request was answered"
        release.set()
        for thread in waiting:
            thread.join(60)
        assert answers == [200, 200, 200]
    finally:
        release.set()
        svc.store.api_key = real  # type: ignore[method-assign]
