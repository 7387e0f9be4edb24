"""SQLite backend: one file, WAL, FTS5, safe for many processes writing at once.

Concurrency model (after datasette): every thread reads on its own connection; writes go
through one writer connection per process, inside ``BEGIN IMMEDIATE`` so the file lock is
taken before anything is read, which rules out the upgrade deadlock of deferred
transactions. ``busy_timeout`` makes other processes wait for the lock; a short retry loop
covers the rare ``SQLITE_BUSY`` that bypasses the busy handler (e.g. during checkpoints),
so "database is locked" never reaches a user while the timeout lasts.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from memmesh.clock import format_ts, new_id, parse_ts
from memmesh.errors import CorruptDatabaseError, InvalidInputError, NotFoundError, StorageError, UnavailableError
from memmesh.model import (
    Agent,
    ApiKey,
    ArchivedMemory,
    ArchiveStats,
    Conflict,
    HistoryEntry,
    Link,
    Memory,
    NamespaceCount,
    PeerState,
    Stats,
    StoredApiKey,
    TierCount,
    Tombstone,
)
from memmesh.recall import segment
from memmesh.redact import redact_url
from memmesh.store.base import VISIBLE_LINK, Changes, Filter, VectorChanges, VectorRow, cut_page

APP_ID = "memmesh"
SQLITE_HEADER = b"SQLite format 3\x00"
MEMORY_COLUMNS = (
    "id, namespace, title, content, tier, kind, tags, priority, confidence, source, agent_id, metadata, "
    "created_at, updated_at, expires_at, valid_from, valid_to, access_count, last_accessed_at, content_hash, version"
)
_TS_FIELDS = ("created_at", "updated_at", "expires_at", "valid_from", "valid_to", "last_accessed_at")


def load_migrations() -> list[tuple[int, str, str]]:
    """The numbered SQL migrations shipped in the package, in order: (number, name, sql)."""
    folder = resources.files("memmesh.store.migrations") / "sqlite"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


MIGRATIONS = load_migrations()
LATEST_SCHEMA = MIGRATIONS[-1][0]


def path_from_url(url: str) -> str:
    """``sqlite:///abs/path`` or ``sqlite:///:memory:`` → a path for ``sqlite3.connect``.

    ``~`` is expanded and a relative path made absolute (against the working directory), so
    every message names the exact file looked at and no literal ``./~/…`` folder is made.
    """
    rest = url[len("sqlite://") :]
    if rest in ("/:memory:", ":memory:", "/"):
        return ":memory:"
    if not rest.startswith("/"):
        raise InvalidInputError(f"bad SQLite URL {redact_url(url)!r}: write sqlite:///relative.db or sqlite:////abs/path.db")
    return str(Path(rest[1:]).expanduser().absolute())


def _ts(value: datetime | None) -> str | None:
    return format_ts(value) if value is not None else None


def memory_to_row(memory: Memory) -> dict[str, Any]:
    """Flatten a Memory into column values."""
    data = memory.model_dump(mode="python")
    for name in _TS_FIELDS:
        data[name] = _ts(data[name])
    data["tier"] = memory.tier.value
    data["kind"] = memory.kind.value
    data["tags"] = json.dumps(memory.tags, ensure_ascii=False)
    data["metadata"] = json.dumps(memory.metadata, ensure_ascii=False)
    data["version"] = memory.version.model_dump_json()
    return data


def row_to_memory(row: sqlite3.Row | tuple) -> Memory:
    """Build a Memory from a row selected with MEMORY_COLUMNS (in that order)."""
    (
        mid,
        ns,
        title,
        content,
        tier,
        kind,
        tags,
        priority,
        confidence,
        source,
        agent_id,
        metadata,
        created_at,
        updated_at,
        expires_at,
        valid_from,
        valid_to,
        access_count,
        last_accessed_at,
        content_hash,
        version,
    ) = tuple(row)[:21]
    return Memory.model_validate(
        {
            "id": mid,
            "namespace": ns,
            "title": title,
            "content": content,
            "tier": tier,
            "kind": kind,
            "tags": json.loads(tags),
            "priority": priority,
            "confidence": confidence,
            "source": source,
            "agent_id": agent_id,
            "metadata": json.loads(metadata),
            "created_at": created_at,
            "updated_at": updated_at,
            "expires_at": expires_at,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "access_count": access_count,
            "last_accessed_at": last_accessed_at,
            "content_hash": content_hash,
            "version": json.loads(version),
        }
    )


def filter_sql(flt: Filter, alias: str = "m", namespace_index: bool = True) -> tuple[str, list[Any]]:
    """WHERE clauses and parameters for a Filter over the memories table.

    ``namespace_index=False`` writes the namespace test as ``+namespace`` so SQLite will not
    drive the query from the namespace index (better when the subtree is large and rows are
    wanted in time order).
    """
    clauses: list[str] = []
    params: list[Any] = []
    if not flt.include_expired:
        clauses.append(f"({alias}.expires_at IS NULL OR {alias}.expires_at > ?)")
        params.append(format_ts(flt.now))
    for roots in ([flt.namespace] if flt.namespace else None, flt.scopes):
        if roots is not None:
            # Each root itself or anything below it; '0' is the character after '/'.
            col = f"{alias}.namespace" if namespace_index else f"+{alias}.namespace"
            subtree = f"({col} = ? OR ({col} > ? AND {col} < ?))"
            clauses.append("(" + (" OR ".join([subtree] * len(roots)) or "0") + ")")
            for root in roots:
                params += [root, root + "/", root + "0"]
    for tag in flt.tags:
        clauses.append(f"EXISTS (SELECT 1 FROM memory_tags t WHERE t.tag = ? AND t.memory_id = {alias}.id)")
        params.append(tag)
    for column in ("tier", "kind", "agent_id"):
        value = getattr(flt, column)
        if value is not None:
            clauses.append(f"{alias}.{column} = ?")
            params.append(value)
    if flt.since is not None:
        clauses.append(f"{alias}.created_at >= ?")
        params.append(format_ts(flt.since))
    if flt.until is not None:
        clauses.append(f"{alias}.created_at < ?")
        params.append(format_ts(flt.until))
    if flt.as_of is not None:
        moment = format_ts(flt.as_of)
        clauses.append(f"({alias}.valid_from IS NULL OR {alias}.valid_from <= ?) AND ({alias}.valid_to IS NULL OR {alias}.valid_to > ?)")
        params += [moment, moment]
    if flt.ids is not None:
        clauses.append(f"{alias}.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(flt.ids)))
    return (" AND ".join(clauses) or "1"), params


def fts_expression(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression that ORs the quoted terms (quotes make any token literal)."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


_MAIN_MATCH = "SELECT rowid, bm25(memories_fts, 2.0, 1.0, 1.5) AS rank FROM memories_fts WHERE memories_fts MATCH ?"


def _match_source(terms: Sequence[str], with_grams: bool) -> tuple[str, list[Any]]:
    """A query yielding (rowid, rank) for every memory a term matches, and its parameters:
    the word index, summed with the n-gram index of scripts written without spaces when the
    store holds such text."""
    grams = segment.match_expression(terms) if with_grams else None
    if grams is None:
        return _MAIN_MATCH, [fts_expression(terms)]
    return (
        f"SELECT rowid, sum(rank) AS rank FROM ({_MAIN_MATCH} UNION ALL "
        "SELECT rowid, bm25(memories_cjk) AS rank FROM memories_cjk WHERE memories_cjk MATCH ?) GROUP BY rowid",
        [fts_expression(terms), grams],
    )


GROUP_LIMIT = 64
"""Most callers whose writes share one COMMIT."""


class _Batch:
    """One group transaction: how many callers' units it holds, and how its commit went."""

    def __init__(self) -> None:
        self.members = 0
        self.error: BaseException | None = None
        self.done = threading.Event()


def _translate(exc: BaseException, path: str) -> BaseException:
    """Driver errors become memmesh errors where they enter; everything else passes through."""
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in str(exc) or "busy" in str(exc):
            return UnavailableError(f"database {path} is busy: {exc}; try again")
        return StorageError(f"write to {path} failed: {exc}")
    if isinstance(exc, sqlite3.DatabaseError):
        return CorruptDatabaseError(f"database {path} is damaged: {exc}")
    return exc


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions memmesh's triggers call (the unsegmented-script index, schema 5).

    A connection that writes to ``memories`` needs them; a plain ``sqlite3`` shell does not
    have them, so its writes fail instead of leaving the index stale. Tools that must edit a
    memmesh file directly call this on their own connection first.
    """
    conn.create_function("memmesh_unigrams", 3, segment.unigrams, deterministic=True)
    conn.create_function("memmesh_bigrams", 3, segment.bigrams, deterministic=True)


class SQLiteStore:
    """A memmesh database in one SQLite file (or in memory)."""

    def __init__(
        self, url: str, *, busy_timeout_ms: int = 15_000, synchronous: str = "NORMAL", create: bool = True, make_parents: bool = False
    ) -> None:
        self.url = url
        self.path = path_from_url(url)
        self.in_memory = self.path == ":memory:"
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self._local = threading.local()
        self._write_lock = threading.RLock()  # re-entrant: in-memory reads share the writer
        self._group_lock = threading.Lock()
        self._queued = 0
        self._batch: _Batch | None = None
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.created = False
        """True when this open made a new database file (the faces say so once)."""
        if not self.in_memory:
            self.created = self._check_file(create, make_parents)
        self._writer = self._connect()
        self.schema_version = self._migrate()

    # -- connections ---------------------------------------------------------------------

    def _check_file(self, create: bool, make_parents: bool) -> bool:
        """Check the file before SQLite touches it; True when a new database will be made.

        Without ``create`` a missing (or empty) file is an error and nothing is created: a
        read, a migration source or a dry run must never leave an empty database behind.
        A missing folder is made only with ``make_parents`` (the default data dir), so a
        typo in ``--db`` cannot scatter folders over the disk.
        """
        path = Path(self.path)
        if path.is_dir():
            raise CorruptDatabaseError(f"{path} is a directory, not a database file")
        if path.exists() and path.stat().st_size > 0:
            with path.open("rb") as handle:
                if handle.read(16) != SQLITE_HEADER:
                    raise CorruptDatabaseError(f"{path} is not a SQLite database (wrong file header); point --db at a memmesh database")
            self._refuse_foreign(path)
            return False
        if not create:
            what = "is an empty file, not a memmesh database" if path.exists() else "does not exist"
            raise NotFoundError(f"no memmesh database at {path}: the file {what}; check the path (nothing was created)")
        if not path.parent.is_dir():
            if not make_parents:
                raise InvalidInputError(
                    f"cannot create the database {path}: the folder {path.parent} does not exist; create it first or fix the path"
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder for {path}: {exc.strerror}") from exc
        return True

    @staticmethod
    def _refuse_foreign(path: Path) -> None:
        """Look (read-only, changing nothing) for another application's tables before we touch the file."""
        try:
            probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                tables = {row[0] for row in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"{path} is not a usable SQLite database: {exc}") from exc
        if tables and "meta" not in tables:
            raise CorruptDatabaseError(
                f"{path} is a SQLite database of another application (tables: {', '.join(sorted(tables)[:5])}); "
                "point --db at a memmesh database or a new file"
            )

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if not self.in_memory:
                self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = OFF")
            register_functions(conn)
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"cannot open {self.path}: {exc}") from exc
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self.in_memory:
            return self._writer
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads, translating driver errors into memmesh errors."""
        if self.in_memory:
            with self._write_lock:
                yield from self._guard(self._writer)
        else:
            yield from self._guard(self._reader())

    def _guard(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise UnavailableError(f"database {self.path} is busy: {exc}; try again") from exc
            raise StorageError(f"database error on {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"database {self.path} is damaged: {exc}") from exc

    def _retry(self, action: Any) -> Any:
        deadline = time.monotonic() + max(self.busy_timeout_ms, 1000) / 1000
        delay = 0.002
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.1)

    @contextmanager
    def write(self) -> Iterator[SQLiteWriteTx]:
        """One serialised, atomic unit of writing (group commit).

        Each caller's block runs alone, under its own ``SAVEPOINT`` (its failure undoes only
        its own changes). Callers that arrive while a transaction is open join it, and the
        last one in commits for all (at most ``GROUP_LIMIT`` per commit); everyone returns
        only after that commit, so nothing is acknowledged before it is durable. A lone
        caller (CLI, one agent) commits at once, exactly like a plain transaction. The COMMIT
        is most of a small write's cost, which is why concurrent writers share it.
        """
        if getattr(self._local, "write_depth", 0):
            # A write inside a write on the same thread: a nested savepoint of the same unit.
            with self._savepoint(self._writer) as tx:
                yield tx
            return
        with self._group_lock:
            self._queued += 1
        batch: _Batch | None = None
        failure: BaseException | None = None
        self._write_lock.acquire()
        try:
            with self._group_lock:
                self._queued -= 1
            batch = self._open_batch()
            self._local.write_depth = 1
            try:
                with self._savepoint(self._writer) as tx:
                    yield tx
                batch.members += 1
            except BaseException as exc:
                failure = exc
            finally:
                self._local.write_depth = 0
            with self._group_lock:
                last = self._queued == 0 or batch.members >= GROUP_LIMIT
            if last:
                self._commit(batch)
        finally:
            self._write_lock.release()
        if failure is not None:
            translated = _translate(failure, self.path)
            if translated is failure:
                raise failure
            raise translated from failure
        batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def _open_batch(self) -> _Batch:
        """The open group transaction, beginning one (BEGIN IMMEDIATE) if none is open."""
        if self._batch is not None:
            return self._batch
        conn = self._writer
        try:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.OperationalError as exc:
            raise UnavailableError(f"database {self.path} stayed locked for {self.busy_timeout_ms} ms; try again") from exc
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"database {self.path} is damaged: {exc}") from exc
        self._batch = _Batch()
        return self._batch

    @contextmanager
    def _savepoint(self, conn: sqlite3.Connection) -> Iterator[SQLiteWriteTx]:
        conn.execute("SAVEPOINT unit")
        try:
            yield SQLiteWriteTx(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
            raise
        conn.execute("RELEASE unit")

    def _commit(self, batch: _Batch) -> None:
        """Commit the group (or roll it back and give every member the error), then wake them."""
        conn = self._writer
        try:
            if conn.in_transaction:
                self._retry(lambda: conn.execute("COMMIT"))
            elif batch.members:
                batch.error = StorageError(f"write to {self.path} failed: the transaction was aborted; try again")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            batch.error = _translate(exc, self.path)
        finally:
            self._batch = None
            batch.done.set()

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self) -> int:
        conn = self._writer
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"{self.path} is not a usable SQLite database: {exc}") from exc
        if tables and "meta" not in tables:
            raise CorruptDatabaseError(
                f"{self.path} is a SQLite database of another application (tables: {', '.join(sorted(tables)[:5])}); "
                "point --db at a memmesh database or a new file"
            )
        with self.write() as tx:
            current = self._schema_version(conn)
            if current > LATEST_SCHEMA:
                raise CorruptDatabaseError(
                    f"{self.path} has schema version {current}, newer than this memmesh supports ({LATEST_SCHEMA}); upgrade memmesh"
                )
            for number, _name, sql in MIGRATIONS:
                if number > current:
                    for statement in _split_sql(sql):
                        conn.execute(statement)
                    tx.set_meta("schema_version", str(number))
            if tx.get_meta("app") is None:
                tx.set_meta("app", APP_ID)
                tx.set_meta("seq", "0")
                tx.set_meta("node_id", new_id())
            elif tx.get_meta("app") != APP_ID:
                raise CorruptDatabaseError(f"{self.path} belongs to another application ({tx.get_meta('app')})")
        return max(current, LATEST_SCHEMA)

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    # -- reads -------------------------------------------------------------------------------

    def get(self, memory_id: str, now: datetime | None = None) -> Memory | None:
        with self._reading() as conn:
            row = conn.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ?", (memory_id,)).fetchone()
        return row_to_memory(row) if row else None

    def get_many(self, ids: Sequence[str]) -> list[Memory]:
        if not ids:
            return []
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(ids)),),
            ).fetchall()
        by_id = {row[0]: row_to_memory(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def list(self, flt: Filter, limit: int, after: tuple[str, str] | None = None) -> list[Memory]:
        where, params = filter_sql(flt, namespace_index=not self._large_subtree(flt.namespace))
        if after is not None:
            where += " AND (m.created_at < ? OR (m.created_at = ? AND m.id < ?))"
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {_prefixed('m')} FROM memories m WHERE {where} ORDER BY m.created_at DESC, m.id DESC LIMIT ?"
        with self._reading() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        return [row_to_memory(row) for row in rows]

    def _large_subtree(self, namespace: str | None, threshold: int = 200) -> bool:
        """Whether a namespace subtree holds more than ``threshold`` rows (counted on the index)."""
        if not namespace:
            return False
        with self._reading() as conn:
            row = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM memories WHERE namespace = ? OR (namespace > ? AND namespace < ?) LIMIT ?)",
                (namespace, namespace + "/", namespace + "0", threshold + 1),
            ).fetchone()
        return row[0] > threshold

    def keyword_search(self, terms: Sequence[str], flt: Filter, limit: int) -> list[tuple[Memory, float]]:
        """BM25 over title, content and tags (weights 2 : 1 : 1.5), best first, filtered.

        Ranking the full-text index alone is about three times cheaper than joining every
        match to its row, so the top ``4 × limit`` are ranked there and then filtered; only
        when the filter rejects so many that the answer could be incomplete does the exact
        (joined) query run.
        """
        if not terms:
            return []
        with self._reading() as conn:
            ranked = self._ranked(conn, terms, flt, limit)
            if not ranked:
                return []
            rows = conn.execute(
                f"SELECT {MEMORY_COLUMNS}, rowid FROM memories WHERE rowid IN (SELECT value FROM json_each(?))",
                (json.dumps([r[0] for r in ranked]),),
            ).fetchall()
        by_rowid = {row[21]: row_to_memory(row) for row in rows}
        return [(by_rowid[rowid], -float(rank)) for rowid, rank in ranked if rowid in by_rowid]

    def keyword_scores(self, terms: Sequence[str], flt: Filter, limit: int) -> dict[str, float]:
        if not terms:
            return {}
        with self._reading() as conn:
            ranked = self._ranked(conn, terms, flt, limit)
            if not ranked:
                return {}
            ids = dict(
                conn.execute(
                    "SELECT rowid, id FROM memories WHERE rowid IN (SELECT value FROM json_each(?))", (json.dumps([r[0] for r in ranked]),)
                ).fetchall()
            )
        return {ids[rowid]: -float(rank) for rowid, rank in ranked if rowid in ids}

    def _ranked(self, conn: sqlite3.Connection, terms: Sequence[str], flt: Filter, limit: int) -> list[tuple]:
        """(rowid, bm25 rank) of the best ``limit`` matches passing the filter, best first.

        Terms in scripts without spaces also match the character n-gram index
        (``memories_cjk``, :mod:`memmesh.recall.segment`); a memory matched by both adds
        the two BM25 ranks.
        """
        # The n-gram index is empty in a store without text in unsegmented scripts: skip it.
        grams = conn.execute("SELECT 1 FROM memories_cjk LIMIT 1").fetchone() is not None
        source, match_params = _match_source(terms, grams)
        where, params = filter_sql(flt)
        if flt.ids is not None:  # scoring known memories: the joined query is exact and small
            if source is _MAIN_MATCH:
                return self._ranked_known(conn, match_params[0], where, params, limit)
            return self._ranked_exact(conn, source, match_params, where, params, limit)
        wide = limit * 4
        ranked = conn.execute(f"{source} ORDER BY rank LIMIT ?", (*match_params, wide)).fetchall()
        passing = (
            {
                row[0]
                for row in conn.execute(
                    f"SELECT m.rowid FROM memories m WHERE m.rowid IN (SELECT value FROM json_each(?)) AND {where}",
                    [json.dumps([r[0] for r in ranked]), *params],
                )
            }
            if ranked
            else set()
        )
        complete = len(ranked) < wide  # the index had no more matches than these
        ranked = [r for r in ranked if r[0] in passing]
        if len(ranked) < limit and not complete:
            ranked = self._ranked_exact(conn, source, match_params, where, params, limit)
        return ranked[:limit]

    @staticmethod
    def _ranked_known(conn: sqlite3.Connection, expression: str, where: str, params: list[Any], limit: int) -> list[tuple]:
        """BM25 of a few known memories: each is looked up by rowid in the full-text index
        (CROSS JOIN keeps ``memories`` outside), instead of scoring every match of a common
        word in the store and keeping the few wanted (20 ms → 6 ms at 100k memories)."""
        return conn.execute(
            "SELECT m.rowid, bm25(memories_fts, 2.0, 1.0, 1.5) AS rank FROM memories m "
            f"CROSS JOIN memories_fts ON memories_fts.rowid = m.rowid WHERE {where} AND memories_fts MATCH ? ORDER BY rank LIMIT ?",
            [*params, expression, limit],
        ).fetchall()

    @staticmethod
    def _ranked_exact(
        conn: sqlite3.Connection, source: str, match_params: list[Any], where: str, params: list[Any], limit: int
    ) -> list[tuple]:
        return conn.execute(
            f"SELECT r.rowid, r.rank FROM ({source}) r JOIN memories m ON m.rowid = r.rowid WHERE {where} ORDER BY r.rank LIMIT ?",
            [*match_params, *params, limit],
        ).fetchall()

    def matching_ids(self, flt: Filter) -> set[str]:
        where, params = filter_sql(flt)
        with self._reading() as conn:
            return {row[0] for row in conn.execute(f"SELECT m.id FROM memories m WHERE {where}", params)}

    def history(self, memory_id: str) -> list[HistoryEntry]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT memory_id, event, old, new, actor, at FROM history WHERE memory_id = ? ORDER BY id", (memory_id,)
            ).fetchall()
        return [_history_entry(row) for row in rows]

    def links(self, memory_id: str) -> list[Link]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT source_id, target_id, relation, valid_from, valid_until, observed_by, created_at FROM links "
                f"WHERE (source_id = ? OR target_id = ?) AND {VISIBLE_LINK} ORDER BY created_at",
                (memory_id, memory_id),
            ).fetchall()
        return [_link(row) for row in rows]

    def tombstones_since(self, seq: int) -> list[Tombstone]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT id, namespace, deleted_at, actor, version FROM tombstones WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        return [_tombstone(row) for row in rows]

    def vector_changes(self, since_seq: int) -> VectorChanges:
        with self._reading() as conn:
            conn.execute("BEGIN")
            try:
                seq = int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
                upserts = [
                    VectorRow(mid, model, np.frombuffer(blob, dtype=np.float32).copy())
                    for mid, model, blob in conn.execute(
                        "SELECT memory_id, model, vector FROM vectors WHERE seq > ? AND seq <= ?", (since_seq, seq)
                    )
                ]
                removed = [
                    row[0] for row in conn.execute("SELECT memory_id FROM vector_removals WHERE seq > ? AND seq <= ?", (since_seq, seq))
                ]
            finally:
                conn.execute("COMMIT")
        return VectorChanges(upserts=upserts, removed=removed, seq=seq)

    def vector_models(self) -> dict[str, int]:
        with self._reading() as conn:
            return dict(conn.execute("SELECT model, count(*) FROM vectors GROUP BY model").fetchall())

    def get_vectors(self, ids: Sequence[str]) -> list[VectorRow]:
        if not ids:
            return []
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT memory_id, model, vector FROM vectors WHERE memory_id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(ids)),),
            ).fetchall()
        return [VectorRow(mid, model, np.frombuffer(blob, dtype=np.float32).copy()) for mid, model, blob in rows]

    def ids_missing_vectors(self, model: str) -> list[str]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT m.id FROM memories m LEFT JOIN vectors v ON v.memory_id = m.id AND v.model = ? "
                "WHERE v.memory_id IS NULL ORDER BY m.rowid",
                (model,),
            ).fetchall()
        return [row[0] for row in rows]

    def neighbours(self, ids: Sequence[str], span: int, window_s: float) -> dict[str, list[tuple[str, int]]]:
        if not ids or span < 1:
            return {}
        found: dict[str, list[tuple[str, int]]] = {}
        with self._reading() as conn:
            targets = conn.execute(
                "SELECT id, namespace, created_at FROM memories WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(ids)),),
            ).fetchall()
            # One statement for all targets: per target, the ``span`` rows before and after it
            # on the (namespace, created_at, id) index, tagged with the target and direction.
            parts: list[str] = []
            params: list[Any] = []
            for memory_id, namespace, created_at in targets:
                moment = parse_ts(created_at)
                low, high = format_ts(moment - timedelta(seconds=window_s)), format_ts(moment + timedelta(seconds=window_s))
                parts.append(
                    "SELECT * FROM (SELECT ?, -1, id, created_at FROM memories WHERE namespace = ? AND (created_at, id) < (?, ?) "
                    "AND created_at >= ? ORDER BY created_at DESC, id DESC LIMIT ?)"
                )
                params += [memory_id, namespace, created_at, memory_id, low, span]
                parts.append(
                    "SELECT * FROM (SELECT ?, 1, id, created_at FROM memories WHERE namespace = ? AND (created_at, id) > (?, ?) "
                    "AND created_at <= ? ORDER BY created_at, id LIMIT ?)"
                )
                params += [memory_id, namespace, created_at, memory_id, high, span]
                found[memory_id] = []
            if not parts:
                return found
            rows = conn.execute(" UNION ALL ".join(parts), params).fetchall()
        # Distances from write order (a compound SELECT does not promise its parts' order).
        sides: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for target, direction, other, created_at in rows:
            sides.setdefault((target, direction), []).append((created_at, other))
        for (target, direction), side in sides.items():
            side.sort()
            if direction < 0:
                found[target] += [(other, i - len(side)) for i, (_, other) in enumerate(side)]
            else:
                found[target] += [(other, i + 1) for i, (_, other) in enumerate(side)]
        return found

    def stats(self, now: datetime, soon: datetime) -> Stats:
        live = "(expires_at IS NULL OR expires_at > ?)"
        now_s = format_ts(now)
        with self._reading() as conn:
            total = conn.execute(f"SELECT count(*) FROM memories WHERE {live}", (now_s,)).fetchone()[0]
            tiers = conn.execute(f"SELECT tier, count(*) FROM memories WHERE {live} GROUP BY tier ORDER BY tier", (now_s,)).fetchall()
            spaces = conn.execute(
                f"SELECT namespace, count(*) FROM memories WHERE {live} GROUP BY namespace ORDER BY count(*) DESC, namespace", (now_s,)
            ).fetchall()
            expiring = conn.execute(
                "SELECT count(*) FROM memories WHERE expires_at > ? AND expires_at <= ?", (now_s, format_ts(soon))
            ).fetchone()[0]
            links = conn.execute(f"SELECT count(*) FROM links WHERE {VISIBLE_LINK}").fetchone()[0]
            size = conn.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").fetchone()[0]
        if not self.in_memory:
            wal = Path(self.path + "-wal")
            size += wal.stat().st_size if wal.exists() else 0
        return Stats(
            total=total,
            by_tier=[TierCount(tier=t, count=c) for t, c in tiers],
            by_namespace=[NamespaceCount(namespace=n, count=c) for n, c in spaces],
            expiring_soon=expiring,
            links_count=links,
            db_size_bytes=size,
        )

    def iter_memories(self, batch: int = 500) -> Iterator[Memory]:
        last = -1
        while True:
            with self._reading() as conn:
                rows = conn.execute(
                    f"SELECT {MEMORY_COLUMNS}, rowid FROM memories WHERE rowid > ? ORDER BY rowid LIMIT ?", (last, batch)
                ).fetchall()
            if not rows:
                return
            last = rows[-1][21]
            yield from (row_to_memory(row) for row in rows)

    def iter_links(self) -> Iterator[Link]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT source_id, target_id, relation, valid_from, valid_until, observed_by, created_at FROM links "
                f"WHERE {VISIBLE_LINK} ORDER BY seq"
            ).fetchall()
        yield from (_link(row) for row in rows)

    def iter_history(self) -> Iterator[HistoryEntry]:
        with self._reading() as conn:
            rows = conn.execute("SELECT memory_id, event, old, new, actor, at FROM history ORDER BY id").fetchall()
        yield from (_history_entry(row) for row in rows)

    def version_rows(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """``(kind, namespace, id, version)`` of every memory (``m``) and tombstone (``t``):
        what anti-entropy digests, read without building whole memories."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT 'm', namespace, id, version FROM memories UNION ALL SELECT 't', namespace, id, version FROM tombstones"
            ).fetchall()
        return [(kind, ns, mid, json.loads(version)) for kind, ns, mid, version in rows]

    def node_id(self) -> str:
        with self._reading() as conn:
            return conn.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0]

    def change_counter(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])

    def changes_since(self, since: int, limit: int) -> Changes:
        with self._reading() as conn:
            head = int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
            queries = {
                "memories": f"SELECT seq, {MEMORY_COLUMNS} FROM memories",
                "tombstones": "SELECT seq, id, namespace, deleted_at, actor, version FROM tombstones",
                "links": "SELECT seq, source_id, target_id, relation, valid_from, valid_until, observed_by, created_at FROM links",
                "conflicts": "SELECT seq, id, memory_id, namespace, loser, version FROM conflicts",
                "agents": f"SELECT seq, {AGENT_COLUMNS} FROM agents",
            }
            rows = {
                name: conn.execute(f"{sql} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (since, head, limit)).fetchall()
                for name, sql in queries.items()
            }
            cut = cut_page(since, head, limit, [[r[0] for r in found] for found in rows.values()])
            if cut is None:
                cut = min(r[-1][0] for r in rows.values() if len(r) >= limit)
                rows = {name: conn.execute(f"{sql} WHERE seq = ?", (cut,)).fetchall() for name, sql in queries.items()}
        kept = {name: [r for r in found if r[0] <= cut] for name, found in rows.items()}
        return Changes(
            memories=[(r[0], row_to_memory(r[1:])) for r in kept["memories"]],
            tombstones=[(r[0], _tombstone(r[1:])) for r in kept["tombstones"]],
            links=[(r[0], _link(r[1:])) for r in kept["links"]],
            conflicts=[(r[0], _conflict(r[1:])) for r in kept["conflicts"]],
            agents=[(r[0], _agent(r[1:])) for r in kept["agents"]],
            upto=cut,
            more=cut < head,
        )

    def conflicts(self, memory_id: str | None = None) -> list[Conflict]:
        sql = "SELECT id, memory_id, namespace, loser, version FROM conflicts"
        with self._reading() as conn:
            if memory_id is None:
                rows = conn.execute(sql + " ORDER BY id").fetchall()
            else:
                rows = conn.execute(sql + " WHERE memory_id = ? ORDER BY id", (memory_id,)).fetchall()
        return [_conflict(row) for row in rows]

    def peers(self) -> list[PeerState]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {PEER_COLUMNS} FROM peers ORDER BY node_id").fetchall()
        return [_peer(row) for row in rows]

    def purged_seq(self) -> int:
        with self._reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'purged_seq'").fetchone()
        return int(row[0]) if row else 0

    def integrity_check(self) -> str:
        with self._reading() as conn:
            return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check").fetchall())

    def agents(self) -> list[Agent]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY agent_id").fetchall()
        return [_agent(row) for row in rows]

    def api_keys(self, include_revoked: bool = False) -> list[ApiKey]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys {where} ORDER BY created_at, id").fetchall()
        return [ApiKey.model_validate(_key_fields(row)) for row in rows]

    def api_key(self, key_id: str) -> StoredApiKey | None:
        with self._reading() as conn:
            row = conn.execute(f"SELECT {KEY_COLUMNS}, key_hash FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return StoredApiKey.model_validate({**_key_fields(row), "key_hash": row[6]}) if row else None

    def has_api_keys(self) -> bool:
        with self._reading() as conn:
            return conn.execute("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None

    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = ? AND content_hash = ?", (namespace, content_hash)
            ).fetchone()
        return row_to_memory(row) if row else None

    def archived(self, flt: Filter, limit: int) -> list[ArchivedMemory]:
        where, params = archive_filter_sql(flt)
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT a.data, a.archived_at, a.reason FROM archive a WHERE {where} ORDER BY a.archived_at DESC, a.id LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_archived(row) for row in rows]

    def archive_stats(self, flt: Filter) -> ArchiveStats:
        where, params = archive_filter_sql(flt)
        with self._reading() as conn:
            total, oldest, newest = conn.execute(
                f"SELECT count(*), min(a.archived_at), max(a.archived_at) FROM archive a WHERE {where}", params
            ).fetchone()
            spaces = conn.execute(
                f"SELECT a.namespace, count(*) FROM archive a WHERE {where} GROUP BY a.namespace ORDER BY count(*) DESC, a.namespace",
                params,
            ).fetchall()
        return ArchiveStats(
            total=total, by_namespace=[NamespaceCount(namespace=n, count=c) for n, c in spaces], oldest=oldest, newest=newest
        )

    def write_counts(self, day: str) -> dict[str, int]:
        with self._reading() as conn:
            return dict(conn.execute("SELECT namespace, count FROM write_counts WHERE day = ?", (day,)).fetchall())

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()


class SQLiteWriteTx:
    """The write primitives, valid inside :meth:`SQLiteStore.write`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._seq: int | None = None

    def next_seq(self) -> int:
        """The change number of this transaction: every change it makes shares it, because
        they become visible together; followers ask for changes with a higher number."""
        if self._seq is None:
            self._seq = int(
                self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq' RETURNING value").fetchone()[0]
            )
        return self._seq

    def get(self, memory_id: str) -> Memory | None:
        row = self.conn.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ?", (memory_id,)).fetchone()
        return row_to_memory(row) if row else None

    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None:
        row = self.conn.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = ? AND content_hash = ?", (namespace, content_hash)
        ).fetchone()
        return row_to_memory(row) if row else None

    def find_by_title(self, namespace: str, title: str) -> Memory | None:
        row = self.conn.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = ? AND title = ? ORDER BY created_at DESC LIMIT 1",
            (namespace, title),
        ).fetchone()
        return row_to_memory(row) if row else None

    def insert_memory(self, memory: Memory, seq: int) -> None:
        row = memory_to_row(memory)
        columns = MEMORY_COLUMNS + ", seq"
        placeholders = ", ".join(":" + name.strip() for name in MEMORY_COLUMNS.split(","))
        self.conn.execute(f"INSERT INTO memories ({columns}) VALUES ({placeholders}, :seq)", {**row, "seq": seq})
        self.conn.executemany("INSERT INTO memory_tags (tag, memory_id) VALUES (?, ?)", [(t, memory.id) for t in memory.tags])
        self.conn.execute("DELETE FROM tombstones WHERE id = ?", (memory.id,))

    def update_memory(self, memory: Memory, seq: int) -> None:
        row = memory_to_row(memory)
        names = [name.strip() for name in MEMORY_COLUMNS.split(",") if name.strip() != "id"]
        assignments = ", ".join(f"{name} = :{name}" for name in names)
        cursor = self.conn.execute(f"UPDATE memories SET {assignments}, seq = :seq WHERE id = :id", {**row, "seq": seq})
        if cursor.rowcount != 1:
            raise NotFoundError(f"memory {memory.id} does not exist")
        self._set_tags(memory.id, memory.tags)

    def _set_tags(self, memory_id: str, tags: Sequence[str]) -> None:
        self.conn.execute("DELETE FROM memory_tags WHERE memory_id = ?", (memory_id,))
        self.conn.executemany("INSERT INTO memory_tags (tag, memory_id) VALUES (?, ?)", [(t, memory_id) for t in tags])

    def delete_memory(self, tombstone: Tombstone, seq: int) -> None:
        self.conn.execute("DELETE FROM memories WHERE id = ?", (tombstone.id,))
        self.conn.execute("DELETE FROM memory_tags WHERE memory_id = ?", (tombstone.id,))
        self._drop_vector(tombstone.id, seq)
        self.conn.execute(
            "INSERT OR REPLACE INTO tombstones (id, namespace, deleted_at, actor, version, seq) VALUES (?, ?, ?, ?, ?, ?)",
            (tombstone.id, tombstone.namespace, format_ts(tombstone.deleted_at), tombstone.actor, tombstone.version.model_dump_json(), seq),
        )

    def _drop_vector(self, memory_id: str, seq: int) -> None:
        if self.conn.execute("DELETE FROM vectors WHERE memory_id = ?", (memory_id,)).rowcount:
            self.conn.execute("INSERT OR REPLACE INTO vector_removals (memory_id, seq) VALUES (?, ?)", (memory_id, seq))

    def tombstone(self, memory_id: str) -> Tombstone | None:
        row = self.conn.execute("SELECT id, namespace, deleted_at, actor, version FROM tombstones WHERE id = ?", (memory_id,)).fetchone()
        return _tombstone(row) if row else None

    def add_history(self, entry: HistoryEntry) -> None:
        self.conn.execute(
            "INSERT INTO history (memory_id, event, old, new, actor, at) VALUES (?, ?, ?, ?, ?, ?)",
            (entry.memory_id, entry.event.value, _json_or_none(entry.old), _json_or_none(entry.new), entry.actor, format_ts(entry.at)),
        )

    def put_link(self, link: Link, seq: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO links (source_id, target_id, relation, valid_from, valid_until, observed_by, created_at, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                link.source_id,
                link.target_id,
                link.relation.value,
                _ts(link.valid_from),
                _ts(link.valid_until),
                link.observed_by,
                format_ts(link.created_at),
                seq,
            ),
        )

    def delete_links(self, memory_id: str) -> int:
        return self.conn.execute("DELETE FROM links WHERE source_id = ? OR target_id = ?", (memory_id, memory_id)).rowcount

    def insert_memories(self, memories: Sequence[Memory], seq: int) -> None:
        for memory in memories:
            self.insert_memory(memory, seq)

    def add_history_many(self, entries: Sequence[HistoryEntry]) -> None:
        for entry in entries:
            self.add_history(entry)

    def put_vectors(self, rows: Sequence[VectorRow], seq: int) -> None:
        for row in rows:
            self.put_vector(row.memory_id, row.model, row.vector, seq)

    def put_vector(self, memory_id: str, model: str, vector: np.ndarray, seq: int) -> None:
        vec = np.ascontiguousarray(vector, dtype=np.float32)
        self.conn.execute(
            "INSERT OR REPLACE INTO vectors (memory_id, model, dim, vector, seq) VALUES (?, ?, ?, ?, ?)",
            (memory_id, model, int(vec.shape[0]), vec.tobytes(), seq),
        )
        self.conn.execute("DELETE FROM vector_removals WHERE memory_id = ?", (memory_id,))

    def record_access(self, memory_id: str, at: datetime, expires_at: datetime | None) -> None:
        self.conn.execute(
            "UPDATE memories SET access_count = access_count + 1, last_accessed_at = ?, expires_at = ? WHERE id = ?",
            (format_ts(at), _ts(expires_at), memory_id),
        )

    def expired(self, now: datetime, limit: int) -> list[Memory]:
        rows = self.conn.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
            (format_ts(now), limit),
        ).fetchall()
        return [row_to_memory(row) for row in rows]

    def archive(self, memory: Memory, at: datetime, reason: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO archive (id, namespace, archived_at, reason, data) VALUES (?, ?, ?, ?, ?)",
            (memory.id, memory.namespace, format_ts(at), reason, memory.model_dump_json()),
        )
        seq = self.next_seq()
        self.conn.execute("DELETE FROM memories WHERE id = ?", (memory.id,))
        self.conn.execute("DELETE FROM memory_tags WHERE memory_id = ?", (memory.id,))
        self._drop_vector(memory.id, seq)

    def purge_tombstones(self, before: datetime) -> int:
        newest = self.conn.execute("SELECT MAX(seq) FROM tombstones WHERE deleted_at < ?", (format_ts(before),)).fetchone()[0]
        if newest is not None and newest > int(self.get_meta("purged_seq") or 0):
            self.set_meta("purged_seq", str(newest))
        dead = "SELECT id FROM tombstones WHERE deleted_at < ?"
        self.conn.execute(f"DELETE FROM links WHERE source_id IN ({dead}) OR target_id IN ({dead})", (format_ts(before),) * 2)
        return self.conn.execute("DELETE FROM tombstones WHERE deleted_at < ?", (format_ts(before),)).rowcount

    def get_link(self, source_id: str, target_id: str, relation: str) -> Link | None:
        row = self.conn.execute(
            "SELECT source_id, target_id, relation, valid_from, valid_until, observed_by, created_at FROM links "
            "WHERE source_id = ? AND target_id = ? AND relation = ?",
            (source_id, target_id, relation),
        ).fetchone()
        return _link(row) if row else None

    def put_conflict(self, conflict: Conflict, seq: int) -> bool:
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO conflicts (id, memory_id, namespace, loser, version, seq) VALUES (?, ?, ?, ?, ?, ?)",
            (
                conflict.id,
                conflict.memory_id,
                conflict.namespace,
                json.dumps(conflict.loser, ensure_ascii=False, sort_keys=True),
                conflict.version.model_dump_json(),
                seq,
            ),
        )
        return cursor.rowcount == 1

    def peer(self, node_id: str) -> PeerState | None:
        row = self.conn.execute(f"SELECT {PEER_COLUMNS} FROM peers WHERE node_id = ?", (node_id,)).fetchone()
        return _peer(row) if row else None

    def put_peer(self, state: PeerState) -> None:
        self.conn.execute(
            f"INSERT OR REPLACE INTO peers ({PEER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (state.node_id, state.url, state.sent_seq, state.recv_seq, _ts(state.last_contact), state.last_error),
        )

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_agent(self, agent_id: str) -> Agent | None:
        row = self.conn.execute(f"SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        return _agent(row) if row else None

    def put_agent(self, agent: Agent) -> None:
        self.conn.execute(
            f"INSERT OR REPLACE INTO agents ({AGENT_COLUMNS}, seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                agent.agent_id,
                agent.display_name,
                agent.role,
                json.dumps(agent.namespaces),
                format_ts(agent.created_at),
                format_ts(agent.updated_at),
                self.next_seq(),  # agents replicate: they are in the change feed
            ),
        )

    def insert_api_key(self, key: StoredApiKey) -> None:
        self.conn.execute(
            f"INSERT INTO api_keys ({KEY_COLUMNS}, key_hash, prefix) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.agent_id,
                key.role,
                json.dumps(key.namespaces),
                format_ts(key.created_at),
                _ts(key.revoked_at),
                key.key_hash,
                key.id,
            ),
        )

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        return (
            self.conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (format_ts(at), key_id)).rowcount
            == 1
        )

    def count_writes(self, namespace: str, day: str, n: int) -> int:
        return int(
            self.conn.execute(
                "INSERT INTO write_counts (namespace, day, count) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, day) DO UPDATE SET count = count + excluded.count RETURNING count",
                (namespace, day, n),
            ).fetchone()[0]
        )

    def take_archived(self, memory_id: str) -> ArchivedMemory | None:
        row = self.conn.execute("DELETE FROM archive WHERE id = ? RETURNING data, archived_at, reason", (memory_id,)).fetchone()
        return _archived(row) if row else None

    def purge_archive(self, flt: Filter, before: datetime | None = None) -> int:
        where, params = archive_filter_sql(flt)
        if before is not None:
            where += " AND a.archived_at < ?"
            params.append(format_ts(before))
        return self.conn.execute(f"DELETE FROM archive AS a WHERE {where}", params).rowcount


def archive_filter_sql(flt: Filter) -> tuple[str, list[Any]]:
    """WHERE clauses for the archive table (alias ``a``): namespace subtree, scopes and ids only."""
    clauses: list[str] = []
    params: list[Any] = []
    for roots in ([flt.namespace] if flt.namespace else None, flt.scopes):
        if roots is not None:
            subtree = "(a.namespace = ? OR (a.namespace > ? AND a.namespace < ?))"
            clauses.append("(" + (" OR ".join([subtree] * len(roots)) or "0") + ")")
            for root in roots:
                params += [root, root + "/", root + "0"]
    if flt.ids is not None:
        clauses.append("a.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(flt.ids)))
    return (" AND ".join(clauses) or "1"), params


def _archived(row: tuple) -> ArchivedMemory:
    data, archived_at, reason = row
    return ArchivedMemory(memory=Memory.model_validate_json(data), archived_at=archived_at, reason=reason)


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in MEMORY_COLUMNS.split(","))


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN … END;) whole."""
    statements, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _history_entry(row: tuple) -> HistoryEntry:
    memory_id, event, old, new, actor, at = row
    return HistoryEntry(
        memory_id=memory_id,
        event=event,
        old=json.loads(old) if old else None,
        new=json.loads(new) if new else None,
        actor=actor,
        at=at,
    )


def _link(row: tuple) -> Link:
    source_id, target_id, relation, valid_from, valid_until, observed_by, created_at = row
    return Link(
        source_id=source_id,
        target_id=target_id,
        relation=relation,
        valid_from=valid_from,
        valid_until=valid_until,
        observed_by=observed_by,
        created_at=created_at,
    )


AGENT_COLUMNS = "agent_id, display_name, role, namespaces, created_at, updated_at"
KEY_COLUMNS = "id, agent_id, role, namespaces, created_at, revoked_at"


def _agent(row: tuple) -> Agent:
    agent_id, display_name, role, namespaces, created_at, updated_at = row
    return Agent(
        agent_id=agent_id,
        display_name=display_name,
        role=role,
        namespaces=json.loads(namespaces),
        created_at=created_at,
        updated_at=updated_at,
    )


def _key_fields(row: tuple) -> dict[str, Any]:
    key_id, agent_id, role, namespaces, created_at, revoked_at = tuple(row)[:6]
    return {
        "id": key_id,
        "agent_id": agent_id,
        "role": role,
        "namespaces": json.loads(namespaces),
        "created_at": created_at,
        "revoked_at": revoked_at,
    }


def _tombstone(row: tuple) -> Tombstone:
    mid, namespace, deleted_at, actor, version = row
    return Tombstone(id=mid, namespace=namespace, deleted_at=deleted_at, actor=actor, version=json.loads(version))


PEER_COLUMNS = "node_id, url, sent_seq, recv_seq, last_contact, last_error"


def _peer(row: tuple) -> PeerState:
    node_id, url, sent_seq, recv_seq, last_contact, last_error = row
    return PeerState(node_id=node_id, url=url, sent_seq=sent_seq, recv_seq=recv_seq, last_contact=last_contact, last_error=last_error)


def _conflict(row: tuple) -> Conflict:
    cid, memory_id, namespace, loser, version = row
    return Conflict(id=cid, memory_id=memory_id, namespace=namespace, loser=json.loads(loser), version=json.loads(version))
