"""The curator on every face: the CLI (a real subprocess), HTTP (real uvicorn on 127.0.0.1)
and MCP (the real ``mcp`` client over stdio), including their bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.http.http_support import ThreadServer, http_settings
from tests.mcp.conftest import keyword_mcp_env

from memmesh import Memory

SPEC_KEYS = {
    "started_at",
    "completed_at",
    "cycle_duration_ms",
    "memories_scanned",
    "memories_eligible",
    "auto_tagged",
    "contradictions_found",
    "operations_attempted",
    "operations_skipped_cap",
    "autonomy",
    "errors",
    "dry_run",
}
AUTONOMY_KEYS = {
    "clusters_formed",
    "memories_consolidated",
    "memories_forgotten",
    "priority_adjustments",
    "rollback_entries_written",
    "errors",
}


def _seed(db: Path) -> None:
    from tests.conftest import keyword_settings

    with Memory(f"sqlite:///{db}", keyword_settings(db.parent)) as mem:
        mem.add("The API rate limit is 100 requests per minute.", namespace="ops")
        mem.add("The API rate limit is 500 requests per minute.", namespace="ops")
        mem.add("Grace leads the design system working group.", namespace="team")


def test_cli_run_json_has_the_spec_shape_and_rollback_puts_it_back(cli_in_process: Any, db_path: Path) -> None:
    """In-process (same entry point); the curator family's real subprocess is in test_curator_llm.py."""
    cli = cli_in_process
    _seed(db_path)
    dry = cli("curator", "run", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    report = json.loads(dry.out)
    assert set(report) >= SPEC_KEYS and set(report["autonomy"]) == AUTONOMY_KEYS
    assert report["dry_run"] is True and report["errors"] == ["no LLM client configured"] and report["contradictions_found"] == 1
    real = json.loads(cli("curator", "run", "--namespace", "ops", "--json").out)
    assert real["operations_attempted"] == 3 and real["namespace"] == "ops"  # one contradicts link, two tag sets
    listed = json.loads(cli("curator", "runs", "--json").out)
    assert [r["id"] for r in listed] == [real["run_id"], report["run_id"]]
    undone = cli("curator", "rollback", real["run_id"])
    assert undone.code == 0 and "3 changes put back" in undone.out
    text = cli("curator", "run", "--dry-run")
    assert text.code == 0 and "dry run: nothing changed" in text.out and "note: no LLM client configured" in text.out


def test_cli_bad_input_is_one_clear_line(cli_in_process: Any, db_path: Path) -> None:
    cli = cli_in_process
    _seed(db_path)
    for args, words, code in (
        (("curator", "run", "--max-ops", "0"), "--max-ops must be a whole number of at least 1 (got 0)", 2),  # out of range: usage
        (("curator", "run", "--max-ops", "-3"), "--max-ops must be a whole number of at least 1 (got -3)", 2),
        (("curator", "rollback", "no-such-run"), "no curator run with id no-such-run", 1),
    ):
        result = cli(*args)
        assert result.code == code, result
        assert words in result.err and result.err.count("\n") == 1
    listed = json.loads(cli("curator", "runs", "--json").out)
    assert listed == []  # the refused runs recorded nothing
    assert cli("curator", "run", "--max-ops", "x").code == 2  # not a number: a usage error


def test_http_run_runs_rollback_and_bad_input(tmp_path: Path) -> None:
    server = ThreadServer(http_settings(tmp_path))
    running = server.start()
    try:
        http = running.http()
        for text in ("The build server has 16 GB of memory.", "The build server has 64 GB of memory."):
            assert http.post("/api/v1/memories", json={"content": text, "namespace": "infra"}).status_code == 201
        dry = http.post("/api/v1/curator/run", json={"dry_run": True})
        assert dry.status_code == 200 and set(dry.json()) >= SPEC_KEYS and dry.json()["contradictions_found"] == 1
        run = http.post("/api/v1/curator/run", json={"namespace": "infra", "max_ops": 1}).json()
        assert run["operations_attempted"] == 1 and run["operations_skipped_cap"] == 2
        assert http.get(f"/api/v1/curator/runs/{run['run_id']}").json()["report"]["run_id"] == run["run_id"]
        assert [r["id"] for r in http.get("/api/v1/curator/runs").json()][:2] == [run["run_id"], dry.json()["run_id"]]
        undone = http.post(f"/api/v1/curator/runs/{run['run_id']}/rollback")
        assert undone.status_code == 200 and undone.json()["restored"] == 1
        again = http.post(f"/api/v1/curator/runs/{run['run_id']}/rollback")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        missing = http.post("/api/v1/curator/runs/nope/rollback")
        assert missing.status_code == 404 and "no curator run with id nope" in missing.json()["error"]["message"]
        for body in ({"max_ops": 0}, {"max_ops": -5}, {"max_ops": "many"}, {"dry_run": "yes please"}, {"surprise": 1}):
            bad = http.post("/api/v1/curator/run", json=body)
            assert bad.status_code == 422, (body, bad.text)
        assert len(http.get("/api/v1/curator/runs").json()) == 2  # nothing recorded by the refused ones
    finally:
        running.close_clients()
        server.stop()


def test_mcp_tools_detect_tag_and_expand_through_the_core(tmp_path: Path, db_path: Path) -> None:
    from tests.conftest import keyword_settings

    with Memory(f"sqlite:///{db_path}", keyword_settings(tmp_path)) as mem:
        low = mem.add("The conference room holds 12 people.", namespace="office").id
        high = mem.add("The conference room holds 20 people.", namespace="office").id
        plain = mem.add("The conference room projector needs an HDMI adapter.", namespace="office", tags=["projector", "hdmi"]).id
    env = keyword_mcp_env(tmp_path, db_path)

    async def scenario() -> None:
        async with env.client("--profile", "curator") as client:
            names = {t.name for t in (await client.session.list_tools()).tools}
            assert {"memory_detect_contradiction", "memory_auto_tag", "memory_expand_query"} <= names
            found = await client.ok("memory_detect_contradiction", id=low)
            assert [c["memory"]["id"] for c in found["contradictions"]] == [high]
            assert "20 vs 12" in found["contradictions"][0]["reason"]  # the newer against the older, as the curator says it
            before = await client.ok("memory_detect_contradiction", content="The conference room holds 40 people.", namespace="office")
            assert {c["memory"]["id"] for c in before["contradictions"]} == {low, high}
            suggested = await client.ok("memory_auto_tag", id=low, max_tags=2)
            assert suggested["applied"] is False and len(suggested["suggested"]) == 2
            applied = await client.ok("memory_auto_tag", id=low, apply=True, max_tags=2)
            assert applied["applied"] is True and applied["tags"] == suggested["suggested"]
            expanded = await client.ok("memory_expand_query", query="conference room", namespace="office")
            assert "projector" in expanded["expansions"] and expanded["expanded_query"].startswith("conference room ")
            for name, args, words in (
                ("memory_detect_contradiction", {}, "give either the id of a stored memory or content"),
                ("memory_detect_contradiction", {"id": low, "content": "both"}, "not both"),
                ("memory_detect_contradiction", {"id": "missing"}, "no memory with id missing"),
                ("memory_auto_tag", {"id": low, "max_tags": 0}, "max_tags must be between 1 and 32"),
                ("memory_expand_query", {"query": "  "}, "query is empty"),
                ("memory_expand_query", {"query": "room", "max_terms": 500}, "max_terms must be between 1 and 50"),
            ):
                bad = await client.call(name, **args)
                assert bad.is_error and words in bad.text and "Error executing tool" not in bad.text, (name, args, bad.text)
            assert plain  # untouched by all of this

    asyncio.run(scenario())
    with Memory(f"sqlite:///{db_path}", keyword_settings(tmp_path)) as mem:
        assert mem.get(plain).tags == ["projector", "hdmi"]
        assert mem.get(low).tags == applied_tags(mem, low)


def applied_tags(mem: Memory, memory_id: str) -> list[str]:
    """The tags memory_auto_tag applied (recorded in its history as an update by the tool)."""
    last = mem.history(memory_id)[-1]
    assert last.event.value == "update" and last.new is not None
    tags: list[str] = last.new["tags"]
    return tags
