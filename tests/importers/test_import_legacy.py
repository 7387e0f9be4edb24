"""A legacy SQL table backfilled per tenant (SQLite via the stdlib, PostgreSQL via psycopg)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.importers.conftest import GOOD_ROWS, LEGACY_DDL, MALFORMED, TENANTS, PgServer, legacy_rows, sqlite_url

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.io.importers import LegacyTable, import_legacy
from memmesh.io.importers.base import scoped_id
from memmesh.model import LOCAL_PRINCIPAL


def spec_for(url: str, **overrides: Any) -> LegacyTable:
    values: dict[str, Any] = {
        "url": url,
        "table": "agent_memories",
        "id_col": "id",
        "content_col": "content",
        "tenant_col": "workspace_id",
        "namespace_template": "workspace:{tenant}",
        "kind": "fact",
        "source": "agent",
        "mark_col": "migrated_at",
    }
    values.update(overrides)
    return LegacyTable(**values)


def marks(path: Path) -> dict[int, str | None]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, migrated_at FROM agent_memories"))


def test_rows_migrate_per_tenant_with_marks_and_spot_check(mem: Memory, legacy_db: Path) -> None:
    report = import_legacy(mem.service, spec_for(sqlite_url(legacy_db)), principal=LOCAL_PRINCIPAL)
    counts = {t.tenant: (t.migrated, t.skipped, t.failed) for t in report.tenants}
    assert counts["agents-team"] == (12, 0, 1)  # the oversize row
    assert counts["hongming"] == (5, 0, 1)  # the blank row
    assert counts["chloe-dong"] == (1, 0, 0)
    assert counts["reno-stars"] == (4, 0, 1)  # NULL content
    assert counts["bad tenant/.."] == (0, 0, 1) and counts[None] == (0, 0, 1)
    assert (report.totals.migrated, report.totals.failed) == (GOOD_ROWS, MALFORMED)
    assert {t.tenant: t.namespace for t in report.tenants}["hongming"] == "workspace:hongming"

    reasons = {f.id: f.reason for f in report.failures}
    assert "content is empty" in reasons["100"] and "limit is 65536" in reasons["101"]
    assert "namespace 'workspace:bad tenant/..' is invalid" in reasons["102"]
    assert reasons["103"] == "workspace_id is NULL, so the row has no namespace" and reasons["104"] == "content is NULL"

    memory = mem.get(scoped_id("legacy:agent_memories", "workspace:agents-team", "1"))
    assert memory.namespace == "workspace:agents-team" and memory.kind.value == "fact" and memory.source == "agent"
    assert memory.metadata["imported_from"]["tenant"] == "agents-team"
    assert mem.stats().total == GOOD_ROWS

    marked = marks(legacy_db)
    assert all(marked[i] for i in range(1, GOOD_ROWS + 1))
    assert all(marked[i] is None for i in range(100, 105))  # failed rows stay unmarked, for a later retry
    assert report.spot_check is not None and report.spot_check.sampled == 3 and report.spot_check.found == 3


def test_rerun_migrates_nothing_and_a_fixed_row_goes_next_time(mem: Memory, legacy_db: Path) -> None:
    import_legacy(mem.service, spec_for(sqlite_url(legacy_db)), principal=LOCAL_PRINCIPAL)
    again = import_legacy(mem.service, spec_for(sqlite_url(legacy_db)), principal=LOCAL_PRINCIPAL)
    assert again.totals.migrated == 0 and again.totals.skipped == GOOD_ROWS
    assert again.skipped_reasons == {"already migrated (marked)": GOOD_ROWS}

    with sqlite3.connect(legacy_db) as conn:
        conn.execute("UPDATE agent_memories SET content = 'hongming fixed the blank row' WHERE id = 100")
    third = import_legacy(mem.service, spec_for(sqlite_url(legacy_db)), principal=LOCAL_PRINCIPAL)
    assert third.totals.migrated == 1
    assert mem.get(scoped_id("legacy:agent_memories", "workspace:hongming", "100")).namespace == "workspace:hongming"


def test_without_a_mark_column_the_ids_make_a_rerun_a_noop(mem: Memory, legacy_db: Path) -> None:
    spec = spec_for(sqlite_url(legacy_db), mark_col=None)
    first = import_legacy(mem.service, spec, principal=LOCAL_PRINCIPAL)
    again = import_legacy(mem.service, spec, principal=LOCAL_PRINCIPAL)
    assert first.totals.migrated == GOOD_ROWS and again.totals.migrated == 0
    assert again.skipped_reasons == {"already imported": GOOD_ROWS}
    assert not any(marks(legacy_db).values())


def test_a_crash_between_write_and_mark_is_healed_by_the_rerun(mem: Memory, legacy_db: Path) -> None:
    import_legacy(mem.service, spec_for(sqlite_url(legacy_db)), principal=LOCAL_PRINCIPAL)
    with sqlite3.connect(legacy_db) as conn:
        conn.execute("UPDATE agent_memories SET migrated_at = NULL WHERE id <= 5")  # written, never marked
    again = import_legacy(mem.service, spec_for(sqlite_url(legacy_db)), principal=LOCAL_PRINCIPAL)
    assert again.totals.migrated == 0 and again.skipped_reasons["already imported"] == 5
    assert all(marks(legacy_db)[i] for i in range(1, 6))


def test_check_only_and_dry_run_change_nothing_anywhere(mem: Memory, legacy_db: Path) -> None:
    before = hashlib.sha256(legacy_db.read_bytes()).hexdigest()
    for options in ({"check_only": True}, {"dry_run": True}):
        report = import_legacy(mem.service, spec_for(sqlite_url(legacy_db)), **options, principal=LOCAL_PRINCIPAL)
        assert report.dry_run and report.spot_check is None
        assert (report.totals.migrated, report.totals.failed) == (GOOD_ROWS, MALFORMED)
    assert mem.stats().total == 0
    assert hashlib.sha256(legacy_db.read_bytes()).hexdigest() == before
    assert not any(marks(legacy_db).values())


def test_empty_table_is_a_noop_and_premarked_rows_are_skipped(mem: Memory, tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    with sqlite3.connect(path) as conn:
        conn.execute(LEGACY_DDL)
    empty = import_legacy(mem.service, spec_for(sqlite_url(path)), principal=LOCAL_PRINCIPAL)
    assert empty.tenants == [] and empty.written == 0 and empty.spot_check is not None and empty.spot_check.sampled == 0
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO agent_memories (id, workspace_id, content, migrated_at) VALUES "
            "(1, 'hongming', 'already moved by hand', '2026-05-24T08:05:00Z'), (2, 'hongming', 'still to move', NULL)"
        )
    report = import_legacy(mem.service, spec_for(sqlite_url(path)), principal=LOCAL_PRINCIPAL)
    assert (report.totals.migrated, report.totals.skipped) == (1, 1)
    assert mem.service.store.get(scoped_id("legacy:agent_memories", "workspace:hongming", "1")) is None


def test_same_content_in_a_tenant_is_stored_once_and_both_rows_are_marked(mem: Memory, tmp_path: Path) -> None:
    path = tmp_path / "dupes.db"
    with sqlite3.connect(path) as conn:
        conn.execute(LEGACY_DDL)
        conn.executemany(
            "INSERT INTO agent_memories (id, workspace_id, content) VALUES (?, ?, ?)",
            [(1, "t1", "same words"), (2, "t1", "same words"), (3, "t2", "same words")],
        )
    report = import_legacy(mem.service, spec_for(sqlite_url(path)), principal=LOCAL_PRINCIPAL)
    assert (report.totals.added, report.totals.skipped) == (2, 1)
    assert report.skipped_reasons == {"same content already stored": 1}
    assert all(marks(path).values())


def test_bad_options_and_sources_fail_before_anything_is_written(mem: Memory, legacy_db: Path, tmp_path: Path) -> None:
    url = sqlite_url(legacy_db)
    cases = [
        (spec_for(url, table="nope"), "table 'nope' cannot be read .*tables: agent_memories"),
        (spec_for(url, content_col="body"), "--content-col 'body': table 'agent_memories' has no such column"),
        (spec_for(url, tenant_col="tenant"), "--tenant-col 'tenant'"),
        (spec_for(url, mark_col="done_at"), "--mark-col 'done_at'"),
        (spec_for(url, namespace_template="ws:{tenant}/{user}"), "may only use {tenant}"),
        (spec_for(url, kind="gossip"), "--kind 'gossip' is not one of"),
        (spec_for(url, tenant_col=None), "give --tenant-col"),
        (spec_for(sqlite_url(tmp_path / "missing.db")), "no such SQLite file"),
        (spec_for("mysql://host/db"), "unsupported source URL"),
        (spec_for("postgresql://memmesh:secret@127.0.0.1:1/legacy"), "cannot connect to postgresql://memmesh:\\*\\*\\*@"),
    ]
    for spec, message in cases:
        with pytest.raises(InvalidInputError, match=message) as caught:
            import_legacy(mem.service, spec, principal=LOCAL_PRINCIPAL)
        assert "secret" not in str(caught.value)
    assert mem.stats().total == 0 and not any(marks(legacy_db).values())
    assert not (tmp_path / "missing.db").exists()


def test_a_source_that_cannot_be_marked_is_refused_up_front(mem: Memory, legacy_db: Path) -> None:
    with sqlite3.connect(legacy_db) as conn:  # legacy data exposed read-only, through a view
        conn.execute("CREATE VIEW agent_memories_v AS SELECT * FROM agent_memories")
    spec = spec_for(sqlite_url(legacy_db), table="agent_memories_v")
    with pytest.raises(InvalidInputError, match=r"cannot mark rows .*use --check-only"):
        import_legacy(mem.service, spec, principal=LOCAL_PRINCIPAL)
    assert mem.stats().total == 0
    assert import_legacy(mem.service, spec, check_only=True, principal=LOCAL_PRINCIPAL).totals.migrated == GOOD_ROWS


def test_one_namespace_without_a_tenant_column(mem: Memory, legacy_db: Path) -> None:
    report = import_legacy(
        mem.service, spec_for(sqlite_url(legacy_db), tenant_col=None, namespace="legacy/all", mark_col=None), principal=LOCAL_PRINCIPAL
    )
    assert [t.tenant for t in report.tenants] == [None] and report.tenants[0].namespace == "legacy/all"
    assert report.totals.migrated == GOOD_ROWS + 2  # the bad-tenant and no-tenant rows are fine here


@pytest.mark.postgres
def test_postgres_source_migrates_marks_and_refuses_bad_columns(mem: Memory, pg_server: PgServer) -> None:
    name = pg_server.create_database("legacy")
    try:
        pg_server.execute(
            name, "CREATE TABLE agent_memories (id bigint PRIMARY KEY, workspace_id text, content text, migrated_at timestamptz)"
        )
        for row in legacy_rows():
            pg_server.execute(name, "INSERT INTO agent_memories (id, workspace_id, content) VALUES (%s, %s, %s)", row)
        url = pg_server.dsn_for(name)
        with pytest.raises(InvalidInputError, match="--content-col 'body'"):
            import_legacy(mem.service, spec_for(url, content_col="body"), principal=LOCAL_PRINCIPAL)
        with pytest.raises(InvalidInputError, match="table 'nope' cannot be read"):
            import_legacy(mem.service, spec_for(url, table="nope"), principal=LOCAL_PRINCIPAL)

        check = import_legacy(mem.service, spec_for(url), check_only=True, principal=LOCAL_PRINCIPAL)
        assert check.totals.migrated == GOOD_ROWS and mem.stats().total == 0
        assert pg_server.execute(name, "SELECT count(*) FROM agent_memories WHERE migrated_at IS NOT NULL") == [(0,)]

        report = import_legacy(mem.service, spec_for(url, table="public.agent_memories"), batch_size=7, principal=LOCAL_PRINCIPAL)
        assert (report.totals.migrated, report.totals.failed) == (GOOD_ROWS, MALFORMED)
        assert {t.tenant: t.migrated for t in report.tenants if t.migrated} == TENANTS
        assert pg_server.execute(name, "SELECT count(*) FROM agent_memories WHERE migrated_at IS NOT NULL") == [(GOOD_ROWS,)]
        assert report.spot_check is not None and report.spot_check.found == report.spot_check.sampled == 3
        again = import_legacy(mem.service, spec_for(url, table="public.agent_memories"), principal=LOCAL_PRINCIPAL)
        assert again.totals.migrated == 0 and again.totals.skipped == GOOD_ROWS
    finally:
        pg_server.drop_database(name)
