"""``memmesh import`` through the real console entry point (subprocesses, real SQLite files)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import CliResult
from tests.importers.conftest import GOOD_ROWS, MALFORMED, MCP_ENTITIES, MCP_OBSERVATIONS, Mem0History, sqlite_url

from memmesh.io.importers.mem0 import memory_id

LEGACY = [
    "--table",
    "agent_memories",
    "--id-col",
    "id",
    "--content-col",
    "content",
    "--tenant-col",
    "workspace_id",
    "--namespace-template",
    "workspace:{tenant}",
    "--kind",
    "fact",
    "--source",
    "agent",
    "--mark-col",
    "migrated_at",
]


def _json(result: CliResult) -> Any:
    assert result.out, result.err
    return json.loads(result.out)


def test_mcp_memory_file_is_detected_imported_once_and_dry_run_writes_nothing(cli, mcp_file: Path, tmp_path: Path) -> None:
    dry = _json(cli("--db", str(tmp_path / "dry.db"), "import", str(mcp_file), "--dry-run", "--json"))
    assert dry["dry_run"] and dry["totals"]["added"] == len(MCP_ENTITIES) + MCP_OBSERVATIONS
    assert not (tmp_path / "dry.db").exists()  # a dry run creates nothing, not even an empty store

    first = cli("import", str(mcp_file), "-n", "kg", "--json")
    report = _json(first)
    assert first.code == 0 and report["format"] == "mcp-memory"
    assert report["totals"]["added"] == dry["totals"]["added"] and report["totals"]["links_written"] > 0
    again = cli("import", str(mcp_file), "-n", "kg")
    assert again.code == 0 and "wrote: 0 added, 0 updated, 0 deleted, 0 links" in again.out
    assert "already imported" in again.out and "spot check: recalled 3 of 3" in again.out


def test_legacy_table_report_marks_rerun_and_check_only(cli, legacy_db: Path, db_path: Path) -> None:
    url = sqlite_url(legacy_db)
    check = cli("import", url, *LEGACY, "--check-only", "--json")
    assert check.code == 1  # malformed rows would fail: the report says which, and nothing was written
    assert _json(check)["totals"]["migrated"] == GOOD_ROWS and not db_path.exists()
    with sqlite3.connect(legacy_db) as conn:
        assert conn.execute("SELECT count(*) FROM agent_memories WHERE migrated_at IS NOT NULL").fetchone() == (0,)

    run = cli("import", url, *LEGACY, "--json")
    report = _json(run)
    assert run.code == 1 and (report["totals"]["migrated"], report["totals"]["failed"]) == (GOOD_ROWS, MALFORMED)
    assert {"tenant": "chloe-dong", "namespace": "workspace:chloe-dong", "migrated": 1, "skipped": 0, "failed": 0} in report["tenants"]
    assert report["spot_check"] == {"sampled": 3, "found": 3, "missing": []}
    assert {f["id"] for f in report["failures"]} == {"100", "101", "102", "103", "104"}

    table = cli("import", url, *LEGACY)
    assert table.code == 1
    assert "agents-team" in table.out and "workspace:reno-stars" in table.out
    assert f"skipped {GOOD_ROWS}: already migrated (marked)" in table.out
    assert "failed 104 (tenant reno-stars): content is NULL" in table.err
    assert _json(cli("stats", "--json"))["total"] == GOOD_ROWS


def test_bad_sources_and_options_are_clear_errors_that_write_nothing(cli, legacy_db: Path, mcp_file: Path, db_path: Path) -> None:
    url = sqlite_url(legacy_db)
    missing = cli("import", url, *[a if a != "content" else "body" for a in LEGACY])
    assert missing.code == 1 and missing.err.startswith("error: --content-col 'body': table 'agent_memories' has no such column")
    unreachable = cli("import", "postgresql://app:hunter2@127.0.0.1:1/legacy", *LEGACY)
    assert unreachable.code == 1 and "cannot connect to postgresql://app:***@127.0.0.1:1/legacy" in unreachable.err
    assert "hunter2" not in unreachable.err
    misplaced = cli("import", str(mcp_file), "--table", "x")
    assert misplaced.code == 2 and "--table only applies to --format sql (this source is mcp-memory)" in misplaced.err
    assert misplaced.err.rstrip().endswith("; see memmesh import --help"), misplaced.err
    assert cli("import", str(mcp_file), "--format", "nosql").code == 2
    assert not db_path.exists()  # refused imports leave no store behind


def test_mem0_export_then_history_db(cli, tmp_path: Path, mem0_export: dict[str, Any]) -> None:
    export = tmp_path / "mem0_export.json"
    export.write_text(json.dumps(mem0_export, indent=2))
    first = _json(cli("import", str(export), "--json"))
    assert first["format"] == "mem0" and first["totals"]["added"] == 5
    history = Mem0History(tmp_path / "history.db")
    kept = mem0_export["results"][0]
    history.add(kept["memory"], memory_id=kept["id"])
    history.update(kept["id"], kept["memory"], "Likes to play cricket and squash")
    history.add(mem0_export["results"][3]["memory"], memory_id=mem0_export["results"][3]["id"])
    history.delete(mem0_export["results"][3]["id"], mem0_export["results"][3]["memory"])
    report = _json(cli("import", str(history.path), "--json"))
    assert report["format"] == "mem0-history"
    assert (report["totals"]["updated"], report["totals"]["deleted"]) == (1, 1)
    assert _json(cli("get", memory_id(kept["id"], "mem0"), "--json"))["content"] == "Likes to play cricket and squash"
    assert _json(cli("stats", "--json"))["total"] == 4


def test_a_source_imported_into_a_second_namespace_is_a_second_independent_copy(cli, tmp_path: Path) -> None:
    """An MCP memory file imported again under another ``-n``: its ids include the namespace,
    so the second namespace gets its own memories (it used to refuse each record: one store
    held each ``mcp:<name>`` once), and each namespace's re-run writes nothing."""
    source = tmp_path / "memory.jsonl"
    source.write_text('{"type": "entity", "name": "default_user", "entityType": "person", "observations": ["likes tea"]}\n')
    for namespace in ("agents/x", "agents/y"):
        report = _json(cli("import", str(source), "-n", namespace, "--json"))
        assert report["failures"] == [] and report["totals"]["added"] == 2 and report["totals"]["links_written"] == 1
    for namespace in ("agents/x", "agents/y"):
        again = _json(cli("import", str(source), "-n", namespace, "--json"))
        assert again["failures"] == [] and again["totals"]["skipped"] == 2 and again["totals"]["added"] == 0
    listed = _json(cli("list", "--json"))["items"]
    assert sorted(m["namespace"] for m in listed) == ["agents/x", "agents/x", "agents/y", "agents/y"]
    assert len({m["id"] for m in listed}) == 4
