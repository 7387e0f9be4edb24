"""Hostile values through the Python API on both backends: each is one clear
InvalidInputError, never a driver error (PostgreSQL refuses NUL in text), and nothing of it
is stored."""

from __future__ import annotations

import math

import pytest

from memmesh import Memory
from memmesh.errors import ContentTooLargeError, InvalidInputError
from memmesh.model import LOCAL_PRINCIPAL as P


def test_unstorable_text_and_impossible_numbers_are_refused_on_every_backend(mem_on: Memory) -> None:
    bus = mem_on.service.bus
    chat = bus.open(["a", "b"], principal=P)
    queue = bus.open(["boss", "w"], kind="queue", principal=P)
    for bad in ("nul \x00 here", "lone \ud800 surrogate"):
        with pytest.raises(InvalidInputError, match=r"message contains a (NUL|lone UTF-16 surrogate)"):
            bus.send(chat.id, bad, sender="a", token=chat.token, principal=P)
        with pytest.raises(InvalidInputError, match="topic contains"):
            bus.open(["a"], topic=bad, principal=P)
    for timeout in (math.inf, math.nan, 1e308, 4e9, 0, -1):
        with pytest.raises(InvalidInputError, match="timeout must be"):
            bus.open(["a"], timeout_s=timeout, principal=P)
    with pytest.raises(InvalidInputError, match="created_by"):
        bus.open(["a"], created_by="x\x00y", principal=P)
    with pytest.raises(InvalidInputError, match="wait must be"):
        bus.unread(chat.id, agent="b", token=chat.token, wait_s=math.nan, principal=P)

    bus.send(queue.id, "task", sender="boss", token=queue.token, principal=P)
    task = bus.claim(queue.id, worker="w", token=queue.token, principal=P)
    assert task is not None
    with pytest.raises(InvalidInputError, match="result contains a NUL"):
        bus.complete(queue.id, task.attempt_token, worker="w", token=queue.token, result="done\x00", principal=P)
    with pytest.raises(InvalidInputError, match="reason contains a NUL"):
        bus.fail(queue.id, task.attempt_token, worker="w", token=queue.token, reason="\x00", principal=P)
    with pytest.raises(InvalidInputError, match="reason must be text"):
        bus.fail(queue.id, task.attempt_token, worker="w", token=queue.token, reason=5, principal=P)  # type: ignore[arg-type]
    with pytest.raises(ContentTooLargeError, match=r"result is 65537 bytes; the limit is 65536"):
        bus.complete(queue.id, task.attempt_token, worker="w", token=queue.token, result="r" * 65537, principal=P)
    done = bus.complete(queue.id, task.attempt_token, worker="w", token=queue.token, result="ok", principal=P)
    assert done.state == "done" and done.result == "ok", "the refusals left the lease alone"

    assert sorted(c.id for c in bus.list(principal=P)) == sorted([chat.id, queue.id]), "no refused conversation was stored"
    assert bus.unread(chat.id, agent="b", token=chat.token, principal=P).messages == []


def test_a_lease_out_of_range_is_refused_with_the_range_it_accepts(mem_on: Memory) -> None:
    bus = mem_on.service.bus
    queue = bus.open(["boss", "w"], kind="queue", principal=P)
    bus.send(queue.id, "task", sender="boss", token=queue.token, principal=P)
    for lease in (0, -1, 86_401, math.nan, math.inf):
        with pytest.raises(InvalidInputError, match=r"lease must be above 0 and at most 86400 seconds \(one day\)"):
            bus.claim(queue.id, worker="w", token=queue.token, lease_s=lease, principal=P)
    task = bus.claim(queue.id, worker="w", token=queue.token, lease_s=86_400, principal=P)
    assert task is not None and task.attempt == 1, "the refused claims leased nothing"
