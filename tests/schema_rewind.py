"""Rewind a store's schema number for upgrade tests, so the later migrations can run again.

Upgrade tests make a file look like an older schema (``schema_version`` set back); the
migrations after it then run again on open, and those that create tables would fail on
tables already there. The tables are read from the shipped migrations, so a new migration
cannot break these tests."""

from __future__ import annotations

import re
from typing import Any

from memmesh.store.migrations import load_migrations


def tables_created_after(number: int, backend: str) -> list[str]:
    """The tables the ``backend`` migrations after ``number`` create."""
    return [
        name
        for n, _name, sql in load_migrations(backend)
        if n > number
        for name in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", sql, flags=re.IGNORECASE)
    ]


FIRST_ALTERING = 21
"""The first migration that adds columns, indexes and triggers to tables of earlier ones without
``IF NOT EXISTS`` (bus feed): from it on, a rewind undoes them so the migration can run again.
Earlier migrations that alter tables are idempotent and keep the data they convert."""


def undo_columns(conn: Any, number: int, backend: str) -> None:
    """Undo what later migrations added to existing tables (schema 21 adds columns, indexes,
    triggers and a trigger function): triggers and indexes first, then the columns."""
    later = [sql for n, _name, sql in load_migrations(backend) if n > number and n >= FIRST_ALTERING]
    for sql in later:
        for table_trigger in re.findall(r"CREATE TRIGGER (\w+)\s+(?:BEFORE|AFTER) INSERT ON (\w+)", sql):
            on = f" ON {table_trigger[1]}" if backend == "postgres" else ""
            conn.execute(f"DROP TRIGGER IF EXISTS {table_trigger[0]}{on}")
        for function in re.findall(r"CREATE FUNCTION (\w+)\(", sql):
            conn.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
        for index in re.findall(r"CREATE INDEX (\w+)", sql):
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        for table, column in re.findall(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", sql):
            if table not in tables_created_after(number, backend):
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


def rewind(conn: Any, number: int, backend: str) -> None:
    """Drop the later migrations' tables and record schema ``number`` (``conn``: sqlite3 or psycopg, autocommit)."""
    undo_columns(conn, number, backend)
    cascade = " CASCADE" if backend == "postgres" else ""
    for table in tables_created_after(number, backend):
        conn.execute(f"DROP TABLE IF EXISTS {table}{cascade}")
    conn.execute(f"UPDATE meta SET value = '{int(number)}' WHERE key = 'schema_version'")
