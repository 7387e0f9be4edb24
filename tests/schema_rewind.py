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


def rewind(conn: Any, number: int, backend: str) -> None:
    """Drop the later migrations' tables and record schema ``number`` (``conn``: sqlite3 or psycopg, autocommit)."""
    cascade = " CASCADE" if backend == "postgres" else ""
    for table in tables_created_after(number, backend):
        conn.execute(f"DROP TABLE IF EXISTS {table}{cascade}")
    conn.execute(f"UPDATE meta SET value = '{int(number)}' WHERE key = 'schema_version'")
