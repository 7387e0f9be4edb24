"""Keyword scores inside a namespace depend only on that namespace's memories (both backends).

SQLite's FTS5 ``bm25()`` weighs a word by how many memories of the whole store hold it; a
request limited to some namespaces gets each word's weight from those namespaces only
(store/sqlite_bm25.py), so its scores and ranking tell nothing about which words other
namespaces hold (nor how much text: the average length is the visible one too). PostgreSQL's
``ts_rank_cd`` uses no store-wide statistic at all: the same assertions hold there unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from memmesh import Memory


def _keyword(mem: Memory, query: str, namespace: str | None) -> dict[str, float]:
    """Content → the keyword part of the score (BM25 on SQLite) of each hit."""
    hits = mem.search(query, namespace=namespace, explain=True, top_k=50)
    return {h.memory.content: h.explain["keyword"] for h in hits if h.explain is not None}


def test_other_namespaces_words_do_not_change_a_namespaces_scores(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(backend_url)
    mem.add_many([{"content": text, "namespace": "b/z"} for text in ("hunter2 canary", "zqxv9 canary")])
    before = {q: _keyword(mem, q, "b") for q in ("hunter2", "zqxv9", "hunter2 zqxv9", "canary")}
    order_before = [h.memory.content for h in mem.search("hunter2 zqxv9", namespace="b")]

    mem.add("the vault password is hunter2", namespace="a/y")
    mem.add_many([{"content": f"hunter2 n{i} " + "padding " * i, "title": f"t{i}", "namespace": "a/y"} for i in range(30)])

    after = {q: _keyword(mem, q, "b") for q in before}
    assert after == before  # exactly: not one bit of the other namespace leaks into them
    assert after["hunter2"]["hunter2 canary"] == after["zqxv9"]["zqxv9 canary"]  # no word is "rarer elsewhere"
    assert [h.memory.content for h in mem.search("hunter2 zqxv9", namespace="b")] == order_before


def test_bm25_still_favours_the_word_rarer_inside_the_namespace(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    """One wombat and three quokkas in ``b``, forty wombats elsewhere: store-wide, wombat is the
    common word; inside ``b`` it is the rare one and its memory ranks first."""
    mem = open_memory(backend_url)
    wombat = mem.add("wombat seen", namespace="b")
    mem.add_many([{"content": f"quokka seen {i}", "namespace": "b"} for i in range(3)])
    mem.add_many([{"content": f"filler note {i}", "namespace": "b"} for i in range(6)])
    mem.add_many([{"content": f"wombat {i}", "namespace": "a"} for i in range(40)])
    hits = mem.search("quokka wombat", namespace="b")
    assert len(hits) == 4 and hits[0].memory.id == wombat.id
    assert hits[0].score > hits[1].score


def test_a_namespace_holding_everything_scores_as_the_whole_store(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(backend_url)
    mem.add_many(
        [
            {"content": f"kiwi {'kiwi ' * (i % 4)}bowl {i}", "title": f"fruit {i}" if i % 3 else None, "namespace": "all/x"}
            for i in range(40)
        ]
    )
    whole = _keyword(mem, "kiwi bowl fruit", None)
    scoped = _keyword(mem, "kiwi bowl fruit", "all")
    assert whole.keys() == scoped.keys() and len(whole) == 40
    for content, score in whole.items():
        assert scoped[content] == pytest.approx(score, rel=1e-12)


def test_unscoped_scores_are_fts5_bm25_itself(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    """The store-wide path is left as it was: its score is ``-bm25()`` with the field weights."""
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    mem = open_memory(url)
    mem.add_many(
        [
            {"content": f"otter {'river ' * (i % 3)}note {i}", "namespace": f"n{i % 2}", "tags": ["otter"] if i % 4 == 0 else []}
            for i in range(12)
        ]
    )
    scores = _keyword(mem, "otter river", None)
    with sqlite3.connect(tmp_path / "plain.db") as conn:
        direct = dict(
            conn.execute(
                "SELECT m.content, -bm25(memories_fts, 2.0, 1.0, 1.5) FROM memories_fts JOIN memories m ON m.rowid = memories_fts.rowid "
                'WHERE memories_fts MATCH \'"otter" OR "river"\''
            ).fetchall()
        )
    assert scores == direct


def test_words_of_unsegmented_scripts_are_scored_inside_the_namespace_too(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    """The n-gram index of scripts written without spaces has store-wide statistics as well."""
    mem = open_memory(backend_url)
    mem.add_many([{"content": text, "namespace": "b"} for text in ("東京は晴れです", "大阪は晴れです")])
    before = {q: _keyword(mem, q, "b") for q in ("東京", "大阪", "東京 大阪")}
    mem.add_many([{"content": f"東京は{chr(0x4E00 + i) * (i + 1)}です", "namespace": "a"} for i in range(30)])
    after = {q: _keyword(mem, q, "b") for q in before}
    assert after == before
    assert after["東京"]["東京は晴れです"] == after["大阪"]["大阪は晴れです"] > 0


def test_scores_in_a_namespace_are_those_of_a_store_holding_only_it(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    """BM25 over the visible memories is BM25 of a store of just those memories; the namespace's
    own writes count at once (its totals are cached per change number)."""
    ours = [f"lynx {'track ' * (i % 3)}snow {i}" for i in range(8)]
    mixed = open_memory(f"sqlite:///{tmp_path / 'mixed.db'}")
    alone = open_memory(f"sqlite:///{tmp_path / 'alone.db'}")
    mixed.add_many([{"content": f"lynx track {'far ' * i}{i}", "namespace": "other"} for i in range(25)])
    for mem in (mixed, alone):
        mem.add_many([{"content": text, "namespace": "ours"} for text in ours])
    assert _keyword(mixed, "lynx track", "ours") == pytest.approx(_keyword(alone, "lynx track", None), rel=1e-12)
    for mem in (mixed, alone):
        mem.add("a much longer note about a lynx that crossed the frozen lake at dawn", namespace="ours")
    assert _keyword(mixed, "lynx track", "ours") == pytest.approx(_keyword(alone, "lynx track", None), rel=1e-12)
