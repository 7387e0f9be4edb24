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


def added_after(number: int, backend: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The columns (table, column) the ``backend`` migrations after ``number`` add to older
    tables with a plain ``ADD COLUMN`` (which cannot run twice), and the indexes those same
    migrations create (an index on such a column must go before the column)."""
    later = [sql for n, _name, sql in load_migrations(backend) if n > number]
    plain = r"ALTER TABLE (\w+) ADD COLUMN (?!IF NOT EXISTS)(\w+)"
    adding = [sql for sql in later if re.search(plain, sql, flags=re.IGNORECASE)]
    index = r"CREATE (?:UNIQUE )?INDEX (?:IF NOT EXISTS )?(\w+)"
    indexes = [name for sql in adding for name in re.findall(index, sql, flags=re.IGNORECASE)]
    columns = [pair for sql in adding for pair in re.findall(plain, sql, flags=re.IGNORECASE)]
    return indexes, columns


def drop_triggers(conn: Any, number: int, backend: str) -> None:
    """Drop the triggers and trigger functions later migrations put on older tables (schema 21
    feeds bus rows to the mesh): SQLite refuses to drop a column a trigger names."""
    later = [sql for n, _name, sql in load_migrations(backend) if n > number]
    for sql in later:
        for trigger, table in re.findall(r"CREATE TRIGGER (\w+)\s+(?:BEFORE|AFTER) INSERT ON (\w+)", sql):
            on = f" ON {table}" if backend == "postgres" else ""
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}{on}")
        for function in re.findall(r"CREATE FUNCTION (\w+)\(", sql):
            conn.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")


def rewind(conn: Any, number: int, backend: str) -> None:
    """Drop the later migrations' triggers, tables, indexes and added columns and record schema
    ``number`` (``conn``: sqlite3 or psycopg, autocommit)."""
    drop_triggers(conn, number, backend)
    cascade = " CASCADE" if backend == "postgres" else ""
    created = tables_created_after(number, backend)
    for table in created:
        conn.execute(f"DROP TABLE IF EXISTS {table}{cascade}")
    indexes, columns = added_after(number, backend)
    for index in indexes:
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    for table, column in columns:
        if table not in created:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute(f"UPDATE meta SET value = '{int(number)}' WHERE key = 'schema_version'")
