"""``memmesh import … --key KEY``: an import runs with an API key's role and namespaces.

Records the key may write are imported; each one outside its namespaces is counted as failed
with the reason; a key that covers none of the source (or may not write) is one clear error
before anything is written or marked. Real subprocesses, real SQLite files.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import CliResult
from tests.importers.conftest import MALFORMED, TENANTS, sqlite_url

LEGACY = ["--table", "agent_memories", "--tenant-col", "workspace_id", "--mark-col", "migrated_at", "--source", "agent"]


def _json(result: CliResult) -> Any:
    assert result.out, result.err
    return json.loads(result.out)


def make_key(cli, role: str, *namespaces: str) -> str:
    args = [arg for ns in namespaces for arg in ("-n", ns)]
    return _json(cli("keys", "create", "--agent", f"importer-{role}", "--role", role, *args, "--json"))["key"]


def marked(path: Path) -> set[int]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM agent_memories WHERE migrated_at IS NOT NULL")}


def test_a_scoped_key_imports_its_tenant_and_rejects_the_rest_per_record(cli, legacy_db: Path) -> None:
    key = make_key(cli, "writer", "workspace:hongming")
    result = cli("import", sqlite_url(legacy_db), *LEGACY, "--key", key, "--json")
    report = _json(result)
    assert result.code == 1  # rows outside the key's namespaces failed: listed, exit 1
    counts = {t["tenant"]: (t["migrated"], t["failed"]) for t in report["tenants"]}
    assert counts["hongming"] == (TENANTS["hongming"], 1)  # its blank row still fails on its own
    assert counts["agents-team"] == (0, TENANTS["agents-team"] + 1)
    outside = [f for f in report["failures"] if "outside this key's namespaces (workspace:hongming)" in f["reason"]]
    assert len(outside) == sum(TENANTS.values()) - TENANTS["hongming"] + 1  # + the oversize agents-team row
    assert report["totals"]["migrated"] == TENANTS["hongming"] and report["totals"]["failed"] == len(outside) + MALFORMED - 1
    assert key not in result.out + result.err

    listed = _json(cli("list", "--json", "--limit", "100"))["items"]
    assert {m["namespace"] for m in listed} == {"workspace:hongming"} and len(listed) == TENANTS["hongming"]
    assert len(marked(legacy_db)) == TENANTS["hongming"]  # only what was imported is marked


def test_a_key_that_covers_nothing_or_cannot_write_is_one_error_and_nothing_changes(cli, legacy_db: Path, tmp_path: Path) -> None:
    elsewhere = make_key(cli, "writer", "team/other")
    reader = make_key(cli, "reader", "*")
    cases = [
        ([sqlite_url(legacy_db), *LEGACY, "--add-mark-column", "--key", elsewhere], "cover none of the source's"),
        ([sqlite_url(legacy_db), *LEGACY, "--key", reader], "role 'reader' may not import"),
        ([sqlite_url(legacy_db), *LEGACY, "--key", "mm_nope_notakey"], "invalid or revoked API key"),
    ]
    mcp = tmp_path / "memory.jsonl"
    mcp.write_text('{"type":"entity","name":"Ada","entityType":"person","observations":["writes code"]}')
    cases.append(([str(mcp), "-n", "kg", "--key", elsewhere], "cover none of the source's (kg)"))
    dump = tmp_path / "dump.jsonl"
    dump.write_text("")
    cases.append(([str(dump), "--format", "jsonl", "--key", elsewhere], "--key does not apply to a memmesh JSON Lines restore"))
    for args, message in cases:
        result = cli("import", *args)
        assert result.code != 0 and message in result.err, (args, result)
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
        assert "nothing was imported" in result.err or message.startswith(("invalid", "--key"))
        assert elsewhere not in result.err and reader not in result.err
    assert _json(cli("stats", "--json"))["total"] == 0 and not marked(legacy_db)


def test_an_admin_key_for_everything_imports_everything(cli, legacy_db: Path) -> None:
    key = make_key(cli, "admin", "*")
    report = _json(cli("import", sqlite_url(legacy_db), *LEGACY, "--key", key, "--json"))
    assert report["totals"]["migrated"] == sum(TENANTS.values()) and report["totals"]["failed"] == MALFORMED
