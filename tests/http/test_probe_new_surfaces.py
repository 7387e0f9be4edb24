"""What an outsider with a namespace-scoped key tried against webhooks, inboxes and
extraction on a real uvicorn, and found broken: each test fails on the code before its fix.

Every refusal must be a clear 4xx naming what to fix, store nothing, and leave the route
working afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from memmesh.errors import InvalidInputError
from memmesh.memory import Memory
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.subscriptions import inbox as inbox_module


def _refused(reply: httpx.Response, status: int, *words: str) -> None:
    assert reply.status_code == status, reply.text
    message = reply.json()["error"]["message"]
    for word in words:
        assert word in message, reply.text


def _alice(server: Any) -> httpx.Client:
    """A writer limited to namespace ``a`` (bob's memories live in ``b``)."""
    key = server.service.create_key("alice", role="writer", namespaces=["a"], principal=LOCAL_PRINCIPAL)
    return server.http(key.key)


@pytest.mark.parametrize(
    ("url", "inside"),
    [
        ("http://[64:ff9b::a9fe:a9fe]/hook", "169.254.169.254"),  # NAT64 of the metadata service
        ("http://[64:ff9b::a00:5]/hook", "10.0.0.5"),  # NAT64 of a private address
        ("http://[64:ff9b:1::7f00:1]/hook", "127.0.0.1"),  # local-use NAT64 prefix
        ("http://[2002:a9fe:a9fe::1]/hook", "169.254.169.254"),  # 6to4 wrapping the metadata service
        ("http://[::127.0.0.1]/hook", "127.0.0.1"),  # IPv4-compatible IPv6
        ("http://[fec0::1]/hook", "fec0::1"),  # deprecated site-local (a private range)
    ],
)
def test_webhooks_to_ipv4_wrapped_in_ipv6_transition_addresses_are_refused(serve: Any, url: str, inside: str) -> None:
    # Before: Python calls these "global", so the guard let them through; on a network with
    # NAT64 (IPv6-only clouds) or 6to4 the server's call reaches the IPv4 address inside.
    server = serve()
    http = _alice(server)
    _refused(http.post("/api/v1/subscriptions", json={"namespace": "a", "url": url}), 422, inside, "server-side request forgery")
    assert http.get("/api/v1/subscriptions").json() == [], "nothing was stored"
    public = http.post("/api/v1/subscriptions", json={"namespace": "a", "url": "http://[2606:4700::1111]/hook"})
    assert public.status_code == 201, public.text


@pytest.mark.parametrize(
    "url",
    ["http://8.8.8.8/a b", "http://8.8.8.8/\nHost: evil", "http://8.8.8.8/\tx", "http://8.8.8.8/\x7f"],
)
def test_subscription_urls_with_spaces_or_control_characters_are_refused(serve: Any, url: str) -> None:
    # Before: stored as given; httpx refuses such a URL, so every delivery failed and the
    # subscription could never work (and a line break is an attempt at header smuggling).
    server = serve()
    http = _alice(server)
    _refused(http.post("/api/v1/subscriptions", json={"namespace": "a", "url": url}), 422, "url", "control character", "percent-encode")
    assert http.get("/api/v1/subscriptions").json() == [], "nothing was stored"


def test_nul_and_lone_surrogates_in_subscriptions_and_notes_are_refused_by_the_core(tmp_path: Path) -> None:
    # HTTP refuses NUL in any JSON string already, but the Python and MCP faces hand text to
    # the core as it is. Before: a NUL in a URL, secret or note body was stored on SQLite (a
    # 500 on PostgreSQL, whose text cannot hold NUL), and a lone surrogate was a
    # UnicodeEncodeError deep in the write instead of an error naming the field.
    mem = Memory(str(tmp_path / "m.db"))
    try:
        for call, words in [
            (lambda: mem.subscribe("a", "http://8.8.8.8/x\x00y"), "url holds a space or control character (\\u0000)"),
            (lambda: mem.subscribe("a", "http://8.8.8.8/\ud800"), "url holds a space or control character (\\ud800)"),
            (lambda: mem.subscribe("a", "http://8.8.8.8/hook", secret="s" * 20 + "\x00"), "secret contains a NUL"),
            (lambda: mem.notify("carol", "hi\x00there"), "body contains a NUL"),
            (lambda: mem.notify("carol", "hi \ud800"), "body contains a lone UTF-16 surrogate"),
            (lambda: mem.subscribe("a", "http://8.8.8.8/hook", events={"memory.created": 1}), "events must be a list"),  # type: ignore[arg-type]
        ]:
            with pytest.raises(InvalidInputError) as caught:
                call()
            assert words in caught.value.message
        with pytest.raises(InvalidInputError, match="message 1: name contains a NUL"):
            mem.add(messages=[{"role": "user", "name": "An\x00a", "content": "I like tea"}], namespace="a")
        assert mem.subscriptions() == [] and mem.inbox("carol") == [], "nothing was stored"
        assert mem.list(namespace="a").items == [], "no turn or fact was stored for the refused conversation"
    finally:
        mem.close()


def test_a_notification_cannot_point_at_a_memory_outside_its_namespace_or_at_none(serve: Any) -> None:
    # Before: with a namespace given, memory_id was stored unchecked: alice (namespace a)
    # could send carol a note "in a" pointing at bob's memory in b, or at an id that is no memory.
    server = serve()
    bobs = server.service.add({"content": "bob's plan", "namespace": "b"}, principal=LOCAL_PRINCIPAL)
    http = _alice(server)
    mine = http.post("/api/v1/memories", json={"content": "alice's note", "namespace": "a/x"}).json()
    hidden = http.post("/api/v1/notify", json={"to": "carol", "body": "look", "namespace": "a", "memory_id": bobs.id})
    missing = http.post("/api/v1/notify", json={"to": "carol", "body": "look", "namespace": "a", "memory_id": "no-such-id"})
    assert hidden.status_code == missing.status_code == 404, (hidden.text, missing.text)
    assert bobs.id not in hidden.text or "no memory with id" in hidden.text
    other = http.post("/api/v1/memories", json={"content": "alice's other note", "namespace": "a/y"}).json()
    _refused(
        http.post("/api/v1/notify", json={"to": "carol", "body": "look", "namespace": "a/x", "memory_id": other["id"]}),
        422,
        "a/y",
        "a/x",
    )
    carol = server.service.create_key("carol", role="reader", namespaces=["a"], principal=LOCAL_PRINCIPAL)
    assert server.http(carol.key).get("/api/v1/inbox").json() == [], "the refused notes were not delivered"
    kept = http.post("/api/v1/notify", json={"to": "carol", "body": "look", "namespace": "a", "memory_id": mine["id"]})
    assert kept.status_code == 201 and kept.json()["namespace"] == "a", kept.text


def test_a_body_nested_too_deeply_or_not_utf8_gets_an_error_that_says_what_to_fix(serve: Any) -> None:
    # Before: 400 "There was an error parsing the body", which names neither cause.
    server = serve()
    http = _alice(server)
    headers = {"Content-Type": "application/json"}
    deep = b'{"to": "carol", "body": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    for url, body in [
        ("/api/v1/notify", deep),
        ("/api/v1/remember", b'{"messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
        ("/api/v1/subscriptions", b'{"namespace": "a", "url": "http://8.8.8.8/\xff\xfe"}'),
    ]:
        reply = http.post(url, content=body, headers=headers)
        _refused(reply, 400, "could not be read as JSON", "UTF-8", "nested less than 1000 levels")
    assert http.post("/api/v1/notify", json={"to": "carol", "body": "still works"}).status_code == 201


def test_one_sender_cannot_bury_an_agents_inbox(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: any writer could leave any number of notes in any agent's inbox, which is read
    # oldest first, so a flood sent ahead of time hid every later note.
    monkeypatch.setattr(inbox_module, "MAX_UNREAD_FROM_ONE_SENDER", 3)
    server = serve()
    http = _alice(server)
    for i in range(3):
        assert http.post("/api/v1/notify", json={"to": "carol", "body": f"spam {i}"}).status_code == 201
    _refused(http.post("/api/v1/notify", json={"to": "carol", "body": "spam 3"}), 429, "3 unread notes from 'alice'", "at most 3")
    carol = server.service.create_key("carol", role="reader", namespaces=["a"], principal=LOCAL_PRINCIPAL)
    bob = server.service.create_key("bob", role="writer", namespaces=["a"], principal=LOCAL_PRINCIPAL)
    assert server.http(bob.key).post("/api/v1/notify", json={"to": "carol", "body": "real news"}).status_code == 201
    read = server.http(carol.key).get("/api/v1/inbox").json()
    assert [m["body"] for m in read] == ["spam 0", "spam 1", "spam 2", "real news"]
    assert http.post("/api/v1/notify", json={"to": "carol", "body": "after carol read"}).status_code == 201  # read notes free the cap
