"""Bus hardening left over from the attack review (issues 17 and 24), on both backends."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from memmesh import Memory
from memmesh.errors import ForbiddenError, LeaseLostError, MemmeshError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.model import Principal


def refusal(call: Any) -> tuple[type, str, int]:
    with pytest.raises(MemmeshError) as err:
        call()
    return type(err.value), err.value.message, err.value.http_status


def test_an_unknown_conversation_and_a_wrong_token_get_the_same_answer(mem_on: Memory) -> None:
    # Before: an unknown id was a 404 and a known one with a wrong token a 403, so anyone
    # with a bus key could probe which conversation ids exist.
    bus = mem_on.service.bus
    conv = bus.open(["a", "b"], principal=P)
    other = bus.open(["a", "b"], principal=P)  # a real token, of another conversation
    ghost = "01J00000000000000000000000"
    for token in (other.token, "f" * 64):
        calls = {
            "send": lambda cid, t=token: bus.send(cid, "hi", sender="a", token=t, principal=P),
            "unread": lambda cid, t=token: bus.unread(cid, agent="b", token=t, principal=P),
            "ack": lambda cid, t=token: bus.ack(cid, agent="b", all=True, token=t, principal=P),
            "claim": lambda cid, t=token: bus.claim(cid, worker="a", token=t, principal=P),
        }
        for name, call in calls.items():
            known = refusal(lambda c=call: c(conv.id))
            unknown = refusal(lambda c=call: c(ghost))
            assert known[0] is NotFoundError and known[2] == 404, (name, known)
            assert (known[0], known[1].replace(conv.id, "ID"), known[2]) == (unknown[0], unknown[1].replace(ghost, "ID"), unknown[2])
            assert token not in known[1] and conv.token not in known[1]
    assert bus.unread(conv.id, agent="b", token=conv.token, principal=P).messages == [], "the refusals stored nothing"


def test_a_scoped_key_lists_its_conversations_however_many_others_are_newer(mem_on: Memory, clock: Any) -> None:
    # Before: a namespace-limited key got the newest limit×10 conversations and kept its own
    # from those, so with enough newer conversations of other agents it listed none of its own.
    bus = mem_on.service.bus
    mine = [bus.open(["carol", "x"], topic=f"carol {i}", principal=P) for i in range(3)]
    clock.advance(seconds=1)
    for i in range(40):
        bus.open(["alice", "bob"], topic=f"other {i}", principal=P)
    carol = Principal(agent_id="carol", role="reader", namespaces=["carol"])
    listed = bus.list(principal=carol, limit=2)
    assert [c.topic for c in listed] == ["carol 2", "carol 1"] or {c.id for c in listed} <= {c.id for c in mine}
    assert len(listed) == 2
    assert {c.id for c in bus.list(principal=carol, limit=10)} == {c.id for c in mine}
    # an agent filter is applied in the same query, and a name never matches a longer one
    bus.open(["carol2", "x"], principal=P)
    assert {c.id for c in bus.list(principal=P, agent="carol", limit=5)} == {c.id for c in mine}
    nobody = Principal(agent_id=None, role="reader", namespaces=["carol"])
    assert bus.list(principal=nobody) == []


def test_listing_archives_by_time_without_writing(mem_on: Memory, clock: Any) -> None:
    bus = mem_on.service.bus
    short = bus.open(["a", "b"], timeout_s=60, principal=P)
    long = bus.open(["a", "b"], timeout_s=3600, principal=P)
    clock.advance(seconds=61)
    assert [c.id for c in bus.list(principal=P)] == [long.id]
    archived = bus.list(principal=P, archived=True)
    assert [c.id for c in archived] == [short.id]
    assert archived[0].archived_at == archived[0].expires_at, "it shows the moment it timed out"
    assert bus.counts()["conversations_open"] == 1
    with pytest.raises(ForbiddenError, match="archived"):
        bus.send(short.id, "late", sender="a", token=short.token, principal=P)
    url = mem_on.service.store.url
    if url.startswith("sqlite:///"):  # another connection sees no commit while listing
        watcher = sqlite3.connect(url.removeprefix("sqlite:///"))
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        for _ in range(3):
            bus.list(principal=P)
            bus.list(principal=P, archived=True)
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == before, "bus list wrote to the store"
        watcher.close()


def test_attempt_tokens_fence_without_matching_in_sql(mem_on: Memory, clock: Any) -> None:
    bus = mem_on.service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    for i in range(3):
        bus.send(q.id, f"task {i}", sender="boss", token=q.token, principal=P)
    first = bus.claim(q.id, worker="w1", token=q.token, lease_s=5, principal=P)
    second = bus.claim(q.id, worker="w2", token=q.token, lease_s=5, principal=P)
    assert first is not None and second is not None
    near = first.attempt_token[:-1] + ("0" if first.attempt_token[-1] != "0" else "1")
    with pytest.raises(LeaseLostError):
        bus.complete(q.id, near, worker="w1", token=q.token, principal=P)
    with pytest.raises(ForbiddenError, match="leased to w2"):
        bus.complete(q.id, second.attempt_token, worker="w1", token=q.token, principal=P)
    clock.advance(seconds=6)  # w1 paused past its lease: the task goes to w2 with a new token
    again = bus.claim(q.id, worker="w2", token=q.token, lease_s=30, principal=P)
    assert again is not None and again.message.id == first.message.id and again.attempt == 2
    with pytest.raises(LeaseLostError):
        bus.complete(q.id, first.attempt_token, worker="w1", token=q.token, principal=P)
    done = bus.complete(q.id, again.attempt_token, worker="w2", token=q.token, result="ok", principal=P)
    assert done.state == "done" and done.attempts == 2 and done.result == "ok"
    with pytest.raises(LeaseLostError):  # a second completion of the same attempt
        bus.complete(q.id, again.attempt_token, worker="w2", token=q.token, principal=P)
