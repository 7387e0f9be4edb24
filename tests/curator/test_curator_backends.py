"""The curator's SQL (runs, changes, the lease, link removal) on both backends: a run and its
rollback leave the store as it was, and the lease admits one run at a time."""

from __future__ import annotations

import time

import pytest

from memmesh import Memory
from memmesh.errors import ConflictError, NotFoundError

pytestmark = pytest.mark.postgres


def _state(mem: Memory) -> tuple[dict[str, object], list[object]]:
    items = mem.list(limit=1000).items
    memories = {m.id: m.model_dump(mode="json", exclude={"updated_at", "version"}) for m in items}
    links = sorted(str(lk.model_dump(mode="json")) for m in items for lk in mem.links(m.id))
    return memories, links


def test_run_and_rollback_on_each_backend(mem_on: Memory) -> None:
    mem = mem_on
    for text in (
        "The deploy window is Tuesday afternoon.",
        "Our deploy window is on Tuesday afternoon.",
        "The conference room holds 12 people.",
        "The conference room holds 20 people.",
    ):
        mem.add(text, namespace="office")
    before = _state(mem)
    report = mem.curate()
    assert report.autonomy.clusters_formed == 1 and report.contradictions_found == 1 and report.auto_tagged >= 2
    assert _state(mem) != before
    undone = mem.curator_rollback(report.run_id)
    assert undone.restored == report.autonomy.rollback_entries_written and _state(mem) == before
    assert [r.id for r in mem.curator_runs()] == [report.run_id]
    with pytest.raises(ConflictError):
        mem.curator_rollback(report.run_id)
    with pytest.raises(NotFoundError):
        mem.curator_rollback("no-such-run")


def test_the_lease_admits_one_holder_at_a_time_on_each_backend(mem_on: Memory) -> None:
    db = mem_on.service.curator.lease
    now = time.time()
    assert db.acquire("a", now, 60) is None
    assert db.acquire("b", now, 60) == "a"
    assert db.acquire("a", now, 60) is None  # renewing its own lease
    assert db.acquire("b", now + 61, 60) is None  # a's lease ran out
    db.release("a")  # not the holder: changes nothing
    assert db.acquire("a", now + 62, 60) == "b"
    db.release("b")
    assert db.acquire("a", now + 62, 60) is None
