"""Keyword search in scripts written without spaces (issue 19): Japanese, Chinese, Thai words
are found inside the runs that FTS5's word tokenizer keeps whole."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import keyword_settings

from memmesh import Memory

WIFI = "東京オフィスのWi-Fiパスワードは毎月変わります"
PETS = "我喜欢猫和狗"
MEETING = "大阪の会議は火曜日です"
THAI = "ประชุมทีมทุกวันจันทร์"


def _ids(hits: list) -> list[str]:
    return [h.memory.id for h in hits]


def test_keyword_search_finds_words_inside_unsegmented_runs(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'kw.db'}", keyword_settings(tmp_path)) as mem:
        wifi, pets, meeting, thai, english = mem.add_many([WIFI, PETS, MEETING, THAI, "The Tokyo office wifi is slow"])
        assert _ids(mem.search("東京")) == [wifi.id]
        assert _ids(mem.search("パスワード")) == [wifi.id]
        assert _ids(mem.search("毎月")) == [wifi.id]
        assert _ids(mem.search("Wi-Fi")) == [wifi.id]  # latin glued to a Japanese run
        assert _ids(mem.search("猫")) == [pets.id]  # one-character word
        assert _ids(mem.search("会議")) == [meeting.id]
        assert _ids(mem.search("ทีม")) == [thai.id]
        assert _ids(mem.search("wifi")) == [english.id]
        assert mem.search("京都") == []  # characters present, but not adjacent in that order
        assert mem.search("京東") == []
        assert _ids(mem.search("オフィス東京")) == [wifi.id]  # both of its words are in there
        assert set(_ids(mem.search("東京 office"))) == {wifi.id, english.id}
        assert _ids(mem.recall("東京のパスワード").hits)[:1] == [wifi.id]  # keyword-only recall


def test_updates_and_deletes_keep_the_ngram_index_right(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'kw.db'}", keyword_settings(tmp_path)) as mem:
        pets = mem.add(PETS)
        titled = mem.add("notes", title="会議メモ", tags=["東京"])
        assert _ids(mem.search("会議")) == [titled.id] and _ids(mem.search("東京")) == [titled.id]
        mem.update(pets.id, content="我喜欢鸟")
        assert mem.search("猫") == [] and _ids(mem.search("鸟")) == [pets.id]
        mem.delete(pets.id)
        assert mem.search("鸟") == []
        again = mem.add(PETS)
        assert _ids(mem.search("猫")) == [again.id]


def test_hybrid_recall_finds_them_too(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    wifi, pets, meeting = mem.add_many([WIFI, PETS, MEETING])
    mem.add_many(["The quarterly report is due on March 31", "Deploys happen every Tuesday"])
    for query, expected in (("東京", wifi), ("猫", pets), ("会議はいつ", meeting)):
        hits = mem.recall(query, top_k=5, explain=True, touch=False).hits
        assert hits and hits[0].memory.id == expected.id, (query, [h.memory.content for h in hits])
        assert hits[0].explain is not None and hits[0].explain["keyword"] > 0


@pytest.mark.parametrize("content", [WIFI, PETS])
def test_a_schema_4_store_is_indexed_when_it_is_opened(tmp_path: Path, content: str) -> None:
    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        stored = mem.add(content)
    with sqlite3.connect(db) as conn:  # back to schema 4: no n-gram index at all
        for trigger in ("memories_cjk_insert", "memories_cjk_delete", "memories_cjk_update"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE memories_cjk")
        # and what schemas 6-7 added (6 is a no-op on SQLite; 7 is federation), so the file is truly schema 4
        schema_7 = ("DROP TABLE peers", "DROP TABLE conflicts", "DROP INDEX links_seq", "DROP INDEX agents_seq")
        for statement in (*schema_7, *_later_tables_dropped()):
            conn.execute(statement)
        conn.execute("ALTER TABLE agents DROP COLUMN seq")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        word = "東京" if content == WIFI else "猫"
        assert _ids(mem.search(word)) == [stored.id]


def _later_tables_dropped() -> list[str]:
    """DROP TABLE for every table the migrations after 7 create (audit, governance, bus,
    sessions, …), read from the shipped migrations so a new one cannot break this test."""
    from memmesh.store.migrations import load_migrations

    names: list[str] = []
    for number, _name, sql in load_migrations("sqlite"):
        if number > 7:
            names += re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", sql, flags=re.IGNORECASE)
    return [f"DROP TABLE {name}" for name in names]
