"""PostgreSQL queue: a claim and a complete are one statement each (one round trip, no
BEGIN … COMMIT), and the one-statement paths keep every rule: history, fencing of a lost
lease, a lapsed lease given back before the next claim, a wrong token refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from memmesh import Memory
from memmesh.bus.sql import BusSql
from memmesh.errors import ForbiddenError, LeaseLostError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL as P


def _count(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    seen = {"write": 0, "statement": 0}
    for name in seen:
        real = getattr(BusSql, name)

        def counted(self: BusSql, _real: Any = real, _name: str = name) -> Any:
            seen[_name] += 1
            return _real(self)

        monkeypatch.setattr(BusSql, name, counted)
    return seen


def test_claim_and_complete_are_one_statement_each(pg_database: str, open_memory: Callable[..., Memory], clock: Any, monkeypatch) -> None:
    bus = open_memory(pg_database).service.bus
    q = bus.open(["boss", "w1", "w2"], kind="queue", principal=P)
    bus.send_many(q.id, [f"task {i}" for i in range(6)], sender="boss", token=q.token, principal=P)
    seen = _count(monkeypatch)
    for i in range(5):
        got = bus.claim(q.id, worker="w1", token=q.token, lease_s=10, principal=P)
        assert got is not None and got.message.body == f"task {i}" and got.attempt == 1
        done = bus.complete(q.id, got.attempt_token, worker="w1", token=q.token, result=f"ok {i}", principal=P)
        assert done.state == "done" and done.result == f"ok {i}" and done.worker == "w1"
        assert [(e["event"], e["attempt"], e["worker"]) for e in done.history] == [("delivered", 1, "w1"), ("completed", 1, "w1")]
    assert seen == {"write": 0, "statement": 10}, seen

    # a paused worker's lease runs out: the next claim gives it back first, then its late ack is refused
    lost = bus.claim(q.id, worker="w1", token=q.token, lease_s=5, principal=P)
    assert lost is not None
    clock.advance(seconds=6)
    again = bus.claim(q.id, worker="w2", token=q.token, lease_s=30, principal=P)
    assert again is not None and again.message.id == lost.message.id and again.attempt == 2
    with pytest.raises(LeaseLostError):
        bus.complete(q.id, lost.attempt_token, worker="w1", token=q.token, principal=P)
    with pytest.raises(ForbiddenError, match="leased to w2"):
        bus.complete(q.id, again.attempt_token, worker="w1", token=q.token, principal=P)
    with pytest.raises(NotFoundError):
        bus.claim(q.id, worker="w2", token="f" * 64, principal=P)
    done = bus.complete(q.id, again.attempt_token, worker="w2", token=q.token, result="ok", principal=P)
    events = [e["event"] for e in done.history]
    assert events == ["delivered", "returned", "delivered", "completed"] and done.attempts == 2
    assert bus.claim(q.id, worker="w2", token=q.token, principal=P) is None
