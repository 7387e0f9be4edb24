"""A SQLite store from before the n-gram index (schema 4) is indexed when opened, so words of
scripts written without spaces (issue 19) are found in old stores too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.conftest import keyword_settings
from tests.schema_rewind import rewind

from memmesh import Memory

WIFI = "東京オフィスのWi-Fiパスワードは毎月変わります"
PETS = "我喜欢猫和狗"


def _ids(hits: list) -> list[str]:
    return [h.memory.id for h in hits]


# The search, ranking, update and hybrid cases run on both backends in
# tests/store/test_cjk_backends.py; this file keeps what only SQLite's history has.


@pytest.mark.parametrize("content", [WIFI, PETS])
def test_a_schema_4_store_is_indexed_when_it_is_opened(tmp_path: Path, content: str) -> None:
    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        stored = mem.add(content)
    with sqlite3.connect(db) as conn:  # back to schema 4: no n-gram index at all
        for trigger in ("memories_cjk_insert", "memories_cjk_delete", "memories_cjk_update"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE memories_cjk")
        rewind(conn, 7, "sqlite")  # what the migrations after 7 made (tables, added columns) goes
        # and what schemas 6-7 added (6 is a no-op on SQLite; 7 is federation), so the file is truly schema 4
        schema_7 = ("DROP TABLE peers", "DROP TABLE conflicts", "DROP INDEX links_seq", "DROP INDEX agents_seq")
        for statement in schema_7:
            conn.execute(statement)
        conn.execute("ALTER TABLE agents DROP COLUMN seq")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        word = "東京" if content == WIFI else "猫"
        assert _ids(mem.search(word)) == [stored.id]
