"""The shared-SQL helpers new store modules use: one statement text (``?`` placeholders) runs
on both backends through ``DIALECT.q``, ``upsert``, ``in_list`` and the value binders."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from memmesh.store import open_store
from memmesh.store.sql.dialect import Dialect


@pytest.fixture
def conn_and_dialect(backend_url: str) -> Iterator[tuple[Any, Dialect]]:
    """A plain driver connection to a new memmesh store, and that backend's dialect."""
    open_store(backend_url).close()  # creates the schema
    if backend_url.startswith("sqlite"):
        from memmesh.store.sqlite import DIALECT, path_from_url

        conn: Any = sqlite3.connect(path_from_url(backend_url), isolation_level=None)
        yield conn, DIALECT
    else:
        import psycopg

        from memmesh.store.postgres import DIALECT as PG_DIALECT

        conn = psycopg.connect(backend_url, autocommit=True)
        yield conn, PG_DIALECT
    conn.close()


def test_one_statement_text_runs_on_both_backends(conn_and_dialect: tuple[Any, Dialect]) -> None:
    conn, d = conn_and_dialect
    conn.execute("CREATE TABLE feature_rows (id TEXT PRIMARY KEY, at TEXT, doc TEXT, n INTEGER)")
    if d.name == "postgres":  # the column types each backend binds natively
        conn.execute("ALTER TABLE feature_rows ALTER COLUMN at TYPE timestamptz USING at::timestamptz")
        conn.execute("ALTER TABLE feature_rows ALTER COLUMN doc TYPE jsonb USING doc::jsonb")
    moment = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)
    upsert = d.q(d.upsert("feature_rows", ("id", "at", "doc", "n"), ("id",)))
    conn.execute(upsert, ("a", d.ts(moment), d.jsonb({"k": "ü"}), 1))
    conn.execute(upsert, ("a", d.ts(moment), d.jsonb({"k": "v"}), 2))  # the same key: updated, not doubled
    conn.execute(upsert, ("b", d.ts(moment), d.jsonb({}), 3))
    rows = conn.execute(
        d.q(f"SELECT id, at, doc, n FROM feature_rows WHERE {d.in_list('id')} AND id LIKE 'a%' ORDER BY id"), (d.list_param(["a", "b"]),)
    ).fetchall()
    assert [(r[0], d.load_ts(r[1]), d.load_json(r[2]), r[3]) for r in rows] == [("a", moment, {"k": "v"}, 2)]


def test_q_converts_placeholders_and_keeps_literal_percent() -> None:
    from memmesh.store.postgres import DIALECT as PG_DIALECT
    from memmesh.store.sqlite import DIALECT

    text = "SELECT 1 FROM t WHERE a = ? AND b LIKE 'x%' AND c = ?"
    assert DIALECT.q(text) == text
    assert PG_DIALECT.q(text) == "SELECT 1 FROM t WHERE a = %s AND b LIKE 'x%%' AND c = %s"
