"""Probe of session 7 (probe3): hostile queries, keys scoped elsewhere and revoked keys on the
surfaces merged in session 6, through a real uvicorn."""

from __future__ import annotations

from typing import Any

import httpx


def test_a_query_naming_a_date_then_a_long_run_of_spaces_answers_at_once(server: Any) -> None:
    """Dated recall (recall/dated.py) matched "May 5" followed by ``\\s*(?:st|nd|rd|th)?\\s*\\w``:
    two ``\\s*`` in a row try every split of a run of spaces, quadratic in its length: 60 KB of
    spaces after "May 5" held one request for about a minute of CPU (8 KB: 0.6 s). With one
    ``\\s*`` the same query answers like any other. The client's timeout is the bound."""
    http = server.http()
    assert http.post("/api/v1/memories", json={"content": "the May 5 launch went well", "namespace": "dates"}).status_code == 201
    query = "what happened on May 5" + " " * 60_000 + "!"
    with httpx.Client(base_url=server.url, timeout=20) as quick:
        reply = quick.post("/api/v1/recall", json={"query": query, "filters": {"namespace": "dates"}})
    assert reply.status_code == 200, reply.text
    assert [h["memory"]["content"] for h in reply.json()["hits"]] == ["the May 5 launch went well"]


def test_a_query_longer_than_the_longest_memory_is_refused_with_the_limit(server: Any) -> None:
    """A recall or search query had no size limit but the 2 MiB body: each request's
    tokenizing, keyword and date scans grew with it (1 MB: 1-2 s of CPU). A query may now be
    as long as a memory may (``limits.max_content_bytes``), and is refused past it."""
    http = server.http()
    assert http.post("/api/v1/memories", json={"content": "kept as it was", "namespace": "big"}).status_code == 201
    fits = http.post("/api/v1/recall", json={"query": "kept " + "x" * (65_536 - 5), "filters": {"namespace": "big"}})
    assert fits.status_code == 200, fits.text
    refused = http.post("/api/v1/recall", json={"query": "kept " + "é" * 40_000, "filters": {"namespace": "big"}})
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert "query is 80005 bytes" in message and "65536" in message and "limits.max_content_bytes" in message, message
    assert [m["content"] for m in http.get("/api/v1/memories", params={"namespace": "big"}).json()["items"]] == ["kept as it was"]


def test_a_memory_with_a_long_run_of_spaces_does_not_stall_the_curator(server: Any) -> None:
    """The curator's rules cut a value at a time word (curator/rules.py ``CUT``:
    ``\\s+(?:last|in|…)\\b.*$``), tried from every space of a run: quadratic in the run. Two
    memories with 12,000 spaces took a curator run 20 s of CPU; 64 KiB ones, minutes, with the
    store's run lease held all along. A writer could stall curation with one store. Now a match
    starts only where a run starts. The client's timeout is the bound."""
    http = server.http()
    for city in ("Berlin", "Paris"):
        body = {"content": f"Alice lives in {city}" + " " * 30_000 + "now", "namespace": "people"}
        assert http.post("/api/v1/memories", json=body).status_code == 201
    with httpx.Client(base_url=server.url, timeout=20) as quick:
        run = quick.post("/api/v1/curator/run", json={"namespace": "people", "dry_run": True})
    assert run.status_code == 200, run.text
