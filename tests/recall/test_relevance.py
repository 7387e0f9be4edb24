"""Recall never invents relevance (issue 13): no padding of ``top_k`` with unrelated hits,
no access counted for them, no write-order context between independent facts, and
``search`` meaning keyword-only, access-free search on every face."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import keyword_settings

from memmesh import Memory
from memmesh.errors import InvalidInputError

FACTS = [
    "Alice prefers green tea in the morning",
    "The office Wi-Fi password changes every month",
    "Bob's flight to Berlin leaves on Friday at 9am",
    "The production database runs PostgreSQL 16",
    "Carol is allergic to peanuts",
    "The cat's name is Whiskers",
    "Our quarterly report is due on March 31",
    "Deploys happen every Tuesday after standup",
]
UNRELATED_QUERIES = ["weather tomorrow", "how do I bake sourdough bread", "quantum chromodynamics lecture notes"]
# A question for one fact, and that fact's index in FACTS.
QUESTIONS = [("when is bob flying?", 2), ("what database do we use?", 3), ("office wifi password", 1), ("Whiskers", 5)]


def test_unrelated_recalls_touch_nothing_and_promote_nothing(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    stored = mem.add_many(FACTS)
    assert {m.tier.value for m in stored} == {"mid"}
    for _ in range(6):  # more than promote_after_accesses (5)
        for query in UNRELATED_QUERIES:
            result = mem.recall(query, top_k=10)
            assert result.hits == [], (query, [(h.memory.content, h.score) for h in result.hits])
    for memory in stored:
        current = mem.get(memory.id)
        assert current.access_count == 0 and current.tier.value == "mid", current.content


def test_a_recall_touches_only_what_it_found(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    stored = mem.add_many(FACTS)
    for _ in range(5):
        hits = mem.recall("when is bob flying?", top_k=10).hits
        assert [h.memory.id for h in hits] == [stored[2].id]
    assert mem.get(stored[2].id).tier.value == "long"  # promoted after five real accesses
    others = [mem.get(m.id) for i, m in enumerate(stored) if i != 2]
    assert [(m.access_count, m.tier.value) for m in others] == [(0, "mid")] * len(others)


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "vector"])
def test_facts_stored_together_do_not_pull_each_other_in(open_memory: Callable[..., Memory], mode: str) -> None:
    mem = open_memory()
    stored = mem.add_many(FACTS[:5])  # written together, one after another, kind fact
    for query, index in QUESTIONS[:3]:
        hits = mem.recall(query, mode=mode, top_k=10, explain=True, touch=False).hits
        assert [h.memory.id for h in hits] == [stored[index].id], (query, [h.memory.content for h in hits])
        assert hits[0].explain is not None and hits[0].explain["context"] == 0.0


def test_keyword_only_store_returns_only_matches(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'kw.db'}", keyword_settings(tmp_path)) as mem:
        stored = mem.add_many(FACTS[:5])
        hits = mem.recall("when is bob flying?", top_k=10).hits
        assert [h.memory.id for h in hits] == [stored[2].id]
        assert mem.recall("weather tomorrow").hits == []
        assert [mem.get(m.id).access_count for m in stored] == [0, 0, 1, 0, 0]


def test_the_same_lines_as_messages_do_get_context(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    turns = [
        "John: Do you have any book recommendations for my trip?",
        "Tim: You'd love The Name of the Wind, it takes you to another world.",
    ]
    as_facts = mem.add_many([{"content": t, "namespace": "facts"} for t in turns])
    as_messages = mem.add_many([{"content": t, "namespace": "chat", "kind": "message"} for t in turns])
    fact_hits = mem.recall("book recommendations trip", namespace="facts", top_k=5, touch=False).hits
    chat_hits = mem.recall("book recommendations trip", namespace="chat", top_k=5, touch=False, explain=True).hits
    assert [h.memory.id for h in fact_hits] == [as_facts[0].id]
    assert [h.memory.id for h in chat_hits] == [as_messages[0].id, as_messages[1].id]
    assert chat_hits[1].explain is not None and chat_hits[1].explain["context"] > 0


def test_context_kinds_are_configurable(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(context_kinds=["fact"])
    stored = mem.add_many(["Do you have any book recommendations for my trip?", "You'd love The Name of the Wind."])
    hits = mem.recall("book recommendations trip", top_k=5, touch=False).hits
    assert [h.memory.id for h in hits] == [stored[0].id, stored[1].id]


def test_search_is_keyword_only_and_never_an_access(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    stored = mem.add_many(FACTS)
    cat = stored[5]
    assert mem.search("pet") == []  # no word in common: search does not find by meaning
    assert [h.memory.id for h in mem.recall("pet", touch=False).hits] == [cat.id]  # recall does
    hits = mem.search("Whiskers", explain=True)
    assert [h.memory.id for h in hits] == [cat.id] and hits[0].explain is not None and hits[0].explain["vector"] == 0.0
    assert mem.get(cat.id).access_count == 0
    assert [h.memory.id for h in mem.search("Whiskers", mode="keyword", touch=False)] == [cat.id]
    with pytest.raises(InvalidInputError, match=r"search is keyword-only.*use recall"):
        mem.search("pet", mode="hybrid")
    with pytest.raises(InvalidInputError, match=r"never counts as an access.*use recall"):
        mem.search("Whiskers", touch=True)
    assert mem.get(cat.id).access_count == 0


def test_cli_search_matches_python_search(cli) -> None:
    stored = json.loads(cli("store", "The cat's name is Whiskers", "--json").out)
    assert json.loads(cli("search", "whiskers", "--json").out)["hits"][0]["memory"]["id"] == stored["id"]
    assert json.loads(cli("search", "dog", "--json").out)["hits"] == []
    assert json.loads(cli("get", stored["id"], "--json").out)["access_count"] == 0


def test_context_kinds_from_the_environment(cli) -> None:
    bad = cli("recall", "anything", extra_env={"MEMMESH_RECALL_CONTEXT_KINDS": "message,chat"})
    assert bad.code != 0 and "recall.context_kinds" in bad.err and "'message'" in bad.err and "Traceback" not in bad.err
    cli("store", "Do you have any book recommendations for my trip?", "--kind", "fact")
    cli("store", "You'd love The Name of the Wind.", "--kind", "fact")
    as_facts = json.loads(cli("recall", "book recommendations trip", "--json", extra_env={"MEMMESH_RECALL_CONTEXT_KINDS": "fact"}).out)
    assert len(as_facts["hits"]) == 2 and as_facts["hits"][1]["memory"]["content"].startswith("You'd love")
    default = json.loads(cli("recall", "book recommendations trip", "--json").out)
    assert len(default["hits"]) == 1
