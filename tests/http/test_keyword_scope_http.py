"""A scoped key's keyword scores tell it nothing about the words of namespaces it cannot see.

The tester's report: bob (``b/*``) read from ``GET /api/v1/search?explain=true`` that "hunter2"
scored lower than "zqxv9" once alice (``a/*``) had stored her vault password, and his own
"quokka" hit fell from 2.47 to 1e-06 after alice stored 30 quokka memories (FTS5's bm25()
counted alice's memories in each word's IDF and average length).
"""

from __future__ import annotations

from typing import Any

from http_support import Running

from memmesh.model import LOCAL_PRINCIPAL


def _keyword(client: Any, query: str) -> dict[str, float]:
    """Content → the explained keyword score of each hit of ``GET /api/v1/search``."""
    answer = client.get("/api/v1/search", params={"q": query, "explain": "true", "top_k": 50})
    assert answer.status_code == 200, answer.text
    return {hit["memory"]["content"]: hit["explain"]["keyword"] for hit in answer.json()["hits"]}


def _store(client: Any, content: str, namespace: str) -> None:
    made = client.post("/api/v1/memories", json={"content": content, "namespace": namespace})
    assert made.status_code == 201, made.text


def test_bobs_scores_and_ranking_do_not_move_when_alice_stores_his_words(server: Running) -> None:
    svc = server.service
    alice = server.http(svc.create_key("alice", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    bob = server.http(svc.create_key("bob", role="writer", namespaces=["b/*"], principal=LOCAL_PRINCIPAL).key)
    for content in ("hunter2 canary", "zqxv9 canary", "quokka sighting", "wombat sighting"):
        _store(bob, content, "b/z")
    queries = ("hunter2", "zqxv9", "hunter2 zqxv9", "quokka", "quokka wombat sighting")
    before = {q: _keyword(bob, q) for q in queries}
    order = [h["memory"]["content"] for h in bob.get("/api/v1/search", params={"q": "hunter2 zqxv9"}).json()["hits"]]

    _store(alice, "the vault password is hunter2", "a/y")
    for i in range(30):
        _store(alice, f"quokka q{i} " + "long " * i, "a/y")
        _store(alice, f"hunter2 h{i}", "a/y")

    after = {q: _keyword(bob, q) for q in queries}
    assert after == before
    assert after["hunter2"]["hunter2 canary"] == after["zqxv9"]["zqxv9 canary"]
    assert [h["memory"]["content"] for h in bob.get("/api/v1/search", params={"q": "hunter2 zqxv9"}).json()["hits"]] == order
    # keyword recall (the keyword half of hybrid) ranks on the same scores
    recalled = bob.post("/api/v1/recall", json={"query": "quokka", "mode": "keyword", "explain": True, "touch": False})
    assert recalled.status_code == 200, recalled.text
    assert [h["explain"]["keyword"] for h in recalled.json()["hits"]] == [before["quokka"]["quokka sighting"]]
    # alice sees her own memories only, scored with her namespace's statistics
    assert set(_keyword(alice, "hunter2")) == {"the vault password is hunter2", *(f"hunter2 h{i}" for i in range(30))}


def test_a_scoped_keys_ranking_follows_its_own_namespaces(server: Running) -> None:
    """Inside ``b`` wombat is the rare word; alice's forty wombats must not make it common."""
    svc = server.service
    alice = server.http(svc.create_key("alice", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    bob = server.http(svc.create_key("bob", role="writer", namespaces=["b/*"], principal=LOCAL_PRINCIPAL).key)
    _store(bob, "wombat seen", "b/z")
    for i in range(3):
        _store(bob, f"quokka seen {i}", "b/z")
    for i in range(6):
        _store(bob, f"filler note {i}", "b/z")
    for i in range(40):
        _store(alice, f"wombat {i}", "a/y")
    hits = bob.get("/api/v1/search", params={"q": "quokka wombat", "explain": "true"}).json()["hits"]
    assert len(hits) == 4 and hits[0]["memory"]["content"] == "wombat seen"
    assert hits[0]["explain"]["keyword"] > hits[1]["explain"]["keyword"]
