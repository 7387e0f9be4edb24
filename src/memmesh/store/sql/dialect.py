"""What differs between SQLite and PostgreSQL SQL, stated once so query text is written once.

Shared queries (:mod:`memmesh.store.sql.reads`, :mod:`memmesh.store.sql.writes`) are
written with ``?`` placeholders in the SQL both databases understand (``INSERT … ON
CONFLICT … DO UPDATE``, ``RETURNING``, row-value comparisons, ``TRUE``/``FALSE``); a
:class:`Dialect` turns them into the driver's placeholder style and supplies the pieces that
really differ: how timestamps, JSON, id lists, tags and vectors are bound and read back,
the insertion-order column, row locks, and the change-feed bookkeeping PostgreSQL needs.

For store modules of new features (audit, governance, bus tables): write the SQL once with
``?`` and run ``conn.execute(dialect.q(sql), params)`` on either backend; use
:meth:`Dialect.upsert` for insert-or-update, :meth:`Dialect.in_list` for "id in this list",
:meth:`Dialect.ts` / :meth:`Dialect.jsonb` to bind timestamps and JSON, and
:meth:`Dialect.load_ts` / :meth:`Dialect.load_json` to read them back. Each backend module
exposes its instance as ``DIALECT``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import BaseModel

from memmesh.clock import format_ts, parse_ts
from memmesh.store import vector_codec


@lru_cache(maxsize=2048)
def _format_style(sql: str) -> str:
    """``?`` → ``%s``, with literal ``%`` doubled (psycopg's format style). Cached: shared
    query text is a small set of constants, converted once each."""
    return sql.replace("%", "%%").replace("?", "%s")


def _dumps(value: Any, sort_keys: bool = False) -> str:
    if not value and type(value) in (list, dict):  # most rows' tags and metadata: json.dumps costs µs each
        return "[]" if type(value) is list else "{}"
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=sort_keys)


class Dialect:
    """The SQLite dialect (``?`` placeholders, text timestamps and JSON); the base of both."""

    name = "sqlite"
    rowid = "rowid"
    """The column that orders memories by insertion (SQLite's rowid, PostgreSQL's ``pos``)."""
    vector_column = "vector"
    tag_table = True
    """Tags live in the side table ``memory_tags`` (SQLite) rather than an array column."""
    for_update = ""
    """Appended to a read inside a write that must hold the row until commit."""
    skip_locked = ""
    """Appended to a read whose rows another node's gc may be taking at the same time."""
    feed_touch = ""
    """Extra ``SET`` of an upsert into a table the change feed reads by transaction id."""

    def q(self, sql: str) -> str:
        """Shared query text (``?`` placeholders) in this driver's placeholder style."""
        return sql

    # -- binding values ------------------------------------------------------------------

    def ts(self, moment: datetime | None) -> Any:
        """A timestamp as a bind value (SQLite: fixed-width RFC 3339 text, so text order is time order)."""
        return None if moment is None else format_ts(moment)

    def ts_text(self, text: str) -> Any:
        """A timestamp the caller holds as RFC 3339 text (a cursor) as a bind value."""
        return text

    def load_ts(self, value: Any) -> datetime:
        """A timestamp column's value as an aware datetime."""
        return parse_ts(value)

    def jsonb(self, value: Any, sort_keys: bool = False) -> Any:
        """A JSON document as a bind value (PostgreSQL ``jsonb`` columns)."""
        return _dumps(value, sort_keys)

    def model_json(self, model: BaseModel) -> Any:
        """A pydantic model (a version vector) as a ``jsonb`` bind value (SQLite: its compact JSON text)."""
        return model.model_dump_json()

    def json(self, value: Any) -> Any:
        """A JSON document as a bind value for PostgreSQL ``json`` columns (None stays NULL)."""
        return None if value is None else _dumps(value)

    def json_raw(self, text: str) -> Any:
        """Already serialised JSON text as a bind value for a ``json`` column."""
        return text

    def load_json(self, value: Any) -> Any:
        """A JSON column's value as Python data (SQLite stores text; NULL or empty is None).
        Empty lists and objects (most memories' tags and metadata) skip the parser: a recall
        reads ~40 rows of three JSON columns each."""
        if value == "[]":
            return []
        if value == "{}":
            return {}
        return json.loads(value) if value else None

    def tags(self, tags: Sequence[str]) -> Any:
        """The ``memories.tags`` column value."""
        return _dumps(list(tags))

    def vector(self, vector: np.ndarray) -> Any:
        """An embedding as a bind value for ``vector_column`` (SQLite: 8-bit codes with a scale,
        schema 16; see :mod:`memmesh.store.vector_codec`)."""
        return vector_codec.encode(vector)

    def load_vector(self, value: Any) -> np.ndarray:
        """A stored embedding as float32."""
        return vector_codec.decode(value)

    # -- query pieces --------------------------------------------------------------------

    def json_text(self, column: str, key: str) -> str:
        """SQL for the text of top-level ``key`` of the JSON in ``column`` (NULL when absent)."""
        return f"json_extract({column}, '$.{key}')"

    def in_list(self, expr: str) -> str:
        """``expr`` is one of a list bound as one parameter (see :meth:`list_param`)."""
        return f"{expr} IN (SELECT value FROM json_each(?))"

    def list_param(self, values: Iterable[str]) -> Any:
        return json.dumps(list(values))

    def tag_filter(self, alias: str, tags: Sequence[str]) -> tuple[list[str], list[Any]]:
        """Clauses and parameters: the memory ``alias`` carries every one of ``tags``."""
        clause = f"EXISTS (SELECT 1 FROM memory_tags t WHERE t.tag = ? AND t.memory_id = {alias}.id)"
        return [clause] * len(tags), list(tags)

    def unindexed(self, column: str) -> str:
        """``column`` written so the planner will not drive the query from its index (SQLite's
        unary ``+``); PostgreSQL plans from statistics and needs no hint."""
        return f"+{column}"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str], touch: str = "") -> str:
        """``INSERT`` of ``columns`` that updates every non-key column when ``key`` exists."""
        marks = ", ".join("?" * len(columns))
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key) + touch
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT ({', '.join(key)}) {action}"

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run shared ``sql`` once per row (one round trip where the driver can)."""
        if not rows:
            return
        if len(rows) == 1:
            conn.execute(self.q(sql), rows[0])
        else:
            conn.executemany(self.q(sql), rows)


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3: ``%s`` placeholders, native timestamps, ``jsonb``,
    ``text[]`` tags and pgvector. psycopg is imported when the dialect is made, so the
    SQLite path never needs it."""

    name = "postgres"
    rowid = "pos"
    vector_column = "embedding"
    tag_table = False
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"  # two nodes' gc share the work instead of archiving one memory twice
    feed_touch = ", txid = pg_current_xact_id()"  # the vector feed reads by transaction id

    def __init__(self) -> None:
        from psycopg.types.json import Json, Jsonb

        self._json = Json
        self._jsonb = Jsonb

    def q(self, sql: str) -> str:
        return _format_style(sql)

    def ts(self, moment: datetime | None) -> Any:
        return moment

    def ts_text(self, text: str) -> Any:
        return parse_ts(text)

    def load_ts(self, value: Any) -> datetime:
        return value if isinstance(value, datetime) else parse_ts(str(value))

    def jsonb(self, value: Any, sort_keys: bool = False) -> Any:
        return self._jsonb(value)

    def model_json(self, model: BaseModel) -> Any:
        return self._jsonb(model.model_dump(mode="json"))

    def json_text(self, column: str, key: str) -> str:
        return f"({column}->>'{key}')"

    def json(self, value: Any) -> Any:
        return None if value is None else self._json(value, dumps=_dumps)

    def json_raw(self, text: str) -> Any:
        return self._json(text, dumps=str)

    def load_json(self, value: Any) -> Any:
        return value  # psycopg decodes json and jsonb

    def tags(self, tags: Sequence[str]) -> Any:
        return list(tags)

    def vector(self, vector: np.ndarray) -> Any:
        """pgvector's ``halfvec`` (schema 16): half the bytes of ``vector``, same precision as SQLite."""
        from pgvector import HalfVector

        return HalfVector(vector_codec.to_half(vector))

    def load_vector(self, value: Any) -> np.ndarray:
        return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)

    def in_list(self, expr: str) -> str:
        return f"{expr} = ANY(?::text[])"

    def list_param(self, values: Iterable[str]) -> Any:
        return list(values)

    def tag_filter(self, alias: str, tags: Sequence[str]) -> tuple[list[str], list[Any]]:
        return ([f"{alias}.tags @> ?::text[]"], [list(tags)]) if tags else ([], [])

    def unindexed(self, column: str) -> str:
        return column

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """psycopg's executemany runs in pipeline mode: one round trip for the whole batch."""
        if not rows:
            return
        if len(rows) == 1:
            conn.execute(self.q(sql), rows[0])
            return
        with conn.cursor() as cur:
            cur.executemany(self.q(sql), rows)


SQLITE = Dialect()
