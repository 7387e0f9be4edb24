"""Inbox notes stay inside the namespaces they carry (probe18): agent names belong to no
tenant, so a key for a name sees only the notes whose namespace it may read, and a
namespace-scoped sender's note always carries a namespace. Each test fails on the code
before (where any key for the name read every note, and notes blocked the name instead)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from memmesh.model import LOCAL_PRINCIPAL
from memmesh.subscriptions import inbox as inbox_module


def _key(server: Any, agent: str, role: str, namespaces: list[str] | None) -> httpx.Client:
    return server.http(server.service.create_key(agent, role=role, namespaces=namespaces, principal=LOCAL_PRINCIPAL).key)


def test_a_key_for_a_name_does_not_see_notes_about_namespaces_it_cannot_read(server: Any) -> None:
    # probe5's case: a note about b/y for the unregistered 'b-worker'; an a/* admin may now
    # give that name a key (it was refused, 403), and the key does not see the note.
    server.service.add({"content": "b's", "namespace": "b/y"}, principal=LOCAL_PRINCIPAL)
    root = _key(server, "root", "admin", None)
    assert root.post("/api/v1/notify", json={"to": "b-worker", "body": "b secret", "namespace": "b/y"}).status_code == 201
    lead_a = _key(server, "lead-a", "admin", ["a/*"])
    made = lead_a.post("/api/v1/keys", json={"agent_id": "b-worker", "role": "reader", "namespaces": ["a"]})
    assert made.status_code == 201, made.text
    claimed = server.http(made.json()["key"])
    assert claimed.get("/api/v1/inbox").json() == []
    assert claimed.get("/api/v1/inbox", params={"all": True}).json() == []
    assert "b secret" not in claimed.get("/api/v1/inbox", params={"all": True, "peek": True}).text
    # left unread for a key that may read b/y
    owner = _key(server, "b-worker", "reader", ["b/*"])
    peeked = owner.get("/api/v1/inbox", params={"peek": True}).json()
    assert [(m["body"], m["namespace"], m["read_at"]) for m in peeked] == [("b secret", "b/y", None)]


def test_a_scoped_senders_note_without_namespace_gets_the_keys_namespace(server: Any) -> None:
    alice = _key(server, "alice", "writer", ["a"])
    sent = alice.post("/api/v1/notify", json={"to": "carol", "body": "hello"})
    assert sent.status_code == 201 and sent.json()["namespace"] == "a", sent.text
    # a sender not limited to some namespaces leaves none: that note is for whoever holds the name
    root = _key(server, "root", "writer", None)
    unscoped = root.post("/api/v1/notify", json={"to": "carol", "body": "to anyone called carol"})
    assert unscoped.status_code == 201 and unscoped.json()["namespace"] is None
    outsider = _key(server, "carol", "reader", ["c"])
    assert [m["body"] for m in outsider.get("/api/v1/inbox", params={"peek": True}).json()] == ["to anyone called carol"]
    insider = _key(server, "carol", "reader", ["a"])
    seen = insider.get("/api/v1/inbox").json()
    assert [(m["body"], m["namespace"]) for m in seen] == [("hello", "a"), ("to anyone called carol", None)]


def test_a_key_with_several_namespaces_must_name_the_notes_namespace(server: Any) -> None:
    assert (
        _key(server, "erin", "writer", ["a", "a/x"]).post("/api/v1/notify", json={"to": "carol", "body": "hi"}).json()["namespace"] == "a"
    )
    both = _key(server, "dora", "writer", ["a", "c/*"])
    refused = both.post("/api/v1/notify", json={"to": "carol", "body": "hello"})
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert "give namespace" in message and "a, c/*" in message
    assert both.post("/api/v1/notify", json={"to": "carol", "body": "hello", "namespace": "c/x"}).json()["namespace"] == "c/x"
    mine = both.post("/api/v1/memories", json={"content": "dora's", "namespace": "a/z"}).json()
    pointed = both.post("/api/v1/notify", json={"to": "carol", "body": "look", "memory_id": mine["id"]})
    assert pointed.status_code == 201 and pointed.json()["namespace"] == "a/z"  # the memory's namespace
    reader = server.service.inbox.read(agent="carol", principal=LOCAL_PRINCIPAL)
    assert [(m.body, m.namespace) for m in reader] == [("hi", "a"), ("hello", "c/x"), ("look", "a/z")], "the refused note was not stored"


def test_hidden_notes_do_not_crowd_out_the_visible_ones(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox_module, "READ_PAGE", 2, raising=False)  # the read pages through the hidden notes
    for i in range(5):
        server.service.inbox.notify("carol", f"about b {i}", namespace="b", principal=LOCAL_PRINCIPAL)
    server.service.inbox.notify("carol", "about a", namespace="a", principal=LOCAL_PRINCIPAL)
    server.service.inbox.notify("carol", "about a, later", namespace="a", principal=LOCAL_PRINCIPAL)
    carol = _key(server, "carol", "reader", ["a"])
    assert [m["body"] for m in carol.get("/api/v1/inbox", params={"limit": 1}).json()] == ["about a"]
    assert [m["body"] for m in carol.get("/api/v1/inbox", params={"limit": 1}).json()] == ["about a, later"]
    assert carol.get("/api/v1/inbox").json() == []
    unread = server.service.inbox.read(agent="carol", mark_read=False, principal=LOCAL_PRINCIPAL)
    assert [m.body for m in unread] == [f"about b {i}" for i in range(5)]
