"""``--add-mark-column``: a legacy table without the ``migrated_at`` column (seed 003's backfill)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from tests.importers.conftest import GOOD_ROWS, MALFORMED, PgServer, legacy_rows, sqlite_url
from tests.importers.test_import_legacy import spec_for

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.io.importers import import_legacy

UNMARKED_DDL = "CREATE TABLE agent_memories (id INTEGER PRIMARY KEY, workspace_id TEXT, content TEXT)"


@pytest.fixture
def unmarked_db(tmp_path: Path) -> Path:
    """The legacy table as it is before the backfill: no mark column yet."""
    path = tmp_path / "unmarked.db"
    with sqlite3.connect(path) as conn:
        conn.execute(UNMARKED_DDL)
        conn.executemany("INSERT INTO agent_memories (id, workspace_id, content) VALUES (?, ?, ?)", legacy_rows())
    conn.close()
    return path


def columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(agent_memories)")]


def test_missing_mark_column_without_the_flag_is_one_error_naming_it(mem: Memory, unmarked_db: Path) -> None:
    before = hashlib.sha256(unmarked_db.read_bytes()).hexdigest()
    for options in ({}, {"check_only": True}):
        with pytest.raises(InvalidInputError, match=r"--mark-col 'migrated_at': .*no such column.*add --add-mark-column") as caught:
            import_legacy(mem.service, spec_for(sqlite_url(unmarked_db)), **options, principal=mem.principal)
        assert "nothing was written" in caught.value.message
    assert mem.stats().total == 0 and hashlib.sha256(unmarked_db.read_bytes()).hexdigest() == before


def test_check_only_reports_the_column_it_would_add_and_changes_nothing(mem: Memory, unmarked_db: Path) -> None:
    before = hashlib.sha256(unmarked_db.read_bytes()).hexdigest()
    report = import_legacy(mem.service, spec_for(sqlite_url(unmarked_db), add_mark_col=True), check_only=True, principal=mem.principal)
    assert report.source_changes == ["would add column migrated_at to agent_memories (--add-mark-column); nothing was changed"]
    assert (report.totals.migrated, report.totals.failed) == (GOOD_ROWS, MALFORMED)
    assert mem.stats().total == 0 and hashlib.sha256(unmarked_db.read_bytes()).hexdigest() == before
    assert "migrated_at" not in columns(unmarked_db)


def test_the_flag_adds_the_column_marks_rows_and_a_rerun_is_a_noop(mem: Memory, unmarked_db: Path) -> None:
    spec = spec_for(sqlite_url(unmarked_db), mark_col=None, add_mark_col=True)  # the column defaults to migrated_at
    report = import_legacy(mem.service, spec, principal=mem.principal)
    assert report.source_changes == ["added column migrated_at (TEXT) to agent_memories"]
    assert report.totals.migrated == GOOD_ROWS and "migrated_at" in columns(unmarked_db)
    with sqlite3.connect(unmarked_db) as conn:
        assert conn.execute("SELECT count(*) FROM agent_memories WHERE migrated_at IS NOT NULL").fetchone() == (GOOD_ROWS,)
    again = import_legacy(mem.service, spec, principal=mem.principal)
    assert again.source_changes == [] and again.totals.migrated == 0
    assert again.skipped_reasons == {"already migrated (marked)": GOOD_ROWS}


def test_cli_add_mark_column_check_only_then_real_run(cli, unmarked_db: Path) -> None:
    url = sqlite_url(unmarked_db)
    common = ["--table", "agent_memories", "--tenant-col", "workspace_id", "--mark-col", "migrated_at"]
    refused = cli("import", url, *common)
    assert refused.code == 1 and "add --add-mark-column" in refused.err and len(refused.err.strip().splitlines()) == 1
    check = cli("import", url, *common, "--add-mark-column", "--check-only")
    assert "would add column migrated_at to agent_memories" in check.out and "migrated_at" not in columns(unmarked_db)
    run = cli("import", url, *common, "--add-mark-column", "--json")
    assert json.loads(run.out)["source_changes"] == ["added column migrated_at (TEXT) to agent_memories"]
    assert "migrated_at" in columns(unmarked_db)
    (unmarked_db.parent / "x.jsonl").write_text("", encoding="utf-8")
    not_sql = cli("import", str(unmarked_db.parent / "x.jsonl"), "--add-mark-column")
    assert not_sql.code != 0 and "only applies to --format sql" in not_sql.err


@pytest.mark.postgres
def test_postgres_source_gets_a_timestamptz_mark_column(mem: Memory, pg_server: PgServer) -> None:
    name = pg_server.create_database("legacy")
    try:
        pg_server.execute(name, "CREATE TABLE agent_memories (id bigint PRIMARY KEY, workspace_id text, content text)")
        for row in legacy_rows():
            pg_server.execute(name, "INSERT INTO agent_memories (id, workspace_id, content) VALUES (%s, %s, %s)", row)
        url = pg_server.dsn_for(name)
        has_column = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'agent_memories' AND column_name = 'migrated_at'"
        with pytest.raises(InvalidInputError, match="add --add-mark-column"):
            import_legacy(mem.service, spec_for(url), principal=mem.principal)
        check = import_legacy(mem.service, spec_for(url, add_mark_col=True), check_only=True, principal=mem.principal)
        assert check.source_changes[0].startswith("would add column migrated_at") and check.totals.migrated == GOOD_ROWS
        assert pg_server.execute(name, has_column) == [(0,)] and mem.stats().total == 0

        report = import_legacy(mem.service, spec_for(url, add_mark_col=True), principal=mem.principal)
        assert report.source_changes == ["added column migrated_at (timestamptz) to agent_memories"]
        assert pg_server.execute(name, "SELECT count(*) FROM agent_memories WHERE migrated_at IS NOT NULL") == [(GOOD_ROWS,)]
        again = import_legacy(mem.service, spec_for(url, add_mark_col=True), principal=mem.principal)
        assert again.source_changes == [] and again.totals.migrated == 0 and again.totals.skipped == GOOD_ROWS
    finally:
        pg_server.drop_database(name)
