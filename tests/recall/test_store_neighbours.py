"""Store.neighbours and Store.keyword_scores on a real SQLite file (keyword-only: no model)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FakeClock, keyword_settings

from memmesh import Memory
from memmesh.recall.keyword import query_terms
from memmesh.store.base import Filter


def test_neighbours_follow_write_order_within_namespace_and_window(tmp_path: Path, clock: FakeClock) -> None:
    with Memory(f"sqlite:///{tmp_path / 'n.db'}", keyword_settings(tmp_path), clock=clock) as mem:
        turns = mem.add_many([{"content": f"turn {i}", "namespace": "chat"} for i in range(6)])
        mem.add("elsewhere", namespace="other")
        clock.advance(hours=2)
        late = mem.add("much later", namespace="chat")
        store = mem.service.store
        pos = {m.id: i for i, m in enumerate([*turns, late])}
        got = store.neighbours([turns[0].id, turns[3].id, turns[5].id, late.id], 2, 3600)
        named = {pos[k]: sorted((pos[o], d) for o, d in v) for k, v in got.items()}
        assert named == {0: [(1, 1), (2, 2)], 3: [(1, -2), (2, -1), (4, 1), (5, 2)], 5: [(3, -2), (4, -1)], 6: []}
        wide = store.neighbours([late.id], 1, 3 * 3600)
        assert wide == {late.id: [(turns[5].id, -1)]}
        assert store.neighbours([], 2, 60) == {} and store.neighbours([turns[0].id], 0, 60) == {}


def test_keyword_scores_match_keyword_search(tmp_path: Path, clock: FakeClock) -> None:
    with Memory(f"sqlite:///{tmp_path / 'k.db'}", keyword_settings(tmp_path), clock=clock) as mem:
        stored = mem.add_many(["red apples and green pears", "green tea", "apples apples apples", "nothing here"])
        store, terms = mem.service.store, query_terms("green apples")
        flt = Filter(now=clock())
        expected = {m.id: s for m, s in store.keyword_search(terms, flt, 10)}
        assert store.keyword_scores(terms, flt, 10) == expected and len(expected) == 3
        some = (stored[1].id, stored[3].id)
        from dataclasses import replace

        assert store.keyword_scores(terms, replace(flt, ids=some), 10) == {stored[1].id: expected[stored[1].id]}
        assert store.keyword_scores([], flt, 10) == {}
