"""Extraction finds updates in ordinary chat text (issue 23): a move supersedes the old home,
giving up a drink supersedes loving it, an opposite taste said without a change contradicts;
nothing is deleted and the facts that do not compete are left alone."""

from __future__ import annotations

from memmesh import Memory
from memmesh.model import Relation

BEFORE = [
    {
        "role": "user",
        "name": "Ana",
        "content": "Hey! So I live in Paris with my two cats. I love coffee, honestly I drink three cups a day.",
    },
    {"role": "assistant", "content": "Three cups! Do you like tea at all?"},
    {"role": "user", "name": "Ana", "content": "I love jasmine tea too. My favourite colour is teal, by the way."},
]
AFTER = [
    {"role": "user", "name": "Ana", "content": "Big news: I moved to Berlin last month for a new job."},
    {"role": "assistant", "content": "Congratulations! How is the coffee there?"},
    {"role": "user", "name": "Ana", "content": "Actually I don't drink coffee anymore, my doctor told me to stop. I hate jasmine tea."},
]


def fact(mem: Memory, ids: list[str], start: str) -> str:
    (found,) = [i for i in ids if mem.get(i).content.startswith(start)]
    return found


def targets(mem: Memory, source: str, relation: Relation) -> list[str]:
    return [lk.target_id for lk in mem.links(source) if lk.source_id == source and lk.relation is relation]


def test_moves_and_changed_habits_supersede_opposite_tastes_contradict(mem: Memory) -> None:
    before = mem.add(messages=BEFORE, session_id="week1", namespace="ana").report
    after = mem.add(messages=AFTER, session_id="week2", namespace="ana").report
    assert before is not None and after is not None and after.failed == []
    paris = fact(mem, before.fact_ids, "So Ana lives in Paris")
    coffee = fact(mem, before.fact_ids, "Ana loves coffee")
    jasmine = fact(mem, before.fact_ids, "Ana loves jasmine tea")
    teal = fact(mem, before.fact_ids, "Ana's favourite colour is teal")
    berlin = fact(mem, after.fact_ids, "Big news: Ana moved to Berlin")
    no_coffee = fact(mem, after.fact_ids, "Actually Ana doesn't drink coffee anymore")
    hates = fact(mem, after.fact_ids, "Ana hates jasmine tea")
    assert targets(mem, berlin, Relation.supersedes) == [paris]
    assert targets(mem, no_coffee, Relation.supersedes) == [coffee]  # said as a change: an update
    assert targets(mem, hates, Relation.contradicts) == [jasmine]  # no change said: a contradiction
    assert (after.superseded, after.contradicted) == (2, 1)
    # nothing else competes with the old facts, and every old fact is still stored as it was
    assert not [lk for lk in mem.links(teal) if lk.relation in (Relation.supersedes, Relation.contradicts)]
    for memory_id in (paris, coffee, jasmine, teal):
        assert mem.get(memory_id).content in {mem.get(i).content for i in before.fact_ids}
    # a curator run over the store agrees: nothing left to link between these facts
    report = mem.curate(namespace="ana")
    facts = {paris, coffee, jasmine, teal, berlin, no_coffee, hates}
    assert not [u for u in report.updates if {u.new, u.old} <= facts]
    assert not [c for c in report.contradictions if {c.a, c.b} <= facts]


def test_saying_the_same_thing_again_merges_into_the_stored_fact_with_the_new_turn(mem: Memory) -> None:
    first = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I love hiking in the Alps."}], namespace="ana").report
    again = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I really love hiking in the Alps!"}], namespace="ana")
    assert first is not None and again.report is not None
    assert again.report.merged == 1 and again.report.extracted == 0 and again.report.fact_ids == first.fact_ids
    derived = targets(mem, first.fact_ids[0], Relation.derived_from)
    assert again.turns[0].memory_id in derived and len(derived) == 2
