"""SQLite backend: one file, WAL, FTS5, safe for many processes writing at once.

Concurrency model (after datasette): every thread reads on its own connection; writes go
through one writer connection per process, inside ``BEGIN IMMEDIATE`` so the file lock is
taken before anything is read, which rules out the upgrade deadlock of deferred
transactions. ``busy_timeout`` makes other processes wait for the lock; a short retry loop
covers the rare ``SQLITE_BUSY`` that bypasses the busy handler (e.g. during checkpoints),
so "database is locked" never reaches a user while the timeout lasts. The group-commit
writer lives in :mod:`memmesh.store.sqlite_writer`; the queries shared with PostgreSQL in
:mod:`memmesh.store.sql`.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from memmesh.clock import new_id
from memmesh.errors import ConfigError, CorruptDatabaseError, InvalidInputError, NotFoundError, StorageError, UnavailableError
from memmesh.fileaccess import cannot_write, full_path
from memmesh.model import Memory
from memmesh.recall import segment
from memmesh.redact import redact_url
from memmesh.store import vector_codec
from memmesh.store.base import Changes, Filter, VectorChanges, closed_error, not_unicode
from memmesh.store.logical import SnapshotInfo
from memmesh.store.migrations import load_migrations
from memmesh.store.sql import history_codec
from memmesh.store.sql.dialect import SQLITE
from memmesh.store.sql.filters import filter_sql
from memmesh.store.sql.reads import SQLReads
from memmesh.store.sql.rows import MEMORY_COLUMNS, N_MEMORY, prefixed, row_to_memory
from memmesh.store.sql.writes import SQLWrites
from memmesh.store.sqlite_bm25 import TotalsCache, doc_tokens, limits_namespaces, phrase_expression, ranked_in_scope
from memmesh.store.sqlite_writer import GroupCommitWriter

DIALECT = SQLITE
APP_ID = "memmesh"
SQLITE_HEADER = b"SQLite format 3\x00"


MIGRATIONS = load_migrations("sqlite")
LATEST_SCHEMA = MIGRATIONS[-1][0]


def path_from_url(url: str) -> str:
    """``sqlite:///abs/path`` or ``sqlite:///:memory:`` → a path for ``sqlite3.connect``.

    ``~`` is expanded, a relative path made absolute (against the working directory) and
    normalised (:func:`~memmesh.fileaccess.full_path`), so every message names the exact file
    looked at and no literal ``./~/…`` folder is made.
    """
    rest = url[len("sqlite://") :]
    if rest in ("/:memory:", ":memory:", "/"):
        return ":memory:"
    if not rest.startswith("/"):
        raise InvalidInputError(f"bad SQLite URL {redact_url(url)!r}: write sqlite:///relative.db or sqlite:////abs/path.db")
    return full_path(rest[1:])


def fts_expression(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression that ORs the quoted terms (quotes make any token literal)."""
    return " OR ".join(phrase_expression(term) for term in terms)


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


BULK_CACHE_KIB = 65536
"""The writer's page cache during a bulk insert (see :meth:`SQLiteWriteTx.bulk_cache`)."""


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions memmesh's triggers call (the unsegmented-script index, schema 5).

    A connection that writes to ``memories`` needs them; a plain ``sqlite3`` shell does not
    have them, so its writes fail instead of leaving the index stale. Tools that must edit a
    memmesh file directly call this on their own connection first.
    """
    conn.create_function("memmesh_unigrams", 3, segment.unigrams, deterministic=True)
    conn.create_function("memmesh_bigrams", 3, segment.bigrams, deterministic=True)
    conn.create_function("memmesh_doc_tokens", 1, doc_tokens, deterministic=True)  # scoped BM25 (store/sqlite_bm25.py)
    conn.create_function("memmesh_compact_vector", 2, vector_codec.upgrade_blob, deterministic=True)  # migration 0016
    conn.create_function("memmesh_history_pack", 3, history_codec.repack_text, deterministic=True)  # migration 0019


def _refuse_other_app(tables: set[str], path: str) -> None:
    """A database with tables but no ``meta`` belongs to another application: never touch it."""
    if tables and "meta" not in tables:
        raise CorruptDatabaseError(
            f"{path} is a SQLite database of another application (tables: {', '.join(sorted(tables)[:5])}); "
            "point --db at a memmesh database or a new file"
        )


class SQLiteStore(SQLReads, GroupCommitWriter):
    """A memmesh database in one SQLite file (or in memory)."""

    dialect = DIALECT

    def __init__(
        self, url: str, *, busy_timeout_ms: int = 15_000, synchronous: str = "NORMAL", create: bool = True, make_parents: bool = False
    ) -> None:
        self.url = url
        self.path = path_from_url(url)
        self.in_memory = self.path == ":memory:"
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self._init_writer()
        self._readers: list[tuple[sqlite3.Connection, threading.RLock]] = []
        self._closed = False
        self._scope_totals: TotalsCache = {}
        """Word totals of namespace scopes per change number (store/sqlite_bm25.py)."""
        self._readers_lock = threading.Lock()
        self.created = False
        """True when this open made a new database file (the faces say so once)."""
        if not self.in_memory:
            self.created = self._check_file(create, make_parents)
        self._writer = self._connect()
        self.schema_version = self._migrate()
        # After the migrations (which may rewrite whole tables): each write unit runs under a
        # SAVEPOINT, whose undo copies of the pages it changes spill to a new temp file past
        # 64 KiB (16 pages, which nearly every memory write changes): a file created, written
        # and deleted per write, a sixth of a write's CPU and most of the audit's (issue 16).
        # In memory they are freed at each RELEASE; see docs/audit.md.
        self._writer.execute("PRAGMA temp_store = MEMORY")

    @staticmethod
    def _new_tx(conn: sqlite3.Connection) -> SQLiteWriteTx:
        return SQLiteWriteTx(conn)

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
            self._refuse_unwritable(path, exists=True)
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
        self._refuse_unwritable(path, exists=False)
        return True

    @staticmethod
    def _refuse_unwritable(path: Path, *, exists: bool) -> None:
        """Refuse, with the fix, a database this user cannot write (before SQLite tries).

        SQLite writes the file and, in WAL mode, ``<db>-wal`` and ``<db>-shm`` beside it,
        which it creates in the folder when they are missing. Left to SQLite, a read-only
        folder reads "unable to open database file" (which said the data was damaged) and a
        read-only file opens, answers reads, then fails every write: memmesh writes on
        every open (schema upgrades) and on reads too (access counts).
        """
        companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
        verb = "open" if exists else "create"
        for each in [path, *companions] if exists else []:
            denied = cannot_write(each) if each.exists() else None
            if denied:
                raise ConfigError(f"cannot {verb} the database {path}: the file {each} {denied.why}; {denied.fix}")
        missing = [c.name for c in companions if not c.exists()] if exists else [path.name, *(c.name for c in companions)]
        denied = cannot_write(path.parent) if missing else None
        if denied:
            raise ConfigError(
                f"cannot {verb} the database {path}: the folder {path.parent} {denied.why}, and SQLite must create "
                f"{', '.join(missing[:-1])} and {missing[-1]} in it; {denied.fix}, or move the database to a folder this user can write"
            )

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
        _refuse_other_app(tables, str(path))

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

    def _reader(self) -> tuple[sqlite3.Connection, threading.RLock]:
        """This thread's read connection and the lock it holds while reading, so that
        :meth:`close` (from another thread) waits for a read in flight instead of pulling
        the connection from under it (which crashes the interpreter)."""
        held = getattr(self._local, "reader", None)
        if held is None:
            held = (self._connect(), threading.RLock())
            self._local.reader = held
            with self._readers_lock:
                self._readers.append(held)
        return held

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads, translating driver errors into memmesh errors."""
        if self.in_memory:
            with self._write_lock:
                self._refuse_if_closed()
                yield from self._guard(self._writer)
            return
        conn, lock = self._reader()
        with lock:
            self._refuse_if_closed()
            yield from self._guard(conn)

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise closed_error(self.path)

    def _guard(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise UnavailableError(f"database {self.path} is busy: {exc}; try again") from exc
            raise StorageError(f"database error on {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"database {self.path} is damaged: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise not_unicode(exc) from exc

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self) -> int:
        conn = self._writer
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"{self.path} is not a usable SQLite database: {exc}") from exc
        _refuse_other_app(tables, self.path)
        if self._schema_version(conn) == LATEST_SCHEMA and self._meta_value(conn, "app") == APP_ID:
            return LATEST_SCHEMA  # up to date: opening takes no write lock (a read-only user waited behind any writer)
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

    @classmethod
    def _schema_version(cls, conn: sqlite3.Connection) -> int:
        value = cls._meta_value(conn, "schema_version")
        return int(value) if value else 0

    @staticmethod
    def _meta_value(conn: sqlite3.Connection, key: str) -> str | None:
        """A meta value read outside a transaction (None before the meta table exists)."""
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return str(row[0]) if row else None

    # -- reads (the shared ones are in memmesh.store.sql.reads) ------------------------------

    def _large_subtree(self, namespace: str | None, threshold: int = 200) -> bool:
        """Whether a namespace subtree holds more than ``threshold`` rows (counted on the index),
        in which case ``list`` should not drive from the namespace index."""
        if not namespace:
            return False
        with self._reading() as conn:
            row = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM memories WHERE namespace = ? OR (namespace > ? AND namespace < ?) LIMIT ?)",
                (namespace, namespace + "/", namespace + "0", threshold + 1),
            ).fetchone()
        return bool(row[0] > threshold)

    def _db_size(self, conn: sqlite3.Connection) -> int:
        size = int(conn.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").fetchone()[0])
        if not self.in_memory:
            wal = Path(self.path + "-wal")
            size += wal.stat().st_size if wal.exists() else 0
        return size

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
            direct = self._keyword_rows(conn, terms, flt, limit)
            if direct is not None:
                found = [(row_to_memory(row, DIALECT), -float(row[N_MEMORY])) for row in direct]
                return sorted(found, key=lambda pair: (-pair[1], pair[0].id))
            ranked = self._ranked(conn, terms, flt, limit)
            if not ranked:
                return []
            rows = conn.execute(
                f"SELECT {MEMORY_COLUMNS}, rowid FROM memories WHERE rowid IN (SELECT value FROM json_each(?))",
                (json.dumps([r[0] for r in ranked]),),
            ).fetchall()
        by_rowid = {row[N_MEMORY]: row_to_memory(row, DIALECT) for row in rows}
        found = [(by_rowid[rowid], -float(rank)) for rowid, rank in ranked if rowid in by_rowid]
        return sorted(found, key=lambda pair: (-pair[1], pair[0].id))  # ties by id, as on PostgreSQL

    def _keyword_rows(self, conn: sqlite3.Connection, terms: Sequence[str], flt: Filter, limit: int) -> list[Any] | None:
        """The common case of :meth:`keyword_search` in one statement: the best ``4 × limit``
        matches ranked in the full-text index, joined to their rows and filtered (rows carry
        the rank after the memory's columns). None when the answer could be incomplete (the
        filter rejected too many of them) or the n-gram index takes part: the caller then
        takes the general path (as does a filter limiting namespaces: its ranking needs their own
        statistics, :mod:`memmesh.store.sqlite_bm25`). One statement instead of three saves a
        recall ~0.3 ms."""
        if flt.ids is not None or limits_namespaces(flt) or conn.execute("SELECT 1 FROM memories_cjk LIMIT 1").fetchone() is not None:
            return None
        where, params = filter_sql(flt, DIALECT)
        wide = limit * 4
        rows = conn.execute(
            f"WITH r AS MATERIALIZED ({_MAIN_MATCH} ORDER BY rank LIMIT ?) "
            f"SELECT {prefixed('m')}, r.rank, (SELECT count(*) FROM r) FROM r CROSS JOIN memories m ON m.rowid = r.rowid "
            f"WHERE {where} ORDER BY r.rank LIMIT ?",
            [fts_expression(terms), wide, *params, limit],
        ).fetchall()
        if len(rows) < limit and (not rows or rows[0][N_MEMORY + 1] >= wide):
            return None  # fewer than asked and the index may hold more matches that pass
        return rows

    def merge_keyword_index(self, min_segments: int = 4, min_rows: int = 2000, step_pages: int = 64, max_steps: int = 10_000) -> int:
        """Merge the full-text index's segments into one, in short steps; returns the steps run.

        Why: FTS5 writes each transaction's words as a new segment and merges only by level
        (up to three segments a level), so a store filled in batches holds 7-15 segments and
        every term of a query is looked up in each (a 10k-memory recall ran ~640 such probes).
        One segment cut a recall's CPU time by ~17 % at 10k (docs/recall.md, latency). Each
        step (``'merge', -step_pages``: merge any segments, at most that many pages of work)
        is its own short write, so writers wait milliseconds, not a whole ``optimize``.
        Does nothing below ``min_segments`` or in a store of fewer than ``min_rows`` memories
        (where the probes cost microseconds)."""
        with self._reading() as conn:
            rows = int(conn.execute("SELECT count(*) FROM (SELECT 1 FROM memories LIMIT ?)", (min_rows,)).fetchone()[0])
            segments = int(conn.execute("SELECT count(DISTINCT segid) FROM memories_fts_idx").fetchone()[0])
        if rows < min_rows or segments < min_segments:
            return 0
        steps = 0
        while steps < max_steps:
            with self.write() as tx:
                before = tx.conn.total_changes
                tx.conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES('merge', ?)", (-step_pages,))
                worked = tx.conn.total_changes - before >= 2  # FTS5's own sign that there was work left
            steps += 1
            if not worked:
                break
        return steps

    def keyword_scores(self, terms: Sequence[str], flt: Filter, limit: int) -> dict[str, float]:
        if not terms:
            return {}
        with self._reading() as conn:
            if flt.ids is not None and not limits_namespaces(flt) and conn.execute("SELECT 1 FROM memories_cjk LIMIT 1").fetchone() is None:
                # Known memories (a recall completing the scores of its vector candidates): their
                # ids come with their BM25 in the one statement, no second look-up by rowid.
                where, params = filter_sql(flt, DIALECT)
                known = conn.execute(
                    "SELECT m.id, bm25(memories_fts, 2.0, 1.0, 1.5) AS rank FROM memories m CROSS JOIN memories_fts "
                    f"ON memories_fts.rowid = m.rowid WHERE {where} AND memories_fts MATCH ? ORDER BY rank LIMIT ?",
                    [*params, fts_expression(terms), limit],
                ).fetchall()
                return {memory_id: -float(rank) for memory_id, rank in known}
            ranked = self._ranked(conn, terms, flt, limit)
            if not ranked:
                return {}
            ids = dict(
                conn.execute(
                    "SELECT rowid, id FROM memories WHERE rowid IN (SELECT value FROM json_each(?))", (json.dumps([r[0] for r in ranked]),)
                ).fetchall()
            )
        return {ids[rowid]: -float(rank) for rowid, rank in ranked if rowid in ids}

    def _ranked(self, conn: sqlite3.Connection, terms: Sequence[str], flt: Filter, limit: int) -> list[tuple[Any, ...]]:
        """(rowid, bm25 rank) of the best ``limit`` matches passing the filter, best first.

        Terms in scripts without spaces also match the character n-gram index
        (``memories_cjk``, :mod:`memmesh.recall.segment`); a memory matched by both adds
        the two BM25 ranks. A filter limiting namespaces is ranked with their statistics only
        (:mod:`memmesh.store.sqlite_bm25`): store-wide ones would tell a scoped key which words
        other namespaces hold.
        """
        # The n-gram index is empty in a store without text in unsegmented scripts: skip it.
        grams = conn.execute("SELECT 1 FROM memories_cjk LIMIT 1").fetchone() is not None
        if limits_namespaces(flt):
            return ranked_in_scope(conn, terms, flt, limit, grams, self._scope_totals)
        source, match_params = _match_source(terms, grams)
        where, params = filter_sql(flt, DIALECT)
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
    def _ranked_known(conn: sqlite3.Connection, expression: str, where: str, params: list[Any], limit: int) -> list[tuple[Any, ...]]:
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
    ) -> list[tuple[Any, ...]]:
        return conn.execute(
            f"SELECT r.rowid, r.rank FROM ({source}) r JOIN memories m ON m.rowid = r.rowid WHERE {where} ORDER BY r.rank LIMIT ?",
            [*match_params, *params, limit],
        ).fetchall()

    def vector_changes(self, since_seq: int) -> VectorChanges:
        with self._reading() as conn:
            conn.execute("BEGIN")
            try:
                seq = int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
                upserts, removed = self._vector_feed(conn, "seq > ? AND seq <= ?", (since_seq, seq))
            finally:
                conn.execute("COMMIT")
        return VectorChanges(upserts=upserts, removed=removed, seq=seq)

    def change_counter(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])

    @property
    def wal_path(self) -> str | None:
        """The file's write-ahead log (it is opened in WAL mode), written by every commit of
        every process: what a waiting process watches (bus/notify.py). None in memory."""
        return None if self.in_memory else f"{self.path}-wal"

    def others_commits(self, wait: bool = True) -> int | None:
        """A number that moves when another connection (another process) commits to this file
        and never for this store's own writes: ``PRAGMA data_version`` of the one writer
        connection, which SQLite keeps per connection. Reading it costs no I/O. It lets a
        waiter in this process notice other processes' commits without waking for its own.
        With ``wait=False``: None at once when the writer is busy (a write block runs, or it
        waits up to ``busy_timeout`` for another process's lock); see :meth:`commits_seen`."""
        if not self._write_lock.acquire(blocking=wait):
            return None
        try:
            self._refuse_if_closed()
            return int(self._writer.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"database error on {self.path}: {exc}") from exc
        finally:
            self._write_lock.release()

    def commits_seen(self) -> int:
        """``PRAGMA data_version`` of this thread's reader connection: it moves for every other
        connection's commits, this store's own writer's included (count those with
        ``own_commits``). For when the writer is busy (:meth:`others_commits`)."""
        with self._reading() as conn:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def vector_snapshot(self, model: str, dim: int | None) -> tuple[int, list[str], np.ndarray]:
        """Every vector of ``model`` (of ``dim``, or of its most common size when None) and the
        change counter they are current at, read in one snapshot straight into one float32
        matrix of exactly that many rows: the vector index's first load. No per-vector
        objects are built (the change feed's ``VectorRow`` list cost ~1.7 KB a vector on top
        of the matrix, and the heap kept it after the load: issue 21's footprint)."""
        with self._reading() as conn:
            conn.execute("BEGIN")
            try:
                seq = int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
                sizes = conn.execute(
                    "SELECT dim, count(*) FROM vectors WHERE model = ? GROUP BY dim ORDER BY count(*) DESC, dim", (model,)
                ).fetchall()
                size = next(((d, n) for d, n in sizes if dim is None or d == dim), None)
                if size is None:
                    return seq, [], np.zeros((0, dim or 0), dtype=np.float32)
                width, count = int(size[0]), int(size[1])
                ids: list[str] = []
                matrix = np.empty((count, width), dtype=np.float32)
                cursor = conn.execute(
                    "SELECT memory_id, vector FROM vectors WHERE model = ? AND dim = ? ORDER BY seq, memory_id", (model, width)
                )
                while rows := cursor.fetchmany(1024):  # ~0.4 MB of 8-bit codes at a time, decoded into place
                    start = len(ids)
                    ids += [row[0] for row in rows]
                    vector_codec.decode_many([row[1] for row in rows], width, matrix[start : len(ids)])
            finally:
                conn.execute("COMMIT")
        return seq, ids, matrix

    def changes_since(self, since: int, limit: int, skip_node: str | None = None) -> Changes:
        with self._reading() as conn:
            head = int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
            return self._changes_page(conn, since, head, limit, skip_node)

    def integrity_check(self) -> str:
        with self._reading() as conn:
            return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check").fetchall())

    def snapshot_to(self, dest: Path, *, node_id: str, now: datetime) -> SnapshotInfo:
        """Copy the database to ``dest`` with SQLite's online backup API in one step (one
        read transaction: one consistent moment; WAL writers carry on). Works for an
        in-memory store too; the copy is a plain file (journal mode DELETE).

        A copy that cannot be written (a full disk, a write error, a read-only folder) raises
        :class:`OSError` naming ``dest``, as a file the PostgreSQL dump cannot write does:
        the store being copied is fine, and the error must not name it."""
        with self._reading() as conn:
            target = sqlite3.connect(dest)
            try:
                conn.backup(target)
                target.execute("PRAGMA journal_mode = DELETE")
                memories = target.execute("SELECT count(*) FROM memories").fetchone()[0]
                links = target.execute("SELECT count(*) FROM links").fetchone()[0]
            except sqlite3.OperationalError as exc:
                failed = _unwritable(exc)
                if failed is None:
                    raise
                raise OSError(failed[0], failed[1], str(dest)) from exc
            finally:
                target.close()
        return SnapshotInfo(backend="sqlite", schema_version=self.schema_version, memories=memories, links=links)

    def close(self) -> None:
        """Close every connection, each once no read is running on it (threads still reading
        finish; later reads get a clear "closed" error)."""
        self._closed = True
        with self._readers_lock:
            for conn, lock in self._readers:
                with lock:
                    conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()


def _unwritable(exc: sqlite3.OperationalError) -> tuple[int, str] | None:
    """The errno and words for a SQLite error that means a file could not be written (a copy
    is only written, never read back from disk, while it is made); None for any other error."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL":
        return errno.ENOSPC, "the disk is full"
    if name.startswith("SQLITE_READONLY") or name.startswith("SQLITE_CANTOPEN"):
        return errno.EACCES, "the file cannot be written there (a read-only folder or file system?)"
    if name.startswith("SQLITE_IOERR_WRITE") or name in {"SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE"}:
        return errno.EIO, "a write failed (the disk is full, or a file size limit was reached)"
    return None


class SQLiteWriteTx(SQLWrites):
    """The write primitives, valid inside :meth:`SQLiteStore.write` (shared ones in
    :mod:`memmesh.store.sql.writes`)."""

    dialect = DIALECT

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._seq: int | None = None

    @contextmanager
    def bulk_cache(self) -> Iterator[None]:
        """A 64 MiB page cache for a bulk insert (a catch-up page), then the usual one again.

        Each new row lands at random places of its indexes (ids, content hashes) and of the
        full-text index; past ~100k memories those no longer fit SQLite's default 2 MiB
        cache, and inserting a page re-reads index pages for every row: ~1.6x the insert
        cost (measured 232 vs 146 µs a row into 100k). Only for the page, so a node's
        memory stays as it was between catch-ups."""
        before = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        self.conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(before)}")

    def next_seq(self) -> int:
        """The change number of this transaction: every change it makes shares it, because
        they become visible together; followers ask for changes with a higher number."""
        if self._seq is None:
            self._seq = int(
                self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq' RETURNING value").fetchone()[0]
            )
        return self._seq


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN … END;) whole."""
    statements: list[str] = []
    current: list[str] = []
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
