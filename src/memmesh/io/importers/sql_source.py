"""Reading (and marking) rows of a legacy SQL table: SQLite via the stdlib, PostgreSQL via psycopg.

Identifiers from the command line are never pasted into SQL unchecked: the table is probed
with a quoted identifier and every column name is checked against the table's real columns
before any query uses it. A source opened ``read_only`` cannot be changed at all (SQLite
``mode=ro``; a PostgreSQL read-only session), which is what ``--check-only`` promises.
Driver errors become :class:`InvalidInputError` with the URL's password removed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from memmesh.clock import format_ts
from memmesh.errors import InvalidInputError
from memmesh.redact import redact_url
from memmesh.store.open import postgres_extra_missing
from memmesh.store.sqlite import path_from_url


class SqlSource(Protocol):
    """A legacy table's database, as the legacy importer needs it."""

    label: str

    def columns(self, table: str) -> list[str]: ...
    def null_key_rows(self, table: str, key: str, extra: Sequence[str]) -> list[tuple[Any, ...]]: ...
    def repeated_keys(self, table: str, key: str) -> dict[str, int]: ...
    def pages(self, table: str, key: str, columns: Sequence[str], size: int) -> Iterator[list[tuple[Any, ...]]]: ...
    def check_writable(self, table: str, column: str) -> None: ...
    def add_column(self, table: str, column: str) -> str: ...
    def mark(self, table: str, key: str, column: str, ids: Sequence[Any], at: datetime) -> int: ...
    def close(self) -> None: ...


def open_sql_source(url: str, *, read_only: bool) -> SqlSource:
    """Connect to the database a URL names; an unreachable one is a clear error, nothing else."""
    if url.startswith("sqlite://"):
        return SqliteSource(url, read_only=read_only)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresSource(url, read_only=read_only)
    raise InvalidInputError(f"unsupported source URL {redact_url(url)!r}: use sqlite:///path/to/file.db or postgresql://…")


def whole_keys(page: list[tuple[Any, ...]], last_key_rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """A full page with every row of its last key: the rows of that key the LIMIT cut off
    would otherwise be skipped by the next page's ``key > last`` (a key the table repeats)."""
    last = page[-1][0]
    return [row for row in page if row[0] != last] + last_key_rows or page


def _split(table: str) -> list[str]:
    parts = table.split(".")
    if not table or len(parts) > 2 or not all(parts):
        raise InvalidInputError(f"--table {table!r}: give a table name, optionally schema-qualified (schema.table)")
    return parts


class SqliteSource:
    """A SQLite file, opened without ever creating it (``mode=ro`` or ``mode=rw``)."""

    def __init__(self, url: str, *, read_only: bool) -> None:
        self.label = url
        path = path_from_url(url)
        if path == ":memory:" or not Path(path).is_file():
            raise InvalidInputError(f"cannot open {url}: no such SQLite file")
        try:
            self.conn = sqlite3.connect(f"file:{path}?mode={'ro' if read_only else 'rw'}", uri=True, isolation_level=None)
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise InvalidInputError(f"cannot open {url}: {exc}") from None

    @staticmethod
    def _ident(name: str) -> str:
        return ".".join('"' + part.replace('"', '""') + '"' for part in _split(name))

    def columns(self, table: str) -> list[str]:
        try:
            cursor = self.conn.execute(f"SELECT * FROM {self._ident(table)} LIMIT 0")
        except sqlite3.Error as exc:
            tables = [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
            listed = ", ".join(tables) or "none"
            raise InvalidInputError(f"table {table!r} cannot be read in {self.label} ({exc}); tables: {listed}") from None
        return [d[0] for d in cursor.description]

    def null_key_rows(self, table: str, key: str, extra: Sequence[str]) -> list[tuple[Any, ...]]:
        cols = ", ".join(self._ident(c) for c in extra) or "NULL"
        return self.conn.execute(f"SELECT {cols} FROM {self._ident(table)} WHERE {self._ident(key)} IS NULL").fetchall()

    def repeated_keys(self, table: str, key: str) -> dict[str, int]:
        """Each key value found on more than one row, with how many rows hold it."""
        k = self._ident(key)
        found = self.conn.execute(f"SELECT {k}, count(*) FROM {self._ident(table)} WHERE {k} IS NOT NULL GROUP BY {k} HAVING count(*) > 1")
        return {str(value): int(count) for value, count in found}

    def pages(self, table: str, key: str, columns: Sequence[str], size: int) -> Iterator[list[tuple[Any, ...]]]:
        """Rows with a key, in key order, a page at a time (keyset paging: no cursor is held open).
        A page holds every row of its last key (see :func:`whole_keys`), so a key repeated
        across the page boundary loses no row to the next page's ``> last``."""
        cols = ", ".join(self._ident(c) for c in [key, *columns])
        base = f"SELECT {cols} FROM {self._ident(table)} WHERE {self._ident(key)} IS NOT NULL"
        last: Any = None
        while True:
            if last is None:
                rows = self.conn.execute(f"{base} ORDER BY {self._ident(key)} LIMIT ?", (size,)).fetchall()
            else:
                rows = self.conn.execute(f"{base} AND {self._ident(key)} > ? ORDER BY {self._ident(key)} LIMIT ?", (last, size)).fetchall()
            if not rows:
                return
            if len(rows) == size:
                rows = whole_keys(rows, self.conn.execute(f"{base} AND {self._ident(key)} = ?", (rows[-1][0],)).fetchall())
            yield rows
            last = rows[-1][0]

    def check_writable(self, table: str, column: str) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(f"UPDATE {self._ident(table)} SET {self._ident(column)} = {self._ident(column)} WHERE 0")
        except sqlite3.Error as exc:
            raise InvalidInputError(f"cannot mark rows in {self.label} ({exc}); use --check-only to only report") from None
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def add_column(self, table: str, column: str) -> str:
        """Add a nullable TEXT column (memmesh's timestamps are ISO text in SQLite)."""
        try:
            self.conn.execute(f"ALTER TABLE {self._ident(table)} ADD COLUMN {self._ident(column)} TEXT")
        except sqlite3.Error as exc:
            raise InvalidInputError(f"cannot add column {column} to {table} in {self.label} ({exc}); nothing was written") from None
        return "TEXT"

    def mark(self, table: str, key: str, column: str, ids: Sequence[Any], at: datetime) -> int:
        sql = f"UPDATE {self._ident(table)} SET {self._ident(column)} = ? WHERE {self._ident(key)} = ? AND {self._ident(column)} IS NULL"
        stamp = format_ts(at)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            changed = sum(self.conn.execute(sql, (stamp, value)).rowcount for value in ids)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return changed

    def close(self) -> None:
        self.conn.close()


class PostgresSource:
    """A PostgreSQL database through psycopg; ``read_only`` makes the whole session read-only."""

    def __init__(self, url: str, *, read_only: bool) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise postgres_extra_missing("reading a PostgreSQL table needs psycopg", exc) from None

        self.label = redact_url(url)
        self._errors = psycopg.Error
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise InvalidInputError(f"cannot connect to {self.label}: {str(exc).strip().splitlines()[0]}") from None
        if read_only:
            self.conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")

    @staticmethod
    def _ident(name: str) -> Any:
        from psycopg import sql

        return sql.Identifier(*_split(name))

    def _run(self, query: Any, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(query, params or None)
        except self._errors as exc:
            raise InvalidInputError(f"{self.label}: {str(exc).strip().splitlines()[0]}") from None

    def columns(self, table: str) -> list[str]:
        from psycopg import sql

        try:
            cursor = self.conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(self._ident(table)))
        except self._errors as exc:
            raise InvalidInputError(f"table {table!r} cannot be read in {self.label}: {str(exc).strip().splitlines()[0]}") from None
        return [d.name for d in cursor.description or []]

    def null_key_rows(self, table: str, key: str, extra: Sequence[str]) -> list[tuple[Any, ...]]:
        from psycopg import sql

        cols = sql.SQL(", ").join(self._ident(c) for c in extra) if extra else sql.SQL("NULL")
        query = sql.SQL("SELECT {} FROM {} WHERE {} IS NULL").format(cols, self._ident(table), self._ident(key))
        return list(self._run(query).fetchall())

    def repeated_keys(self, table: str, key: str) -> dict[str, int]:
        """Each key value found on more than one row, with how many rows hold it."""
        from psycopg import sql

        query = sql.SQL("SELECT {k}, count(*) FROM {t} WHERE {k} IS NOT NULL GROUP BY {k} HAVING count(*) > 1").format(
            k=self._ident(key), t=self._ident(table)
        )
        return {str(value): int(count) for value, count in self._run(query).fetchall()}

    def pages(self, table: str, key: str, columns: Sequence[str], size: int) -> Iterator[list[tuple[Any, ...]]]:
        from psycopg import sql

        cols = sql.SQL(", ").join(self._ident(c) for c in [key, *columns])
        base = sql.SQL("SELECT {} FROM {} WHERE {} IS NOT NULL").format(cols, self._ident(table), self._ident(key))
        order = sql.SQL(" ORDER BY {} LIMIT %s").format(self._ident(key))
        after = sql.SQL(" AND {} > %s").format(self._ident(key))
        same = sql.SQL(" AND {} = %s").format(self._ident(key))
        last: Any = None
        while True:
            query, params = (base + order, (size,)) if last is None else (base + after + order, (last, size))
            rows = self._run(query, params).fetchall()
            if not rows:
                return
            if len(rows) == size:
                rows = whole_keys(rows, self._run(base + same, (rows[-1][0],)).fetchall())
            yield rows
            last = rows[-1][0]

    def check_writable(self, table: str, column: str) -> None:
        allowed = self._run("SELECT has_column_privilege(%s, %s, 'UPDATE')", (table, column)).fetchone()[0]
        if not allowed:
            raise InvalidInputError(f"{self.label}: this user may not update {table}.{column}; use --check-only to only report")
        from psycopg import sql

        # A no-op write with a timestamp: a mark column of the wrong type fails now, not after the import.
        probe = sql.SQL("UPDATE {} SET {} = %s WHERE false").format(self._ident(table), self._ident(column))
        self._run(probe, (datetime.now().astimezone(),))

    def add_column(self, table: str, column: str) -> str:
        """Add a nullable timestamptz column (``IF NOT EXISTS``: a concurrent run adding it too is fine)."""
        from psycopg import sql

        query = sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} timestamptz").format(self._ident(table), self._ident(column))
        try:
            self.conn.execute(query)
        except self._errors as exc:
            first = str(exc).strip().splitlines()[0]
            raise InvalidInputError(f"cannot add column {column} to {table} in {self.label}: {first}; nothing was written") from None
        return "timestamptz"

    def mark(self, table: str, key: str, column: str, ids: Sequence[Any], at: datetime) -> int:
        from psycopg import sql

        query = sql.SQL("UPDATE {} SET {} = %s WHERE {} = ANY(%s) AND {} IS NULL").format(
            self._ident(table), self._ident(column), self._ident(key), self._ident(column)
        )
        return int(self._run(query, (at, list(ids))).rowcount)

    def close(self) -> None:
        self.conn.close()


__all__ = ["SqlSource", "open_sql_source"]
