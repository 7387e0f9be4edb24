"""A client-chosen id may not take over a deleted or archived memory of another namespace
(security probe, issue 12 follow-up): a key for ``a/*`` re-using ``b``'s deleted id got 201."""

from __future__ import annotations

import time

from memmesh.model import LOCAL_PRINCIPAL

UNKNOWN = "0190f5d2-6a4b-7c1e-9d2f-000000000000"


def _world(server):
    svc = server.service
    svc.create_key("root", role="admin", principal=LOCAL_PRINCIPAL)
    writer = svc.create_key("bot-a", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key
    live_b = svc.add({"content": "b live", "namespace": "b/x"}, principal=LOCAL_PRINCIPAL)
    gone_b = svc.add({"content": "b deleted", "namespace": "b/x"}, principal=LOCAL_PRINCIPAL)
    svc.delete(gone_b.id, principal=LOCAL_PRINCIPAL)
    return svc, writer, live_b.id, gone_b.id


def _message(response, memory_id: str) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"].replace(memory_id, "<id>")


def test_a_deleted_id_of_a_hidden_namespace_answers_like_a_live_hidden_one(server):
    svc, writer, live_b, gone_b = _world(server)
    http = server.http(writer)
    answers = [_message(http.post("/api/v1/memories", json={"id": i, "namespace": "a/x", "content": "mine"}), i) for i in (live_b, gone_b)]
    assert answers[0] == answers[1] and answers[0][0] == 404, answers
    batch = http.post("/api/v1/memories/batch", json={"items": [{"id": gone_b, "namespace": "a/x", "content": "mine"}]})
    assert _message(batch, gone_b) == answers[0]
    assert http.post("/api/v1/memories", json={"id": UNKNOWN, "namespace": "a/x", "content": "fresh"}).status_code == 201
    restored = svc.lifecycle.restore(gone_b, principal=LOCAL_PRINCIPAL)  # b keeps its history; root can bring it back
    assert restored.namespace == "b/x" and restored.content == "b deleted"
    assert [e.event.value for e in svc.history(gone_b, principal=LOCAL_PRINCIPAL)] == ["add", "delete", "restore"]


def test_an_archived_id_of_a_hidden_namespace_is_refused_too(server):
    svc, writer, live_b, _ = _world(server)
    old = svc.add({"content": "b short-lived", "namespace": "b/x", "ttl_seconds": 1}, principal=LOCAL_PRINCIPAL)
    time.sleep(1.2)
    assert svc.gc(principal=LOCAL_PRINCIPAL).archived == 1
    response = server.http(writer).post("/api/v1/memories", json={"id": old.id, "namespace": "a/x", "content": "mine"})
    hidden = server.http(writer).post("/api/v1/memories", json={"id": live_b, "namespace": "a/x", "content": "mine"})
    assert _message(response, old.id) == _message(hidden, live_b)
    assert svc.lifecycle.archive_restore(old.id, principal=LOCAL_PRINCIPAL).namespace == "b/x"


def test_a_visible_deleted_id_is_not_reused_in_another_namespace(server):
    svc, _, _, gone_b = _world(server)
    root = svc.create_key("root2", role="admin", principal=LOCAL_PRINCIPAL).key
    response = server.http(root).post("/api/v1/memories", json={"id": gone_b, "namespace": "c/y", "content": "elsewhere"})
    assert response.status_code == 409, response.text
    assert "restore" in response.json()["error"]["message"] and "b/x" in response.json()["error"]["message"]
    assert svc.lifecycle.restore(gone_b, principal=LOCAL_PRINCIPAL).namespace == "b/x"
