"""A legacy SQL table whose id column repeats a value. Before: the first row of the id came
back from the database was imported and the others failed ("appears more than once"), but
the mark by id then marked the failed rows too (a re-run reported them "already migrated"
and exited 0), and a repeat that straddled a page boundary lost its later rows to the next
page's ``id > last`` without a word (exit 0). Now every row of a repeated id fails, naming
the id and how many rows share it, is left unmarked, and the answer is the same for every
page size; fixing the ids and re-running migrates them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.importers.conftest import PgServer, sqlite_url

from memmesh import Memory
from memmesh.io.importers import LegacyTable, import_legacy
from memmesh.io.importers.base import scoped_id
from memmesh.model import LOCAL_PRINCIPAL

ROWS = [(1, "a", "first row"), (2, "a", "row two"), (2, "b", "row two again, another text"), (3, "a", "row three")]
SAYS = "id 2 is on 2 rows of agent_memories; an id must name one row, so this row is neither imported nor marked"
FLAGS = ("--table", "agent_memories", "--tenant-col", "workspace_id", "--mark-col", "migrated_at", "--add-mark-column")


def legacy_table(path: Path) -> Path:
    with sqlite3.connect(path) as conn:  # no key constraint: the legacy table never had one
        conn.execute("CREATE TABLE agent_memories (id INTEGER, workspace_id TEXT, content TEXT)")
        conn.executemany("INSERT INTO agent_memories VALUES (?, ?, ?)", ROWS)
    conn.close()
    return path


def marked(path: Path) -> list[tuple[int, str, bool]]:
    with sqlite3.connect(path) as conn:
        found = [(i, text, stamp is not None) for i, text, stamp in conn.execute("SELECT id, content, migrated_at FROM agent_memories")]
    conn.close()
    return sorted(found)


def test_cli_fails_every_row_of_a_repeated_id_unmarked_and_rerun_after_the_fix(cli_in_process: Any, tmp_path: Path) -> None:
    cli, path = cli_in_process, legacy_table(tmp_path / "legacy.db")
    for _ in range(2):  # a re-run answers the same: nothing of id 2 was marked
        run = cli("import", sqlite_url(path), *FLAGS, "--batch-size", "2", "--json")
        assert run.code == 1, run
        report = json.loads(run.out)
        assert [(f["id"], f["tenant"]) for f in report["failures"]] == [("2", "a"), ("2", "b")], report
        assert all(f["reason"].startswith(SAYS) for f in report["failures"]), report["failures"]
        assert report["totals"]["failed"] == 2
    unmarked = [(2, "row two", False), (2, "row two again, another text", False)]
    assert marked(path) == [(1, "first row", True), *unmarked, (3, "row three", True)]
    stored = json.loads(cli("list", "--json").out)["items"]
    assert sorted(m["content"] for m in stored) == ["first row", "row three"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE agent_memories SET id = 4 WHERE content = 'row two again, another text'")
    conn.close()
    fixed = cli("import", sqlite_url(path), *FLAGS, "--batch-size", "2", "--json")
    assert fixed.code == 0 and json.loads(fixed.out)["totals"]["added"] == 2, fixed
    assert all(stamp for *_, stamp in marked(path))


@pytest.mark.parametrize("batch_size", [1, 2, 3, 500])
def test_the_answer_does_not_depend_on_where_a_page_ends(mem: Memory, tmp_path: Path, batch_size: int) -> None:
    path = legacy_table(tmp_path / "legacy.db")
    spec = LegacyTable(url=sqlite_url(path), table="agent_memories", tenant_col="workspace_id")
    report = import_legacy(mem.service, spec, batch_size=batch_size, principal=LOCAL_PRINCIPAL)
    assert (report.totals.added, report.totals.failed) == (2, 2)
    assert sorted(f.id for f in report.failures) == ["2", "2"]
    assert all(mem.service.store.get(scoped_id("legacy:agent_memories", f"workspace:{t}", "2")) is None for t in "ab")
    assert len(mem.list(limit=10).items) == 2


@pytest.mark.postgres
def test_postgres_source_fails_a_repeated_id_across_pages(mem: Memory, pg_server: PgServer) -> None:
    name = pg_server.create_database("legacy")
    try:
        pg_server.execute(name, "CREATE TABLE agent_memories (id bigint, workspace_id text, content text, migrated_at timestamptz)")
        for row in ROWS:
            pg_server.execute(name, "INSERT INTO agent_memories (id, workspace_id, content) VALUES (%s, %s, %s)", row)
        spec = LegacyTable(url=pg_server.dsn_for(name), table="agent_memories", tenant_col="workspace_id", mark_col="migrated_at")
        report = import_legacy(mem.service, spec, batch_size=2, principal=LOCAL_PRINCIPAL)
        assert (report.totals.added, report.totals.failed) == (2, 2)
        assert all(f.id == "2" and f.reason.startswith(SAYS) for f in report.failures), report.failures
        rows = pg_server.execute(name, "SELECT id, migrated_at IS NOT NULL FROM agent_memories ORDER BY id, content")
        assert rows == [(1, True), (2, False), (2, False), (3, True)]
    finally:
        pg_server.drop_database(name)
