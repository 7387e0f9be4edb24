"""One bus call does bounded work whoever calls it: the limits HTTP states in its schema are
the core's, so the Python API (and any face added later) keeps them too."""

from __future__ import annotations

from pathlib import Path

import pytest

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.model import LOCAL_PRINCIPAL as me


def test_send_many_posts_at_most_100_messages_and_stores_nothing_past_it(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'b.db'}") as m:
        bus = m.service.bus
        queue = bus.open(["boss", "w"], kind="queue", principal=me)
        with pytest.raises(InvalidInputError, match="at most 100 messages"):
            bus.send_many(queue.id, [f"task {i}" for i in range(101)], sender="boss", token=queue.token, principal=me)
        assert bus.tasks(queue.id, token=queue.token, principal=me) == []
        assert len(bus.send_many(queue.id, [f"task {i}" for i in range(100)], sender="boss", token=queue.token, principal=me)) == 100


def test_an_ack_looks_each_id_up_once_and_names_at_most_1000(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'b.db'}") as m:
        bus = m.service.bus
        chat = bus.open(["a", "b"], principal=me)
        sent = bus.send(chat.id, "hello", sender="a", token=chat.token, principal=me)
        bus.unread(chat.id, agent="b", token=chat.token, principal=me)
        # the same id 200,000 times was 200,000 lookups inside the write transaction
        done = bus.ack(chat.id, agent="b", token=chat.token, ids=[sent.id] * 200_000, principal=me)
        assert (done.acked_seq, done.acked) == (1, 1)
        with pytest.raises(InvalidInputError, match="at most 1000 message ids"):
            bus.ack(chat.id, agent="b", token=chat.token, ids=[f"id-{i}" for i in range(1001)], principal=me)
