"""A task queue hands each task to whichever worker claims it, so a send addressed to one
agent (``to``) cannot be honoured there: it is refused, naming what to do instead, and
stores nothing (it used to be stored and then leased to any worker, the addressee or not)."""

from __future__ import annotations

import pytest

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.model import LOCAL_PRINCIPAL as P


def test_a_task_addressed_to_one_worker_is_refused_and_stores_nothing(mem_on: Memory) -> None:
    bus = mem_on.service.bus
    queue = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    with pytest.raises(InvalidInputError, match=r"is a task queue: .* whichever worker claims it.*without a recipient"):
        bus.send(queue.id, "for w1 only", sender="boss", to="w1", token=queue.token, principal=P)
    with pytest.raises(InvalidInputError, match="is a task queue"):
        bus.send_many(queue.id, ["a", "b"], sender="boss", to="w2", token=queue.token, principal=P)
    assert bus.tasks(queue.id, token=queue.token, principal=P) == [], "nothing of the refused sends was stored"
    assert bus.claim(queue.id, worker="w2", token=queue.token, principal=P) is None

    sent = bus.send(queue.id, "for anyone", sender="boss", token=queue.token, principal=P)
    task = bus.claim(queue.id, worker="w2", token=queue.token, principal=P)
    assert task is not None and task.message.id == sent.id and task.message.seq == 1, "the refusals used no number"

    chat = bus.open(["a", "b", "c"], principal=P)  # in a chat, a recipient still narrows delivery
    bus.send(chat.id, "only b", sender="a", to="b", token=chat.token, principal=P)
    assert [m.body for m in bus.unread(chat.id, agent="b", token=chat.token, principal=P).messages] == ["only b"]
    assert bus.unread(chat.id, agent="c", token=chat.token, principal=P).messages == []


def test_acking_in_a_task_queue_is_refused_as_unread_is(mem_on: Memory) -> None:
    """A queue's tasks are finished by complete (or given back by fail), never acked: ``ack``
    there is refused like ``unread`` is, instead of answering "acked 0" as if it had done
    something."""
    bus = mem_on.service.bus
    queue = bus.open(["boss", "w"], kind="queue", principal=P)
    sent = bus.send(queue.id, "task", sender="boss", token=queue.token, principal=P)
    with pytest.raises(InvalidInputError, match="is a task queue"):
        bus.unread(queue.id, agent="w", token=queue.token, principal=P)
    with pytest.raises(InvalidInputError, match=r"is a task queue: .*bus complete"):
        bus.ack(queue.id, agent="w", token=queue.token, all=True, principal=P)
    with pytest.raises(InvalidInputError, match=r"is a task queue: .*bus complete"):
        bus.ack(queue.id, agent="w", token=queue.token, ids=[sent.id], principal=P)
    task = bus.claim(queue.id, worker="w", token=queue.token, principal=P)
    assert task is not None and task.message.id == sent.id and task.attempt == 1
