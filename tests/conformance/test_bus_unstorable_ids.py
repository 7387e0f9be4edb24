"""A conversation id no conversation can have (a NUL, a lone UTF-16 surrogate: neither is
storable text) gets the answer an unknown id gets, on both backends: NotFoundError, not a
driver error (PostgreSQL refuses NUL; a lone surrogate cannot be encoded for either
backend). Such ids reach the core from MCP's JSON and from Python callers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from memmesh import Memory
from memmesh.errors import InvalidInputError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL as P


def test_unstorable_conversation_ids_are_unknown_conversations(mem_on: Memory) -> None:
    bus = mem_on.service.bus
    queue = bus.open(["boss", "w"], kind="queue", principal=P)
    chat = bus.open(["a", "b"], principal=P)
    bus.send(queue.id, "task", sender="boss", token=queue.token, principal=P)
    attempt = "0" * 32

    def calls(bad: str) -> dict[str, Callable[[], Any]]:
        return {
            "send": lambda: bus.send(bad, "x", sender="boss", token=queue.token, principal=P),
            "send_many": lambda: bus.send_many(bad, ["x"], sender="boss", token=queue.token, principal=P),
            "claim": lambda: bus.claim(bad, worker="w", token=queue.token, principal=P),
            "heartbeat": lambda: bus.heartbeat(bad, attempt, worker="w", token=queue.token, principal=P),
            "complete": lambda: bus.complete(bad, attempt, worker="w", token=queue.token, principal=P),
            "fail": lambda: bus.fail(bad, attempt, worker="w", token=queue.token, principal=P),
            "tasks": lambda: bus.tasks(bad, token=queue.token, principal=P),
            "unread": lambda: bus.unread(bad, agent="b", token=chat.token, principal=P),
            "ack": lambda: bus.ack(bad, agent="b", token=chat.token, all=True, principal=P),
            "transcript": lambda: bus.transcript(bad, token=chat.token, principal=P),
        }

    for bad in ("\x00", "id\x00tail", "\ud800", f"{queue.id}\udfff"):
        for name, call in calls(bad).items():
            with pytest.raises(NotFoundError, match=r"no conversation .* with this token") as refused:
                call()
            assert "\x00" not in str(refused.value) and "\ud800" not in str(refused.value), f"{name}: the id is shown escaped"
    for bad in ("\x00", "\ud800"):
        with pytest.raises(InvalidInputError, match="after"):
            bus.transcript(chat.id, token=chat.token, after=bad, principal=P)

    task = bus.claim(queue.id, worker="w", token=queue.token, principal=P)
    assert task is not None and task.attempt == 1, "the refused calls leased nothing"
    assert bus.unread(chat.id, agent="b", token=chat.token, principal=P).messages == []
