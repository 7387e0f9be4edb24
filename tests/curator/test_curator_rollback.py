"""Every curator run is recorded and ``rollback`` restores the exact prior state.

The state is read through the public API before the run and after its rollback and compared
field by field: every live memory (all fields but ``updated_at`` and ``version``, which a
rollback, itself a change that must replicate, moves on), every link, the archive, and the
raw row of a memory that had expired (archived by the run, back in place after the rollback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import FakeClock

from memmesh import Memory
from memmesh.errors import ConflictError, InvalidInputError, NotFoundError

MOVING = {"updated_at", "version"}


def view(mem: Memory) -> dict[str, Any]:
    """The store as the public API shows it."""
    items, cursor = [], None
    while True:
        page = mem.list(limit=1000, cursor=cursor)
        items += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    links = {(lk.source_id, lk.target_id, lk.relation.value): lk.model_dump(mode="json") for m in items for lk in mem.links(m.id)}
    archive = mem.service.lifecycle.archive_list(limit=1000, principal=mem.principal)
    return {
        "memories": {m.id: m.model_dump(mode="json", exclude=MOVING) for m in items},
        "links": links,
        "archive": sorted(a.memory.id for a in archive),
    }


def busy_store(open_mem: Callable[..., Memory], clock: FakeClock) -> tuple[Memory, dict[str, str]]:
    """A store where a run makes every kind of change: archive, forget, consolidate,
    contradict, auto-tag, priority up and down."""
    mem = open_mem(semantic=False, clock=clock, forget_max_priority=1, forget_idle_days=1, boost_accesses=2, decay_idle_days=1)
    ids = {
        "dup1": mem.add("The deploy window is Tuesday afternoon.", namespace="ops", tier="long", tags=["deploy"]).id,
        "dup2": mem.add("Our deploy window is on Tuesday afternoon.", namespace="ops", tier="long", tags=["schedule"]).id,
        "lim1": mem.add("The API rate limit is 100 requests per minute.", namespace="ops", tier="long").id,
        "lim2": mem.add("The API rate limit is 500 requests per minute.", namespace="ops", tier="long").id,
        "used": mem.add("Grace leads the design system working group.", namespace="team", tier="long", priority=5).id,
        "idle": mem.add("The coffee machine on floor three is broken.", namespace="team", tier="long", priority=6).id,
        "junk": mem.add("A passing thought about lunch options.", namespace="team", priority=1).id,
        "old": mem.add("A short note that will expire soon.", namespace="team", tier="short").id,
    }
    mem.link(ids["used"], ids["idle"], "related_to")
    clock.advance(days=2)  # `old` expires (6 h), `junk` idles past a day; mid memories live 7 days
    for _ in range(2):
        mem.service.get(ids["used"], principal=mem.principal, touch=True)
    return mem, ids


def test_rollback_restores_the_exact_prior_state(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    mem, ids = busy_store(open_mem, clock)
    before = view(mem)
    expired_row = mem.service.store.get(ids["old"])
    report = mem.curate()
    a = report.autonomy
    assert a.clusters_formed == 1 and a.memories_consolidated == 1 and report.contradictions_found == 1
    assert a.memories_forgotten == 2 and a.priority_adjustments >= 2 and report.auto_tagged >= 1
    assert a.rollback_entries_written == report.operations_attempted
    during = view(mem)
    assert during != before
    assert ids["junk"] not in during["memories"] and ids["old"] in during["archive"]
    assert during["memories"][ids["used"]]["priority"] == 6 and during["memories"][ids["idle"]]["priority"] == 5

    undone = mem.curator_rollback(report.run_id)

    assert undone.restored == a.rollback_entries_written and undone.conflicts == []
    assert view(mem) == before
    back = mem.service.store.get(ids["old"])
    assert back is not None and expired_row is not None
    assert back.model_dump(exclude=MOVING) == expired_row.model_dump(exclude=MOVING)
    run = mem.curator_runs()[0]
    assert run.id == report.run_id and run.rolled_back_at is not None and run.rollback is not None
    assert run.rollback["restored"] == undone.restored


def test_rollback_keeps_a_later_edit_and_says_so(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    mem, ids = busy_store(open_mem, clock)
    report = mem.curate()
    mem.update(ids["used"], priority=9)  # a person changed it after the run
    undone = mem.curator_rollback(report.run_id)
    assert mem.get(ids["used"]).priority == 9
    assert any(ids["used"] in c and "changed again" in c for c in undone.conflicts)
    assert undone.restored == report.autonomy.rollback_entries_written - 1


def test_rollback_of_an_unknown_run_is_not_found_and_changes_nothing(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    mem, _ids = busy_store(open_mem, clock)
    before = view(mem)
    with pytest.raises(NotFoundError, match="no curator run with id nope"):
        mem.curator_rollback("nope")
    with pytest.raises(InvalidInputError):
        mem.curator_rollback("  ")
    assert view(mem) == before and mem.curator_runs() == []


def test_a_second_rollback_and_the_rollback_of_a_dry_run_are_conflicts(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    mem, _ids = busy_store(open_mem, clock)
    dry = mem.curate(dry_run=True)
    assert dry.autonomy.rollback_entries_written == 0 and dry.operations_attempted > 0
    with pytest.raises(ConflictError, match="dry run"):
        mem.curator_rollback(dry.run_id)
    report = mem.curate()
    mem.curator_rollback(report.run_id)
    after = view(mem)
    with pytest.raises(ConflictError, match="rolled back already"):
        mem.curator_rollback(report.run_id)
    assert view(mem) == after


def test_a_dry_run_changes_nothing_and_reports_what_a_run_would_do(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    mem, _ids = busy_store(open_mem, clock)
    before = view(mem)
    dry = mem.curate(dry_run=True)
    assert view(mem) == before
    real = mem.curate()
    keys = ("memories_scanned", "auto_tagged", "contradictions_found", "operations_attempted")
    assert [getattr(dry, k) for k in keys] == [getattr(real, k) for k in keys]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3"])
def test_max_ops_below_one_or_not_a_number_is_refused_before_anything_happens(
    open_mem: Callable[..., Memory], clock: FakeClock, bad: Any
) -> None:
    mem, _ids = busy_store(open_mem, clock)
    before = view(mem)
    with pytest.raises(InvalidInputError, match="max_ops must be a whole number of at least 1"):
        mem.curate(max_ops=bad)
    assert view(mem) == before and mem.curator_runs() == []


def test_max_ops_caps_the_writes_and_counts_the_rest(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    mem, _ids = busy_store(open_mem, clock)
    everything = mem.curate(dry_run=True).operations_attempted
    capped = mem.curate(max_ops=2)
    assert capped.operations_attempted == 2 == capped.autonomy.rollback_entries_written
    assert capped.operations_skipped_cap == everything - 2
    rest = mem.curate()  # the next run does the rest, repeating nothing
    assert rest.operations_attempted == everything - 2 and rest.operations_skipped_cap == 0


def test_a_run_in_another_namespace_touches_nothing_outside(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    mem, ids = busy_store(open_mem, clock)
    before = view(mem)
    report = mem.curate(namespace="ops")
    after = view(mem)
    for key in ("used", "idle", "junk"):
        assert after["memories"].get(ids[key]) == before["memories"].get(ids[key])
    assert report.namespace == "ops" and report.memories_scanned == 4


def test_a_run_while_another_holds_the_lease_is_a_conflict(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    import time

    mem, _ids = busy_store(open_mem, clock)
    assert mem.service.curator.lease.acquire("someone-else", time.time(), 60) is None
    with pytest.raises(ConflictError, match="already going"):
        mem.curate()
    assert mem.curate(dry_run=True).dry_run  # a dry run writes nothing and needs no lease
    mem.service.curator.lease.release("someone-else")
    assert not mem.curate().dry_run


def test_a_rollback_while_a_run_holds_the_lease_is_a_conflict(open_mem: Callable[..., Memory], clock: FakeClock) -> None:
    import time

    mem, _ids = busy_store(open_mem, clock)
    report = mem.curate()
    after = view(mem)
    assert mem.service.curator.lease.acquire("a-running-run", time.time(), 60) is None
    with pytest.raises(ConflictError, match="a curator run is going on"):
        mem.curator_rollback(report.run_id)
    assert view(mem) == after and mem.curator_runs()[0].rolled_back_at is None
    mem.service.curator.lease.release("a-running-run")
    assert mem.curator_rollback(report.run_id).restored == report.autonomy.rollback_entries_written


def test_a_key_limited_to_some_namespaces_curates_lists_and_rolls_back_only_its_own(
    open_mem: Callable[..., Memory], clock: FakeClock
) -> None:
    from memmesh.model import Principal

    mem, ids = busy_store(open_mem, clock)
    curator = mem.service.curator
    ops = Principal(agent_id="ops-bot", role="writer", namespaces=["ops"])
    team = Principal(agent_id="team-bot", role="writer", namespaces=["team"])
    before = view(mem)
    mine = curator.run(principal=ops)  # no namespace: everything the key covers, nothing else
    assert mine.memories_scanned == 4 and mine.operations_attempted > 0
    assert view(mem)["memories"][ids["junk"]] == before["memories"][ids["junk"]]  # team/ untouched
    assert [r.id for r in curator.runs(principal=ops)] == [mine.run_id]
    assert curator.runs(principal=team) == []
    with pytest.raises(NotFoundError):
        curator.rollback(mine.run_id, principal=team)
    with pytest.raises(NotFoundError):
        curator.get_run(mine.run_id, principal=team)
    everything = mem.curate()  # a store-wide run: not visible to namespace-limited keys
    assert [r.id for r in curator.runs(principal=ops)] == [mine.run_id]
    mem.curator_rollback(everything.run_id)
    assert curator.rollback(mine.run_id, principal=ops).conflicts == []
    assert view(mem) == before
