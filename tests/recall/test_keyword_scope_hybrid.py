"""Hybrid recall inside a namespace: the keyword scores it completes for the candidates found
by meaning (``Store.keyword_scores`` on known ids) use the namespace's statistics too: other
namespaces' memories change none of them, and they equal what ``search`` gives the same
memories (store/sqlite_bm25.py)."""

from __future__ import annotations

from collections.abc import Callable

from memmesh import Memory

ANIMALS = ["cat", "dog", "horse", "rabbit", "parrot", "goat", "sheep", "duck", "mouse", "fox"]
QUERY = "which pet do I have?"


def _keyword(hits: list) -> dict[str, float]:
    return {h.memory.id: h.explain["keyword"] for h in hits}


def test_completed_keyword_scores_are_the_namespaces_own(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    # 30 matches of "pet": more than the 20 keyword candidates, so some hits come in by
    # meaning only and get their keyword score completed by id.
    mem.add_many([{"content": f"my {ANIMALS[i % 10]} is a lovely pet number {i}", "namespace": "b"} for i in range(30)], wait=True)
    before = _keyword(mem.recall(QUERY, namespace="b", top_k=30, explain=True, touch=False).hits)

    mem.add_many([{"content": f"pet food aisle {i} " + "long " * i, "namespace": "a"} for i in range(40)], wait=True)
    hits = mem.recall(QUERY, namespace="b", top_k=30, explain=True, touch=False).hits
    searched = _keyword(mem.search(QUERY, namespace="b", top_k=50, explain=True))
    completed = [h for h in hits if h.memory.id not in set(list(searched)[:20])]
    assert completed, "no hit had its keyword score completed by id: the test lost its point"
    assert {h.memory.namespace for h in hits} == {"b"}
    assert _keyword(hits) == before
    assert _keyword(hits) == {mid: searched[mid] for mid in _keyword(hits)}
