"""What the curator finds on a seeded store with known answers: precision and recall of its
near-duplicate pairs and contradictions, and what a real run writes (links, merged tags)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

from tests.curator.curator_seed import NS, contradiction_pairs, duplicate_pairs, precision_recall, seed

from memmesh import Memory
from memmesh.curator import NO_LLM, CuratorReport


def _found(report: CuratorReport) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    dups = {frozenset(p) for c in report.clusters for p in combinations([c.keep, *c.superseded], 2)}
    return dups, {frozenset((c.a, c.b)) for c in report.contradictions}


def test_seeded_store_precision_and_recall_with_embeddings(open_mem: Callable[..., Memory]) -> None:
    mem = open_mem()
    ids = seed(mem)
    report = mem.curate(dry_run=True)
    dups, contradictions = _found(report)
    dup_p, dup_r = precision_recall(dups, duplicate_pairs(ids))
    con_p, con_r = precision_recall(contradictions, contradiction_pairs(ids))
    print(f"embeddings: duplicates P={dup_p:.2f} R={dup_r:.2f}; contradictions P={con_p:.2f} R={con_r:.2f}")
    assert dup_p >= 0.9 and dup_r >= 0.8, (dup_p, dup_r, report.clusters)
    assert con_p >= 0.8 and con_r >= 0.8, (con_p, con_r, report.contradictions)
    assert report.errors == [NO_LLM] and report.dry_run
    assert report.memories_scanned == len(ids) == report.memories_eligible


def test_seeded_store_precision_and_recall_keyword_only(open_mem: Callable[..., Memory]) -> None:
    """Without an embedder the word heuristics still find most of it, and nothing false."""
    mem = open_mem(semantic=False)
    ids = seed(mem)
    report = mem.curate(dry_run=True)
    dups, contradictions = _found(report)
    dup_p, dup_r = precision_recall(dups, duplicate_pairs(ids))
    con_p, con_r = precision_recall(contradictions, contradiction_pairs(ids))
    print(f"keyword-only: duplicates P={dup_p:.2f} R={dup_r:.2f}; contradictions P={con_p:.2f} R={con_r:.2f}")
    assert dup_p >= 0.9 and dup_r >= 0.5, (dup_p, dup_r, report.clusters)
    assert con_p >= 0.8 and con_r >= 0.8, (con_p, con_r, report.contradictions)


def test_a_real_run_links_merges_tags_and_a_second_run_finds_nothing_new(open_mem: Callable[..., Memory]) -> None:
    mem = open_mem()
    ids = seed(mem)
    mem.update(ids["Team Atlas owns the billing service."], tags=["ownership"])
    report = mem.curate()
    assert not report.dry_run and report.autonomy.rollback_entries_written == report.operations_attempted > 0
    assert report.autonomy.memories_consolidated == sum(len(c.superseded) for c in report.clusters)
    billing = next(c for c in report.clusters if ids["Team Atlas owns the billing service."] in [c.keep, *c.superseded])
    keep = mem.get(billing.keep)
    assert "ownership" in keep.tags  # merged from the other member
    for other in billing.superseded:
        assert any(lk.relation.value == "supersedes" and lk.source_id == keep.id and lk.target_id == other for lk in mem.links(keep.id))
    rate = ids["The API rate limit is 100 requests per minute."]
    assert any(lk.relation.value == "contradicts" for lk in mem.links(rate))
    superseded = {o for c in report.clusters for o in c.superseded}
    untagged = [m for m in mem.list(namespace=NS, limit=1000).items if not m.tags and m.id not in superseded]
    assert untagged == []  # every memory still to be found got keywords as tags
    assert report.auto_tagged > 0
    again = mem.curate()
    assert again.autonomy.clusters_formed == 0 and again.contradictions_found == 0 and again.operations_attempted == 0


def test_the_history_names_the_curator_run_as_an_update(open_mem: Callable[..., Memory]) -> None:
    mem = open_mem(semantic=False)
    first = mem.add("Penguins live in the southern hemisphere.", namespace=NS)
    mem.curate()
    history = mem.history(first.id)
    assert [h.event.value for h in history] == ["add", "update"]
    assert history[-1].new is not None and history[-1].new["tags"]
