"""Memory.add(messages=...): turns stored first, facts linked derived_from them, updates and
contradictions linked (never deleted), every bad input refused with nothing written."""

from __future__ import annotations

import pytest

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.extraction.core import MAX_LINKS_PER_FACT
from memmesh.model import Kind, Relation

TALK = [
    {"role": "user", "name": "Ana", "content": "Hi! I moved to Paris last month. I love green tea."},
    {"role": "assistant", "content": "Nice. What do you do there?"},
    {"role": "user", "name": "Ana", "content": "I work at Acme Corp as a designer."},
]


def links_of(mem: Memory, memory_id: str, relation: Relation) -> list[str]:
    return [link.target_id for link in mem.links(memory_id) if link.source_id == memory_id and link.relation is relation]


def test_turns_are_stored_then_facts_linked_derived_from_them(mem: Memory) -> None:
    result = mem.add(messages=TALK, session_id="s1", namespace="people/ana")
    assert result.status == "done" and result.session_id == "s1" and result.namespace == "people/ana"
    assert [t.turn for t in result.turns] == [1, 2, 3]
    for turn in result.turns:
        stored = mem.get(turn.memory_id)
        assert stored.kind is Kind.message and stored.namespace == "people/ana/s1"
    report = result.report
    assert report is not None and report.mode == "offline" and report.turns == 3
    assert report.extracted == 3 and report.merged == 0 and report.failed == []
    facts = {mem.get(i).content: i for i in report.fact_ids}
    assert set(facts) == {"Ana moved to Paris last month.", "Ana loves green tea.", "Ana works at Acme Corp as a designer."}
    first, third = result.turns[0].memory_id, result.turns[2].memory_id
    assert links_of(mem, facts["Ana moved to Paris last month."], Relation.derived_from) == [first]
    assert links_of(mem, facts["Ana works at Acme Corp as a designer."], Relation.derived_from) == [third]
    tea = mem.get(facts["Ana loves green tea."])
    assert tea.kind is Kind.preference and "extracted" in tea.tags and tea.namespace == "people/ana"
    assert tea.metadata["session_id"] == "s1" and tea.metadata["turns"] == [1]


def test_infer_false_stores_the_turns_only(mem: Memory) -> None:
    result = mem.add(messages=TALK, infer=False)
    assert result.status == "stored" and result.report is None and len(result.turns) == 3
    assert result.session_id.startswith("conv-")
    assert [m.kind for m in mem.get_all(namespace=result.namespace)] == [Kind.message] * 3


def test_a_repeated_fact_is_merged_and_linked_to_the_new_turn(mem: Memory) -> None:
    first = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I love green tea."}], session_id="s1")
    again = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I love green tea."}], session_id="s1")
    assert first.report and again.report
    assert again.report.extracted == 0 and again.report.merged == 1
    assert again.report.fact_ids == first.report.fact_ids
    fact = first.report.fact_ids[0]
    assert sorted(links_of(mem, fact, Relation.derived_from)) == sorted([first.turns[0].memory_id, again.turns[0].memory_id])


def test_a_new_value_supersedes_and_an_opposite_preference_contradicts_nothing_deleted(mem: Memory) -> None:
    old = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Paris. I love green tea."}], session_id="s1")
    new = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Lyon now. I hate green tea."}], session_id="s1")
    assert old.report and new.report
    assert new.report.superseded == 1 and new.report.contradicted == 1
    paris, tea = old.report.fact_ids
    lyon, hate = new.report.fact_ids
    assert links_of(mem, lyon, Relation.supersedes) == [paris]
    assert links_of(mem, hate, Relation.contradicts) == [tea]
    assert mem.get(paris).content == "Ana lives in Paris." and mem.get(tea).content == "Ana loves green tea."


def test_facts_of_another_speaker_or_slot_are_left_alone(mem: Memory) -> None:
    mem.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Paris."}], session_id="s1")
    other = mem.add(messages=[{"role": "user", "name": "Bo", "content": "I live in Rome."}], session_id="s1")
    assert other.report and other.report.superseded == 0 and other.report.contradicted == 0


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "messages is empty"),
        ("hello", "must be a list"),
        ([{"role": "user"}], "message 1 has no content"),
        ([{"role": "user", "content": "ok"}, {"role": "user", "content": "  "}], "message 2 has no content"),
        ([{"role": "User Name!", "content": "hi"}], "role"),
        ([{"role": "user", "content": "hi", "mood": "x"}], "unknown field"),
        (["just text"], "message 1 is not an object"),
        ([{"role": "user", "content": 5}], "message 1 has no content"),
        ([{"role": "user", "content": "hi", "name": ""}], "name must be"),
        ([{"content": "x"}] * 1001, "limit is 1000"),
    ],
)
def test_bad_messages_are_refused_and_nothing_is_written(mem: Memory, messages: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        mem.add(messages=messages, session_id="bad")  # type: ignore[arg-type]
    assert mem.stats().total == 0 and mem.session_list() == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.add("text", messages=TALK), "not both"),
        (lambda m: m.add(messages=TALK, tags=["x"]), "takes only"),
        (lambda m: m.add(messages=TALK, session_id="no spaces allowed"), "session_id"),
        (lambda m: m.add(messages=TALK, infer="yes"), "infer must be"),
        (lambda m: m.add(), "give the content"),
    ],
)
def test_bad_calls_are_refused_clearly(mem: Memory, call: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call(mem)  # type: ignore[operator]
    assert mem.stats().total == 0


def test_a_job_id_that_is_not_one_is_refused(mem: Memory) -> None:
    with pytest.raises(InvalidInputError, match="job id"):
        mem.extraction_job("nope")
    from memmesh.errors import NotFoundError

    with pytest.raises(NotFoundError):
        mem.extraction_job("ext-01a22b59-8eb7-7282-9203-67fa2cd45b74")


def test_background_job_reports_through_the_store(mem: Memory) -> None:
    from memmesh.model import LOCAL_PRINCIPAL

    extraction = mem.service.extraction
    result = extraction.remember(TALK, namespace="people/ana", background=True, principal=LOCAL_PRINCIPAL)
    assert result.status == "queued" and result.job_id and result.report is None
    assert len(result.turns) == 3  # committed before the answer
    job = extraction.wait(result.job_id, principal=LOCAL_PRINCIPAL)
    assert job.status == "done" and job.report is not None and job.report.extracted == 3
    assert mem.extraction_job(result.job_id).report == job.report


def test_link_many_is_all_or_nothing(mem: Memory) -> None:
    from memmesh.errors import NotFoundError
    from memmesh.model import LOCAL_PRINCIPAL

    a, b, c = (mem.add(f"memory {x}", namespace="n") for x in "abc")
    with pytest.raises(NotFoundError, match="no memory with id missing"):
        mem.service.link_many([(a.id, b.id, "derived_from"), (a.id, "missing", "related_to")], principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="itself"):
        mem.service.link_many([(a.id, b.id, "derived_from"), (c.id, c.id, "related_to")], principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="relation"):
        mem.service.link_many([(a.id, b.id, "likes")], principal=LOCAL_PRINCIPAL)
    assert mem.links(a.id) == []
    made = mem.service.link_many([(a.id, b.id, "derived_from"), (a.id, c.id, Relation.supersedes)], principal=LOCAL_PRINCIPAL)
    assert {(link.target_id, link.relation) for link in mem.links(a.id)} == {(b.id, Relation.derived_from), (c.id, Relation.supersedes)}
    assert len(made) == 2


def test_a_failed_link_batch_is_reported_not_raised_and_turns_stay(mem: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    from memmesh.errors import UnavailableError

    def down(*args: object, **kwargs: object) -> None:
        raise UnavailableError("store busy")

    monkeypatch.setattr(mem.service, "link_many", down)
    result = mem.add(messages=TALK, session_id="s1")
    assert result.report is not None and result.report.extracted == 3
    assert [f.reason for f in result.report.failed] == ["linking facts to their turns: store busy"]
    assert len(mem.get_all(kind="message")) == 3


def test_a_later_turn_of_the_same_call_supersedes_an_earlier_one(mem: Memory) -> None:
    talk = [
        {"role": "user", "name": "Ana", "content": "I live in Paris."},
        {"role": "user", "name": "Ana", "content": "Actually I live in Lyon now."},
    ]
    report = mem.add(messages=talk, session_id="s1").report
    assert report is not None and report.superseded == 1
    paris, lyon = report.fact_ids
    assert links_of(mem, lyon, Relation.supersedes) == [paris] and links_of(mem, paris, Relation.supersedes) == []


def test_a_deleted_fact_is_not_superseded_again(mem: Memory) -> None:
    old = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Paris."}], session_id="s1").report
    assert old is not None
    mem.delete(old.fact_ids[0])
    new = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Rome."}], session_id="s1").report
    assert new is not None and new.superseded == 0 and new.failed == []


def test_links_between_facts_of_one_slot_are_bounded_per_fact(mem: Memory) -> None:
    # Every "Eve likes color i" contradicts every other: 60 such messages made 1,770 links
    # (n(n-1)/2; 1,000 in one 40 KB request made 499,500 and 630 MB). Each fact now links to
    # at most MAX_LINKS_PER_FACT others, the newest first, and the report counts the rest.
    talk = [{"role": "user", "name": "Eve", "content": f"Item {i}: Eve likes color {i}."} for i in range(60)]
    report = mem.add(messages=talk, namespace="palette").report
    assert report is not None and report.extracted == 60 and report.failed == []
    related = report.contradicted + report.superseded
    assert 0 < related <= 60 * MAX_LINKS_PER_FACT and related + report.links_skipped == 60 * 59 // 2
    last, before_last = report.fact_ids[-1], report.fact_ids[-2]
    outgoing = [t for rel in (Relation.contradicts, Relation.supersedes) for t in links_of(mem, last, rel)]
    assert len(outgoing) == MAX_LINKS_PER_FACT and before_last in outgoing  # the nearest earlier facts are kept
