"""Hybrid recall behaviour through the public Memory API: fusion, context, explain,
budget, as_of, duplicate collapse, a reranker, and the keyword-only fallback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from tests.conftest import FakeClock, keyword_settings
from tests.recall.conftest import FailingEmbedder

from memmesh import Memory
from memmesh.errors import EmbedderError, InvalidInputError


def test_matching_both_signals_outranks_matching_one(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(context_weight=0.0)
    both = mem.add("The espresso machine in the kitchen broke this morning", namespace="a")
    keyword_only = mem.add("Espresso machine serial number: EM-2231-X", namespace="b")
    semantic_only = mem.add("Our coffee maker stopped working today", namespace="c")
    mem.add("Quarterly revenue grew by four percent", namespace="d")
    hits = mem.recall("espresso machine broke", explain=True, touch=False).hits
    ids = [h.memory.id for h in hits]
    assert ids[0] == both.id
    assert {keyword_only.id, semantic_only.id} <= set(ids[1:3])
    top = hits[0].explain
    assert top is not None and top["keyword_norm"] == 1.0 and top["vector_norm"] > 0.3
    semantic = next(h for h in hits if h.memory.id == semantic_only.id).explain
    assert semantic is not None and semantic["keyword"] == 0.0 and semantic["vector_norm"] > 0.2


def test_explain_parts_add_up(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    mem.add_many(
        [
            "Tim recommended a fantasy novel by Patrick Rothfuss",
            "John asked for book ideas for his trip",
            "The weather in Boston was rainy all week",
        ]
    )
    for hit in mem.recall("book recommendation for the trip", explain=True, touch=False).hits:
        parts = hit.explain
        assert parts is not None
        assert set(parts) >= {"keyword", "keyword_norm", "vector", "vector_norm", "relevance", "context", "recency", "boost", "score"}
        assert parts["relevance"] == pytest.approx((parts["keyword_norm"] + parts["vector_norm"]) / 2)
        coverage = (1 + parts["coverage"]) / 2  # query-term coverage, weight 1 (recall/coverage.py)
        assert 0 <= parts["coverage"] <= 1
        assert parts["score"] == pytest.approx((parts["relevance"] + 0.6 * parts["context"]) / 1.6 * parts["boost"] * coverage)
        assert hit.score == pytest.approx(parts["score"])
    assert all(h.explain is None for h in mem.recall("book", touch=False).hits)


def test_context_lifts_the_answer_written_after_the_question(tmp_path: Path) -> None:
    # Keyword-only stores (recall falls back to BM25 + context); search is plain BM25.
    turns = [
        "John: Do you have any book recommendations for my trip?",
        "Tim: You'd love The Name of the Wind, it takes you to another world.",
        "John: My basketball team won the regional final last week.",
        "Tim: I started learning to play the violin.",
    ]
    with_context = Memory(f"sqlite:///{tmp_path / 'ctx.db'}", keyword_settings(tmp_path))
    stored = with_context.add_many([{"content": t, "namespace": "chat", "kind": "message"} for t in turns])
    for mode in (None, "keyword"):  # recall keeps context in keyword mode too
        hits = with_context.recall("book recommendations trip", mode=mode, top_k=2, explain=True, touch=False).hits
        assert [h.memory.id for h in hits] == [stored[0].id, stored[1].id]
        assert hits[1].explain is not None and hits[1].explain["keyword"] == 0.0 and hits[1].explain["context"] > 0
    assert [h.memory.content for h in with_context.search("book recommendations trip")] == [turns[0]]
    without = Memory(f"sqlite:///{tmp_path / 'plain.db'}", keyword_settings(tmp_path, recall={"context_weight": 0.0}))
    without.add_many([{"content": t, "namespace": "chat", "kind": "message"} for t in turns])
    assert [h.memory.content for h in without.recall("book recommendations trip", touch=False).hits] == [turns[0]]


def test_context_stays_within_namespace_and_time_window(tmp_path: Path) -> None:
    clock = FakeClock()
    mem = Memory(f"sqlite:///{tmp_path / 'm.db'}", keyword_settings(tmp_path, recall={"context_window_s": 600}), clock=clock)
    question = mem.add("Which hiking boots should I buy?", namespace="chat", kind="message")
    mem.add("Unrelated: the printer needs toner", namespace="other", kind="message")  # between them in time, other namespace
    clock.advance(minutes=5)
    answer = mem.add("Go for the waterproof leather pair", namespace="chat", kind="message")
    clock.advance(hours=3)
    late = mem.add("The dentist appointment moved to Tuesday", namespace="chat", kind="message")
    hits = {h.memory.id: h.explain for h in mem.recall("hiking boots", top_k=5, explain=True, touch=False).hits}
    assert question.id in hits and answer.id in hits and hits[answer.id]["context"] > 0  # type: ignore[index]
    assert late.id not in hits  # written three hours later: outside the 10-minute window
    assert len(hits) == 2


def test_keyword_only_fallback_when_the_embedder_fails(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    stored = mem.add("The deploy key rotates every ninety days")
    mem.service.engine.embedder = FailingEmbedder()
    result = mem.recall("deploy key rotation", touch=False)
    assert result.mode == "keyword" and [h.memory.id for h in result.hits] == [stored.id]
    assert any("semantic half unavailable" in n and "unreachable" in n for n in result.notices)
    with pytest.raises(EmbedderError):
        mem.recall("deploy key rotation", mode="vector", touch=False)


def test_as_of_and_budget_tokens(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    old = mem.add("Alice lives in Paris", valid_from="2020-01-01T00:00:00Z", valid_to="2023-01-01T00:00:00Z")
    new = mem.add("Alice lives in Berlin", valid_from="2023-01-01T00:00:00Z")
    assert [h.memory.id for h in mem.recall("where does Alice live", as_of="2021-06-01T00:00:00Z", touch=False).hits] == [old.id]
    assert new.id in [h.memory.id for h in mem.recall("where does Alice live", as_of="2024-06-01T00:00:00Z", touch=False).hits]
    assert old.id not in [h.memory.id for h in mem.recall("where does Alice live", as_of="2024-06-01T00:00:00Z", touch=False).hits]

    long_text = "Alice's Berlin flat " + "has a very long description " * 40
    mem.add(long_text)
    full = mem.recall("Alice Berlin", touch=False)
    tight = mem.recall("Alice Berlin", budget_tokens=12, touch=False)
    assert len(tight.hits) + tight.dropped == len(full.hits) and tight.dropped >= 1
    assert sum(len(h.memory.content) for h in tight.hits) / 4 <= 12 or len(tight.hits) == 1
    assert mem.recall("Alice Berlin", budget_tokens=1, touch=False).hits  # at least one hit
    with pytest.raises(InvalidInputError):
        mem.recall("Alice", budget_tokens=0)


def test_collapse_near_duplicates(open_memory: Callable[..., Memory]) -> None:
    texts = ["Bob drinks his coffee black, no sugar.", "bob drinks his coffee black no sugar", "Bob's tea has honey in it"]
    plain = open_memory("plain.db")
    plain.add_many(texts)
    assert len(plain.recall("how does Bob take coffee", touch=False).hits) == 3
    collapsed = open_memory("collapsed.db", collapse_duplicates=True)
    collapsed.add_many(texts)
    result = collapsed.recall("how does Bob take coffee", touch=False)
    contents = [h.memory.content for h in result.hits]
    assert len(contents) == 2 and texts[2] in contents
    assert any("collapsed 1 near-duplicate hit" in n for n in result.notices)


class ReverseReranker:
    """A reranker double that prefers shorter texts."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [-float(len(t)) for t in texts]


class BrokenReranker:
    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [1.0]


def test_reranker_reorders_the_head(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    mem.add_many(["Carol is allergic to peanuts, shellfish and also to cats and dogs", "Carol: peanuts allergy", "Dan likes chess"])
    mem.service.engine.reranker = ReverseReranker()
    hits = mem.recall("Carol allergies", explain=True, touch=False).hits
    assert [len(h.memory.content) for h in hits] == sorted(len(h.memory.content) for h in hits)
    assert all(h.explain is not None and "rerank" in h.explain for h in hits)
    mem.service.engine.reranker = BrokenReranker()
    with pytest.raises(EmbedderError, match="reranker returned 1 scores"):
        mem.recall("Carol allergies", touch=False)


def test_bad_mode_is_a_clear_error(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    with pytest.raises(InvalidInputError, match="unknown recall mode"):
        mem.recall("x", mode="fuzzy")
