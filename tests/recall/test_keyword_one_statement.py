"""Keyword candidates in one statement (issue 19 latency): the full-text ranking, the join to
the rows and the recall filter run together; when the filter rejects so many of the best
matches that the answer could be incomplete, the general path still finds every match."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import keyword_settings

from memmesh import Memory


def test_filter_that_rejects_the_best_matches_still_finds_every_match(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", keyword_settings(tmp_path)) as mem:
        # 120 strong matches elsewhere: more than 4 × the candidate pool, so every one of the
        # first-ranked matches fails the namespace filter.
        mem.add_many([{"content": f"apple apple apple orchard note {i}", "namespace": "noise"} for i in range(120)])
        wanted = mem.add_many(
            [{"content": f"a weak apple mention among many other words, item {i}", "namespace": "team"} for i in range(3)]
        )
        hits = mem.recall("apple", namespace="team", top_k=10, touch=False).hits
        assert {h.memory.id for h in hits} == {m.id for m in wanted}


def test_one_statement_path_matches_the_filtered_ranking(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", keyword_settings(tmp_path)) as mem:
        mem.add_many([{"content": f"kiwi {'kiwi ' * (i % 5)}fruit bowl {i}", "namespace": f"ns{i % 2}"} for i in range(60)])
        ranked = mem.search("kiwi", namespace="ns1", top_k=30)
        assert len(ranked) == 30
        assert all(h.memory.namespace == "ns1" for h in ranked)
        scores = [h.score for h in ranked]
        assert scores == sorted(scores, reverse=True)
        # the most repeated word ranks first (BM25 term frequency), ties broken by id
        assert ranked[0].memory.content.count("kiwi") == 5


def test_no_match_and_tags_and_json_columns_round_trip(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", keyword_settings(tmp_path)) as mem:
        tagged = mem.add("pear tart recipe", tags=["baking", "fruit"], metadata={"source": "grandma"})
        plain = mem.add("pear cider")
        assert mem.recall("zucchini", touch=False).hits == []
        hits = {h.memory.id: h.memory for h in mem.recall("pear", touch=False).hits}
        assert hits[tagged.id].tags == ["baking", "fruit"] and hits[tagged.id].metadata == {"source": "grandma"}
        assert hits[plain.id].tags == [] and hits[plain.id].metadata == {}
