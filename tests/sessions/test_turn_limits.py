"""Session errors in the caller's own terms (probe25 L1, L2).

A key limited to some namespaces that appends (or remembers) without ``namespace`` starts a
session under the default root ``sessions``, which it may not write: the 403 says so and names
a root it may use. A turn's text too long for a memory once the stored ``[turn N] role: ``
prefix is added is refused in the bytes the caller sent, with the room a turn's text has."""

from __future__ import annotations

import pytest
from tests.http.http_support import Running

from memmesh import Memory
from memmesh.errors import ContentTooLargeError, ForbiddenError
from memmesh.model import Principal

SCOPED = Principal(agent_id="alice", role="writer", namespaces=["a/*"])


def test_a_scoped_key_without_namespace_is_told_to_give_one_inside_its_namespaces(mem: Memory) -> None:
    sessions, extraction = mem.service.sessions, mem.service.extraction
    calls = (
        lambda: sessions.append_many("s1", [{"role": "user", "content": "hi"}], principal=SCOPED),
        lambda: extraction.remember([{"role": "user", "content": "I like tea."}], session_id="s1", principal=SCOPED),
    )
    for call in calls:
        with pytest.raises(ForbiddenError) as refused:
            call()
        said = str(refused.value)
        assert "outside this key's namespaces (a/*)" in said, said
        assert "a session started without namespace lives under 'sessions' (sessions.namespace)" in said, said
        assert "give namespace, a root inside them, e.g. 'a'" in said, said
    assert mem.session_list() == []  # nothing was written
    turns = sessions.append_many("s1", [{"role": "user", "content": "hi"}], namespace="a", principal=SCOPED)
    assert [t.content for t in turns] == ["hi"]


def test_a_turn_too_long_is_refused_in_the_bytes_the_caller_sent(mem: Memory) -> None:
    limit = mem.service.policy.max_content_bytes
    room = limit - len(b"[turn 1] user: ")
    with pytest.raises(ContentTooLargeError) as refused:
        mem.session_append("s1", content="a" * (room + 1))
    said = str(refused.value)
    assert said.startswith(f"content of turn 1 is {room + 1} bytes; a turn's text may be at most {room} bytes"), said
    assert "split it over several turns" in said
    assert mem.session_list() == []
    mem.session_append("s1", content="a" * room)  # exactly the room: stored
    assert len(mem.service.sessions.turns("s1", principal=mem.principal)) == 1


def test_http_answers_a_long_turn_with_413_naming_the_room(http_server: Running) -> None:
    http = http_server.http()
    sent = http.post("/api/v1/sessions/big1/turns", json={"role": "user", "content": "a" * 65530, "namespace": "a"})
    assert sent.status_code == 413, sent.text
    message = sent.json()["error"]["message"]
    assert message.startswith("content of turn 1 is 65530 bytes; a turn's text may be at most 65521 bytes"), message
