"""A question that names a date prefers memories from that date (issue 19, ``recall.date_weight``).

A memory's time is its world time (``valid_from``) when it has one, else when it was
written. The boost reorders hits that are relevant anyway: it never returns a memory
that has no relevance of its own, and ``search`` (BM25 only) is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from tests.conftest import FakeClock

from memmesh import Memory
from memmesh.recall.dated import Period, named_period

GARDEN = [
    # The closest wording to the question, said on another day.
    ("We planted tomatoes in the garden", datetime(2023, 4, 1, 10, tzinfo=UTC)),
    # The one said on the day the question names, a little further from its words.
    ("We put basil plants in the garden", datetime(2023, 5, 3, 18, tzinfo=UTC)),
    ("The garden hose sprang a leak again", datetime(2023, 6, 9, 8, tzinfo=UTC)),
]


def _garden(mem: Memory) -> list[str]:
    stored = mem.add_many([{"content": text, "valid_from": when} for text, when in GARDEN], wait=True)
    return [m.id for m in stored]


@pytest.mark.parametrize(
    "question",
    [
        "What did we plant in the garden on 3 May, 2023?",
        "What did we plant in the garden on May 3rd, 2023?",
        "What did we plant in the garden on 2023-05-03?",
    ],
)
def test_a_named_day_ranks_that_days_memory_first(open_memory: Callable[..., Memory], question: str) -> None:
    mem = open_memory()
    ids = _garden(mem)
    hits = mem.recall(question, top_k=3, touch=False, explain=True).hits
    assert hits[0].memory.id == ids[1], [(h.memory.content, h.score) for h in hits]
    assert hits[0].explain is not None and hits[0].explain["date"] == 1.0
    assert all(h.explain is not None and h.explain["date"] == 0.0 for h in hits[1:])


def test_without_the_date_or_with_the_boost_off_the_wording_wins(open_memory: Callable[..., Memory]) -> None:
    """The regression guard: the same store ranks the closest wording first when the question
    names no date, and with ``date_weight = 0`` even when it does (the ranking before the lever)."""
    mem = open_memory()
    ids = _garden(mem)
    assert mem.recall("What did we plant in the garden?", top_k=3, touch=False).hits[0].memory.id == ids[0]
    mem.close()
    off = open_memory(date_weight=0.0)
    assert off.recall("What did we plant in the garden on 3 May, 2023?", top_k=3, touch=False).hits[0].memory.id == ids[0]


def test_a_named_month_counts_the_time_a_memory_was_written_when_it_has_no_world_time(
    open_memory: Callable[..., Memory],
) -> None:
    clock = FakeClock(datetime(2023, 4, 30, 10, tzinfo=UTC))
    mem = open_memory(clock=clock)
    first = mem.add("We planted tomatoes in the garden", wait=True)
    clock.advance(days=2)  # 2 May 2023
    second = mem.add("We put basil plants in the garden", wait=True)
    assert first.valid_from is None and second.valid_from is None
    hits = mem.recall("What did we plant in the garden in May 2023?", top_k=2, touch=False).hits
    assert [h.memory.id for h in hits] == [second.id, first.id]


def test_a_date_adds_no_unrelated_hits_and_search_ignores_it(open_memory: Callable[..., Memory]) -> None:
    """Plain fact stores stay clean: every fact is from the named day, none is about the question."""
    mem = open_memory()
    day = datetime(2023, 5, 3, 12, tzinfo=UTC)
    facts = ["The cat's name is Whiskers", "Carol is allergic to peanuts", "Deploys happen every Tuesday after standup"]
    stored = mem.add_many([{"content": f, "valid_from": day} for f in facts], wait=True)
    assert mem.recall("quantum chromodynamics lecture notes from 3 May, 2023", top_k=10).hits == []
    assert all(mem.get(m.id).access_count == 0 for m in stored)
    ids = _garden(mem)
    mem.close()
    # search is BM25 only: the same order as with the boost off, which the named day would change
    boosted = open_memory(date_weight=5.0).search("garden hose on 3 May, 2023", top_k=3)
    plain = open_memory(date_weight=0.0).search("garden hose on 3 May, 2023", top_k=3)
    assert [h.memory.id for h in boosted] == [h.memory.id for h in plain]
    assert len(plain) == 3 and plain[0].memory.id == ids[2]  # the hose memory holds both words


@pytest.mark.parametrize(
    ("query", "period"),
    [
        ("What did Gina find on 1 February, 2023?", Period(2023, 2, 1)),
        ("the talk on October 13, 2023", Period(2023, 10, 13)),
        ("notes from 2023-10-13", Period(2023, 10, 13)),
        ("What happened in October 2023?", Period(2023, 10, None)),
        ("When did we go camping in June?", Period(None, 6, None)),
        ("How often did it rain in 2022?", Period(2022, None, None)),
        ("What may I do next?", None),
        ("What did we say about the budget?", None),
    ],
)
def test_the_periods_a_query_can_name(query: str, period: Period | None) -> None:
    assert named_period(query) == period


def test_the_named_days_memory_is_found_even_outside_the_best_twenty(open_memory: Callable[..., Memory]) -> None:
    """The candidate pass: 45 closer memories from other days fill both halves' best 20, so
    the one from the named day is a candidate only because the query names its day."""
    mem = open_memory(date_weight=20.0)  # a strong boost, so the test is about finding it, not its rank
    april = datetime(2023, 4, 1, 9, tzinfo=UTC)
    mem.add_many([{"content": f"We planted tomatoes in the garden, row {i}", "valid_from": april} for i in range(45)], wait=True)
    target = mem.add("Put basil seedlings into the vegetable beds", valid_from=datetime(2023, 5, 3, 18, tzinfo=UTC), wait=True)
    question = "What did we plant in the garden on 3 May, 2023?"
    hits = mem.recall(question, top_k=20, touch=False).hits
    assert hits[0].memory.id == target.id
    mem.close()
    off = open_memory(date_weight=0.0).recall(question, top_k=20, touch=False).hits
    assert len(off) == 20
    assert target.id not in [h.memory.id for h in off]
