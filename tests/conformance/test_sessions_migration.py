"""Schema 27 keys sessions by namespace instead of by id, on both backends: sessions started
under schema 26 keep their turns and their counter, and afterwards the same id can start a
second session under another root."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from tests.schema_rewind import rewind

from memmesh import Memory
from memmesh.store.migrations import load_migrations

OLD_TABLE = (
    "CREATE TABLE session_turns_26 (session_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, turns INTEGER NOT NULL DEFAULT 0, "
    "created_at {real} NOT NULL, updated_at {real} NOT NULL)"
)


def _as_schema_26(conn: Any, backend: str) -> None:
    """What schema 26 held: ``session_turns`` keyed by ``session_id`` alone, rows kept (and
    nothing of the later migrations, which run again on open)."""
    rewind(conn, 27, backend)
    real = "REAL" if backend == "sqlite" else "DOUBLE PRECISION"
    conn.execute(OLD_TABLE.format(real=real))
    conn.execute("INSERT INTO session_turns_26 SELECT session_id, namespace, turns, created_at, updated_at FROM session_turns")
    conn.execute("DROP TABLE session_turns")
    conn.execute("ALTER TABLE session_turns_26 RENAME TO session_turns")
    if backend == "postgres":  # the primary key's name, as 0010 made it
        conn.execute("ALTER INDEX session_turns_26_pkey RENAME TO session_turns_pkey")
    conn.execute("UPDATE meta SET value = '26' WHERE key = 'schema_version'")


def test_schema_27_keeps_old_sessions_and_frees_their_ids_per_root(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    assert max(n for n, _name, _sql in load_migrations("sqlite")) >= 27
    mem = open_memory(backend_url)
    mem.session_append("chat-1", content="we picked the blue logo", namespace="team/a")
    mem.session_append("chat-1", role="assistant", content="blue it is")
    mem.close()
    if backend_url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "conformance.db", isolation_level=None) as conn:
            _as_schema_26(conn, "sqlite")
    else:
        with psycopg.connect(backend_url, autocommit=True) as conn:
            _as_schema_26(conn, "postgres")

    mem = open_memory(backend_url)  # opening migrates
    assert mem.service.store.schema_version >= 27
    assert [(s.namespace, s.turns) for s in mem.session_list()] == [("team/a/chat-1", 2)]
    assert mem.session_append("chat-1", content="and the red banner").turn == 3  # the counter came along
    assert mem.session_append("chat-1", content="another team's chat", namespace="team/b").turn == 1
    found = mem.session_rehydrate("chat-1", namespace="team/a")
    assert [t.turn for t in found.recent] == [1, 2, 3] and "another team" not in found.context
