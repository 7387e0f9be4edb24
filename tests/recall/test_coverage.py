"""Query-term coverage over the write-order window (issue 19 lever): a passage whose turns
together hold more of the question's words ranks first; unrelated facts stay clean."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import keyword_settings

from memmesh import Memory
from memmesh.recall.coverage import coverages, stem, windows_from


def test_coverage_counts_the_words_of_a_memory_and_its_window() -> None:
    texts = {"a": "Mel took the kids to a pottery workshop", "b": "They made bowls and a cup", "c": "Weather was nice", "d": "東京の会議"}
    windows = windows_from({"a": [("b", 1)], "c": [("b", -2)]}, span=1)
    assert windows == {"a": {"b"}, "b": {"a"}}  # distance 2 is outside span 1
    got = coverages(["pottery", "workshop", "bowl", "kids"], texts, windows)
    assert got["a"] == 1.0 and got["b"] == 1.0  # "bowls" → "bowl" by the suffix strip; a and b see each other
    assert got["c"] == 0.0 and got["d"] == 0.0
    assert coverages(["東京"], texts, {})["d"] == 1.0  # unsegmented scripts match as substrings
    assert coverages([], texts, windows) == dict.fromkeys(texts, 0.0)
    assert [stem(w) for w in ("making", "made", "bowls", "glasses", "is")] == ["mak", "made", "bowl", "glass", "is"]


def test_a_word_most_candidates_share_counts_less_than_a_rare_one() -> None:
    texts = {f"m{i}": f"Caroline: note {i}" for i in range(6)} | {"rare": "Caroline: I adopted a greyhound", "only": "a greyhound"}
    got = coverages(["caroline", "greyhound"], texts, {})
    assert got["rare"] == 1.0
    assert got["only"] > 0.7 > 0.3 > got["m0"] > 0  # the rare word carries most of the weight


def test_recall_scales_each_score_by_its_window_coverage(tmp_path: Path) -> None:
    turns = [
        "Mel: We went to a pottery workshop last Friday with the kids.",
        "Caroline: That sounds fun! What did you make?",
        "Mel: The kids made their own clay bowls.",
        "Caroline: I painted a lake sunrise last year.",
        "Mel: The kids love clay, we bought more for home.",
        "Caroline: My friend runs a workshop about painting.",
    ]
    question = "What did Mel and her kids make at the pottery workshop?"
    db = tmp_path / "cov.db"
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as on:
        stored = on.add_many([{"content": t, "kind": "message"} for t in turns])
        with_cover = {h.memory.id: h for h in on.recall(question, top_k=6, explain=True, touch=False).hits}
        assert "coverage" not in on.search(question, explain=True)[0].explain  # search stays plain BM25
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path, recall={"coverage_weight": 0.0})) as off:
        without = {h.memory.id: h for h in off.recall(question, top_k=6, explain=True, touch=False).hits}
    assert with_cover.keys() == without.keys()  # coverage reorders, it never adds or drops a hit
    for memory_id, hit in with_cover.items():
        parts = hit.explain
        assert parts is not None and "coverage" not in (without[memory_id].explain or {})
        assert hit.score == pytest.approx(without[memory_id].score * (1 + parts["coverage"]) / 2)
    # The answer turn (no word of "pottery workshop" itself) sees them in the turn two before.
    assert with_cover[stored[2].id].explain["coverage"] == 1.0  # type: ignore[index]
    assert with_cover[stored[5].id].explain["coverage"] < 1.0  # type: ignore[index]


def test_unrelated_facts_stay_clean(tmp_path: Path) -> None:
    facts = ["The cat's name is Whiskers", "Deploys happen every Tuesday", "The office wifi password changes monthly"]
    with Memory(f"sqlite:///{tmp_path / 'facts.db'}", keyword_settings(tmp_path)) as mem:
        stored = mem.add_many(facts)
        assert mem.recall("weather tomorrow", touch=False).hits == []
        hits = mem.recall("when do deploys happen?", touch=False).hits
        assert [h.memory.id for h in hits] == [stored[1].id]  # coverage reorders hits, it never adds one
