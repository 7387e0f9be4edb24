"""Remembering conversations on both backends: turns stored first, facts linked to them,
supersedes found through the slot index, background jobs tracked in the store."""

from __future__ import annotations

from memmesh import Memory
from memmesh.model import LOCAL_PRINCIPAL, Kind, Relation


def test_remember_stores_turns_facts_links_and_jobs(mem_on: Memory) -> None:
    first = mem_on.add(
        messages=[{"role": "user", "name": "Ana", "content": "I live in Paris. I love green tea."}], session_id="s1", namespace="p"
    )
    assert first.report is not None and first.report.extracted == 2
    assert mem_on.get(first.turns[0].memory_id).kind is Kind.message
    extraction = mem_on.service.extraction
    queued = extraction.remember(
        [{"role": "user", "name": "Ana", "content": "I live in Lyon now. I hate green tea."}],
        session_id="s1",
        namespace="p",
        background=True,
        principal=LOCAL_PRINCIPAL,
    )
    assert queued.job_id is not None
    job = extraction.wait(queued.job_id, principal=LOCAL_PRINCIPAL)
    assert job.status == "done" and job.report is not None
    assert (job.report.extracted, job.report.superseded, job.report.contradicted, job.report.failed) == (2, 1, 1, [])
    lyon, hate = job.report.fact_ids
    paris, tea = first.report.fact_ids
    out = {(link.target_id, link.relation) for link in mem_on.links(lyon) if link.source_id == lyon}
    assert out == {(queued.turns[0].memory_id, Relation.derived_from), (paris, Relation.supersedes)}
    assert any(link.target_id == tea and link.relation is Relation.contradicts for link in mem_on.links(hate))
    again = mem_on.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Lyon now."}], session_id="s1", namespace="p")
    assert again.report is not None and again.report.merged == 1 and again.report.superseded == 0
