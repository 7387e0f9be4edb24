"""Words of scripts written without spaces are found on both backends (issue 19): the same
cases on SQLite (schema 5 n-gram FTS5 index) and PostgreSQL (schema 16 ``memories.cjk``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from memmesh import Memory
from memmesh.recall import segment
from schema_rewind import rewind

WIFI = "東京オフィスのWi-Fiパスワードは毎月変わります"
PETS = "我喜欢猫和狗"
MEETING = "大阪の会議は火曜日です"
THAI = "ประชุมทีมทุกวันจันทร์"
ENGLISH = "The Tokyo office wifi is slow"


def _ids(hits: list) -> list[str]:
    return [h.memory.id for h in hits]


def test_keyword_search_finds_words_inside_unsegmented_runs(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(backend_url)
    wifi, pets, meeting, thai, english = mem.add_many([WIFI, PETS, MEETING, THAI, ENGLISH])
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
    assert _ids(mem.search("オフィス東京")) == [wifi.id]
    assert set(_ids(mem.search("東京 office"))) == {wifi.id, english.id}
    assert _ids(mem.recall("東京のパスワード").hits)[:1] == [wifi.id]  # keyword-only recall
    assert _ids(mem.recall("会議はいつ", touch=False).hits)[:1] == [meeting.id]


def test_ranking_prefers_the_memory_sharing_more_pairs(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(backend_url)
    one, both = mem.add_many(["東京は晴れです", "東京のパスワードを変更しました"])
    hits = mem.search("東京のパスワード")
    assert _ids(hits) == [both.id, one.id]
    assert hits[0].score > hits[1].score


def test_updates_deletes_titles_and_tags_keep_the_index_right(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(backend_url)
    pets = mem.add(PETS)
    titled = mem.add("notes", title="会議メモ", tags=["東京"])
    assert _ids(mem.search("会議")) == [titled.id] and _ids(mem.search("東京")) == [titled.id]
    mem.update(pets.id, content="我喜欢鸟")
    assert mem.search("猫") == [] and _ids(mem.search("鸟")) == [pets.id]
    mem.delete(pets.id)
    assert mem.search("鸟") == []
    again = mem.add(PETS)
    assert _ids(mem.search("猫")) == [again.id]


def test_hybrid_recall_finds_them_on_both_backends(backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path) -> None:
    mem = open_memory(backend_url, embeddings={"provider": "minilm"})
    wifi, pets, meeting = mem.add_many([WIFI, PETS, MEETING])
    mem.add_many(["The quarterly report is due on March 31", "Deploys happen every Tuesday"])
    for query, expected in (("東京", wifi), ("猫", pets), ("会議はいつ", meeting)):
        hits = mem.recall(query, top_k=5, explain=True, touch=False).hits
        assert hits and hits[0].memory.id == expected.id, (query, [h.memory.content for h in hits])
        assert hits[0].explain is not None and hits[0].explain["keyword"] > 0


@pytest.mark.parametrize(
    "text",
    [WIFI, PETS, MEETING, THAI, "mixed 日本語テキスト and English, 한국어 문장", "𠀋𠂉 rare Han", "no such script here", ""],
)
def test_postgres_ngrams_are_the_python_ones(pg_database: str, open_memory: Callable[..., Memory], text: str) -> None:
    """The SQL function the PostgreSQL trigger calls yields the lexemes of recall/segment.py."""
    open_memory(pg_database).close()  # creates the schema
    with psycopg.connect(pg_database) as conn:
        row = conn.execute("SELECT tsvector_to_array(memmesh_ngrams(NULL, %s, ARRAY['タグ'])) ", (text,)).fetchone()
    assert row is not None
    unigrams = segment.unigrams(None, text, "タグ").split()
    bigrams = [b for b in segment.bigrams(None, text, "タグ").split() if b != "x"]
    assert sorted(row[0]) == sorted({"u" + u for u in unigrams} | {"b" + b for b in bigrams})


def test_a_postgres_store_from_before_schema_16_is_indexed_when_opened(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(pg_database)
    wifi = mem.add(WIFI)
    mem.close()
    with psycopg.connect(pg_database, autocommit=True) as conn:  # back to schema 15: no n-gram column
        conn.execute("DROP TRIGGER memories_cjk ON memories")
        conn.execute("ALTER TABLE memories DROP COLUMN cjk")
        conn.execute("DROP FUNCTION memmesh_memories_cjk()")
        conn.execute("DROP FUNCTION memmesh_ngrams(text, text, text[])")
        rewind(conn, 15, "postgres")
    mem = open_memory(pg_database)
    assert _ids(mem.search("東京")) == [wifi.id]


def test_a_giant_word_finds_nothing_and_fails_nothing(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    """PostgreSQL refuses a text-search word of 2 KB or more; such a query word matches no
    memory on either backend instead of failing the search."""
    mem = open_memory(backend_url)
    wifi = mem.add(WIFI)
    assert mem.search("x" * 3000) == []
    assert _ids(mem.search("東京 " + "y" * 3000)) == [wifi.id]
    assert _ids(mem.recall("東京 " + "z" * 3000, touch=False).hits) == [wifi.id]
