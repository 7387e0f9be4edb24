"""PostgreSQL + pgvector backend: the scale-out path, many stateless nodes on one database.

Concurrency model: reads take any pooled connection (autocommit, read committed). Writes
run in READ COMMITTED transactions that lock only what they touch, so writers on many
nodes proceed in parallel (one database-wide lock capped a cluster at one node's rate):

- a memory read for update is locked (``SELECT … FOR UPDATE``): concurrent updates of one
  memory queue up and each sees the previous one's result, so no update is lost;
- the service's check-then-insert rules (de-dup by content hash, title conflicts, a
  client-chosen id) take a transaction-scoped advisory lock on *that key* (namespace + hash,
  namespace + title, id) before looking, so two writers of the same content serialise and
  writers of different content do not;
- change numbers come from a sequence, and the vector change feed is read by transaction
  id against a snapshot watermark (:meth:`PostgresStore.vector_changes`), so a follower
  never skips a row that commits late.

No session may hold others up for long: every connection has ``statement_timeout``,
``lock_timeout`` (the busy timeout), ``idle_in_transaction_session_timeout`` (a frozen
node's open transaction is ended by the server, releasing its locks) and TCP keepalives.

Full text is a weighted ``tsvector`` (English config) ranked with ``ts_rank_cd``; vectors
live in a dimension-less pgvector column with one partial HNSW index per dimension in use.
psycopg errors are translated into memmesh errors where they enter (the store's
connections, :mod:`memmesh.store.postgres_conn`), naming the server and what to check. The
queries shared with SQLite are in :mod:`memmesh.store.sql`; this module keeps what only
PostgreSQL has: the pool, row-level write locks, the change-feed watermark, ``tsvector``
search and pgvector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types import TypeInfo
from psycopg_pool import PoolTimeout

from memmesh.clock import new_id
from memmesh.errors import CorruptDatabaseError, MemmeshError, NotFoundError, StorageError, UnavailableError
from memmesh.model import Memory
from memmesh.recall import segment
from memmesh.redact import redact_url
from memmesh.store.audit_sql import FLUSH_PG
from memmesh.store.base import Changes, Filter, VectorChanges, closed_error, not_unicode
from memmesh.store.logical import SnapshotInfo, write_logical_snapshot
from memmesh.store.migrations import load_migrations
from memmesh.store.pg_commit import begin_with, commit_then_flush
from memmesh.store.postgres_conn import (
    KEEPALIVES,
    POOL_WAIT_S,
    SNAPSHOT_LIMITS,
    QuickReconnectPool,
    connect_error,
    describe_server,
    first_line,
    forget_prepared,
    snapshot_tx,
    translate,
)
from memmesh.store.sql.dialect import PostgresDialect
from memmesh.store.sql.filters import filter_sql
from memmesh.store.sql.reads import SQLReads, read_meta, write_meta
from memmesh.store.sql.rows import N_MEMORY, prefixed, row_to_memory
from memmesh.store.sql.writes import SQLWrites

DIALECT = PostgresDialect()
APP_ID = "memmesh"
WRITE_LOCK_KEY = 0x6D656D6D657368
"""Advisory lock id ("memmesh" in ASCII) that serialises schema migrations (not writes)."""
MAX_HNSW_DIM = 4000
"""pgvector's HNSW limit for the ``halfvec`` type (schema 16); larger vectors are searched exactly."""
RANK_WEIGHTS = "{0.05, 0.5, 0.75, 1.0}"
"""ts_rank_cd weights {D, C, B, A} (each ≤ 1): content : tags : title = 1 : 1.5 : 2, as SQLite's bm25()."""


MIGRATIONS = load_migrations("postgres")
LATEST_SCHEMA = MIGRATIONS[-1][0]


def tsquery_sql(terms: Sequence[str]) -> str:
    """A tsquery expression ORing each term (``plainto_tsquery`` makes any token literal)."""
    return "(" + " || ".join(["plainto_tsquery('english'::regconfig, ?)"] * len(terms)) + ")"


class PostgresStore(SQLReads):
    """A memmesh database in PostgreSQL (with the pgvector extension)."""

    dialect = DIALECT

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 15_000,
        pool_size: int = 10,
        connect_timeout_s: int = 10,
        ann_index: bool = True,
        statement_timeout_ms: int = 10_000,
        idle_in_transaction_timeout_ms: int = 3_000,
        create: bool = True,
    ) -> None:
        self.url = redact_url(url)
        self.created = False
        """True when this open made the memmesh schema in an empty database."""
        self.ann_index = ann_index
        self.where = describe_server(url)
        self.busy_timeout_ms = busy_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self.idle_in_transaction_timeout_ms = idle_in_transaction_timeout_ms
        self.pool_size = max(1, pool_size)
        params = conninfo_to_dict(url)
        extra = {k: v for k, v in KEEPALIVES.items() if k not in params}
        self._conninfo = make_conninfo(url, connect_timeout=params.get("connect_timeout") or connect_timeout_s, **extra)
        self._local = threading.local()
        self._hnsw_dims: set[int] = set()
        self._feed_lock = threading.Lock()
        self._feed_marks: dict[int, int] = {}
        self._feed_dirty = 0
        with self._direct() as conn:
            self.created = self._schema_version(conn) == 0
            if self.created and not create:
                raise NotFoundError(f"no memmesh schema in the PostgreSQL database {self.where}; check the URL (nothing was created)")
            self.schema_version = self._migrate(conn)
            self._vector_info = TypeInfo.fetch(conn, "vector")
            halfvec = TypeInfo.fetch(conn, "halfvec")
            if halfvec is None:  # the migration to schema 16 needs it too; this says why
                raise StorageError(f"PostgreSQL at {self.where} has a pgvector without halfvec; run ALTER EXTENSION vector UPDATE (0.7+)")
            self._halfvec_info: TypeInfo = halfvec
            self._hnsw_dims = self._indexed_dims(conn)
        self._pool = QuickReconnectPool(
            self._conninfo,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            name="memmesh",
            configure=self._configure,
            # checks a connection before use only after it sat idle (QuickReconnectPool)
            kwargs={"autocommit": True},
        )
        try:
            self._pool.open(wait=True, timeout=float(connect_timeout_s))
        except PoolTimeout as exc:
            self._pool.close()
            raise UnavailableError(f"cannot open a connection pool to PostgreSQL at {self.where}: {exc}") from exc

    # -- connections -----------------------------------------------------------------------

    @contextmanager
    def _direct(self) -> Iterator[psycopg.Connection]:
        """A one-off connection (open, migrate), with connection failures explained."""
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise self._connect_error(exc) from exc
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            yield conn
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        finally:
            conn.close()

    def _connect_error(self, exc: psycopg.OperationalError) -> MemmeshError:
        return connect_error(exc, self.where)

    def _translate(self, exc: psycopg.Error) -> MemmeshError:
        """One psycopg error → the memmesh error a user can act on."""
        return translate(exc, self.where, self.busy_timeout_ms, self.statement_timeout_ms)

    def _configure(self, conn: psycopg.Connection) -> None:
        """Per pooled connection: UTC timestamps, the pgvector type adapters, and the limits
        that keep one slow or frozen session from holding up the others (the server enforces
        them, so they hold even when this process is paused)."""
        from pgvector.psycopg.halfvec import register_halfvec_info
        from pgvector.psycopg.vector import register_vector_info

        conn.execute(
            "SET TIME ZONE 'UTC'; "
            f"SET statement_timeout = {int(self.statement_timeout_ms)}; "
            f"SET lock_timeout = {int(self.busy_timeout_ms)}; "
            f"SET idle_in_transaction_session_timeout = {int(self.idle_in_transaction_timeout_ms)}; "
            "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
        )
        register_vector_info(conn, self._vector_info)
        register_halfvec_info(conn, self._halfvec_info)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection, failing fast when the server is unreachable: after a short
        wait the server is probed directly, so a request answers 503 within about a second
        instead of waiting for the pool; a busy but healthy pool gets the full busy timeout."""
        if self._pool.closed:
            raise closed_error(self.where)
        try:
            conn = self._pool.getconn(timeout=POOL_WAIT_S)
        except PoolTimeout:
            self._probe()
            try:
                conn = self._pool.getconn(timeout=max(0.1, self.busy_timeout_ms / 1000 - POOL_WAIT_S))
            except PoolTimeout as exc:
                raise UnavailableError(
                    f"all {self.pool_size} pooled connections to PostgreSQL at {self.where} stayed busy for "
                    f"{self.busy_timeout_ms} ms; raise storage.pool_size (and the server's max_connections to match) "
                    "or try again"
                ) from exc
        try:
            yield conn
        except psycopg.Error:
            forget_prepared(conn)  # a failed pipeline may have left psycopg's prepared cache out of step
            raise
        finally:
            self._pool.putconn(conn)

    def _probe(self) -> None:
        """Raise the right "unavailable" error when a direct connection fails too."""
        try:
            psycopg.connect(self._conninfo, autocommit=True, connect_timeout=2).close()
        except psycopg.OperationalError as exc:
            raise self._connect_error(exc) from exc

    @property
    def conninfo(self) -> str:
        """The connection string this store connects with (credentials included): for a
        module that needs a connection of its own outside the pool, e.g. the bus's LISTEN."""
        return self._conninfo

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection]:
        """A pooled connection for reads (or this thread's snapshot connection)."""
        pinned = getattr(self._local, "snapshot", None)
        if pinned is not None:
            yield pinned
            return
        try:
            with self._connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            self._explain_lost(exc)
            raise self._translate(exc) from exc
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        except UnicodeEncodeError as exc:
            raise not_unicode(exc) from exc

    def _explain_lost(self, exc: psycopg.OperationalError) -> None:
        """A connection lost mid-statement: when the server itself is gone, raise the
        "cannot connect … is it running" error instead. (A pooled connection used in the last
        CHECK_IDLE_S is handed out unchecked, so a server that just stopped shows here first.)"""
        if exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")):
            self._probe()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read on this thread inside the block sees one consistent database snapshot
        (REPEATABLE READ, read only): what a logical backup or a migration needs. The
        snapshot holds no row locks, so it may stay idle while the caller writes elsewhere
        (the idle-in-transaction limit is lifted for it)."""
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(SNAPSHOT_LIMITS)
                self._local.snapshot = conn
                try:
                    yield
                finally:
                    self._local.snapshot = None
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    @contextmanager
    def write(self) -> Iterator[PostgresWriteTx]:
        """One write transaction: commits on success, rolls back on any error. It locks only
        the rows and keys it touches (see the module doc). A connection lost while committing
        leaves the outcome unknown, and the error says so."""
        active = getattr(self._local, "tx", None)
        if active is not None:  # nested use on one thread joins the open transaction
            yield active
            return
        phase = "open"
        tx: PostgresWriteTx | None = None
        try:
            with self._connection() as conn:
                # BEGIN and COMMIT by hand, not conn.transaction(): BEGIN goes out with the first
                # statement (PostgresWriteTx.conn, .begin_with), and a commit that owes a flush
                # is sent with the flush in one round trip (commit_then_flush). No xid statement here:
                # memmesh_next_change() takes the xid itself before a change number (schema 25),
                # which the change feed relies on (vector_changes).
                try:
                    tx = PostgresWriteTx(conn, self._hnsw_dims if self.ann_index else None)  # sends BEGIN when first used
                    self._local.tx = tx
                    try:
                        yield tx
                    finally:
                        self._local.tx = None
                except BaseException:
                    _rollback_quietly(conn)
                    raise
                phase = "commit"
                if tx.flush_owed:  # an asynchronous commit: durable once the WAL is flushed past it
                    commit_then_flush(conn, tx.on_commit)
                else:
                    if tx.begun:  # (a transaction that ran no statement has nothing to commit)
                        conn.execute("COMMIT")
                    for hook in tx.on_commit:
                        hook()
                phase = "done"
        except psycopg.OperationalError as exc:
            if phase == "commit":
                raise UnavailableError(
                    f"lost the connection to PostgreSQL at {self.where} while committing ({first_line(exc)}): the write "
                    "may or may not have been stored; read it back, or retry with the same client-chosen id "
                    "(the `id` field), which makes the retry safe"
                ) from exc
            self._explain_lost(exc)
            raise self._translate(exc) from exc
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        except UnicodeEncodeError as exc:  # rolled back above
            raise not_unicode(exc) from exc
        finally:
            if tx is not None:  # committed or not: release what the transaction's writer held in process
                for hook in tx.on_end:
                    hook()

    def in_write(self) -> bool:
        """Whether this thread has a write transaction open (a :meth:`write` now would join it)."""
        return getattr(self._local, "tx", None) is not None

    def make_commits_durable(self) -> None:
        """Wait until every commit made so far on the server is durable: what a checkpoint
        needs before it signs entries it read (an appender's commit may be asynchronous, its
        flush still to come: :func:`memmesh.store.audit_sql.lock_chain`). On a pooled
        connection, never this thread's read-only snapshot."""
        try:
            with self._connection() as conn:
                conn.execute(FLUSH_PG).fetchall()
        except psycopg.OperationalError as exc:
            self._explain_lost(exc)
            raise self._translate(exc) from exc
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    # -- schema ------------------------------------------------------------------------------

    def _migrate(self, conn: psycopg.Connection) -> int:
        """Bring the schema up to date under the write lock (many nodes may start at once)."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            current = self._schema_version(conn)
            if current > LATEST_SCHEMA:
                raise CorruptDatabaseError(
                    f"PostgreSQL database {self.where} has memmesh schema version {current}, newer than this memmesh "
                    f"supports ({LATEST_SCHEMA}); upgrade memmesh"
                )
            self._ensure_vector_extension(conn)
            for number, _name, sql in MIGRATIONS:
                if number > current:
                    try:
                        with conn.transaction():
                            conn.execute(sql)
                    except pg_errors.DuplicateTable as exc:
                        raise CorruptDatabaseError(
                            f"PostgreSQL database {self.where} already has tables memmesh did not create ({exc}); "
                            "use an empty database, or another schema via ?options=-csearch_path%3Dmemmesh"
                        ) from exc
                    write_meta(conn, DIALECT, "schema_version", str(number))
            if read_meta(conn, DIALECT, "app") is None:
                write_meta(conn, DIALECT, "app", APP_ID)
                write_meta(conn, DIALECT, "node_id", new_id())
        return max(current, LATEST_SCHEMA)

    def _schema_version(self, conn: psycopg.Connection) -> int:
        if conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0] is False:  # type: ignore[index]
            return 0
        app = read_meta(conn, DIALECT, "app")
        if app is not None and app != APP_ID:
            raise CorruptDatabaseError(f"PostgreSQL database {self.where} belongs to another application ({app})")
        if app is None and read_meta(conn, DIALECT, "schema_version") is None:
            raise CorruptDatabaseError(
                f"PostgreSQL database {self.where} has a table named meta that memmesh did not create; "
                "use an empty database or another schema"
            )
        return int(read_meta(conn, DIALECT, "schema_version") or 0)

    def _ensure_vector_extension(self, conn: psycopg.Connection) -> None:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
            return
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        if not available:
            raise StorageError(
                f"PostgreSQL at {self.where} does not have the pgvector extension installed; install pgvector on the server "
                "(e.g. apt install postgresql-NN-pgvector), then run CREATE EXTENSION vector in the database"
            )
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except pg_errors.InsufficientPrivilege as exc:
            raise StorageError(
                f"PostgreSQL database {self.where} lacks the pgvector extension and this role may not create it; "
                "have a superuser (or the database owner, where pgvector is trusted) run CREATE EXTENSION vector "
                "in that database, then retry"
            ) from exc

    @staticmethod
    def _indexed_dims(conn: psycopg.Connection) -> set[int]:
        rows = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'vectors' AND indexname LIKE 'vectors_hnsw_%%'")
        return {int(name.rsplit("_", 1)[1]) for (name,) in rows}

    # -- reads (the shared ones are in memmesh.store.sql.reads) --------------------------------

    def _db_size(self, conn: psycopg.Connection) -> int:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]

    def _keyword_rows(self, columns: str, terms: Sequence[str], flt: Filter, limit: int) -> list[tuple[Any, ...]]:
        """``columns`` and the ``ts_rank_cd`` rank of the best ``limit`` matches passing the
        filter, best first (ties by id)."""
        where, params = filter_sql(flt, DIALECT)
        grams = segment.tsquery_text(terms) or ""  # an empty tsquery matches nothing
        # Words through the English tsvector, plus the n-grams of scripts written without
        # spaces (schema 16, ``memories.cjk``); a memory matched in both adds the two ranks,
        # as SQLite adds its two BM25 scores. An English-only store has an empty n-gram index.
        sql = (
            f"WITH q AS (SELECT {tsquery_sql(terms)} AS query, ?::tsquery AS grams) "
            f"SELECT {columns}, ts_rank_cd('{RANK_WEIGHTS}'::float4[], m.fts, q.query, 1) + ts_rank_cd(m.cjk, q.grams, 1) AS rank "
            f"FROM memories m, q WHERE (m.fts @@ q.query OR m.cjk @@ q.grams) AND {where} ORDER BY rank DESC, m.id LIMIT ?"
        )
        with self._reading() as conn:
            return conn.execute(DIALECT.q(sql), [*terms, grams, *params, limit]).fetchall()

    def keyword_search(self, terms: Sequence[str], flt: Filter, limit: int) -> list[tuple[Memory, float]]:
        terms = [t for t in terms if t and t.strip()]
        if not terms:
            return []
        return [(row_to_memory(row, DIALECT), float(row[N_MEMORY])) for row in self._keyword_rows(prefixed("m"), terms, flt, limit)]

    def keyword_scores(self, terms: Sequence[str], flt: Filter, limit: int) -> dict[str, float]:
        terms = [t for t in terms if t and t.strip()]
        if not terms:
            return {}
        return {mid: float(rank) for mid, rank in self._keyword_rows("m.id", terms, flt, limit)}

    def vector_changes(self, since_seq: int) -> VectorChanges:
        """Vector upserts and removals since the cursor ``since_seq`` (0: everything).

        Writers run in parallel, so change numbers are not in commit order and "rows with a
        higher number" would skip a row that commits late. The feed is read by transaction id
        instead: each read takes a snapshot and remembers its watermark, the oldest
        transaction still running (``pg_snapshot_xmin``); every transaction below it had
        finished, so the next read asks for rows written by transactions at or above it (a
        row may come twice; applying it is idempotent).

        The returned cursor is the change counter read *before* the snapshot when every
        change number up to it had been committed (so ``change_counter() == cursor`` means
        there is nothing new); otherwise a negative token that never equals the counter, so
        the next refresh reads again and picks up the late commits. "Committed" is read from
        the writers' change-number locks (:meth:`_feed_window`), not from the snapshot alone:
        a writer whose xid is the newest leaves the snapshot's xmin equal to its xmax, which
        looks like "nothing running" while that writer still holds a number."""
        with self._reading() as conn:
            head, counter = self._feed_window(conn)
            with snapshot_tx(conn):
                xmin, running = conn.execute(
                    "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmin(s) <> pg_snapshot_xmax(s) FROM pg_current_snapshot() s"
                ).fetchone()  # type: ignore[misc]
                with self._feed_lock:
                    mark = self._feed_marks.get(since_seq) if since_seq else None
                since = "TRUE" if mark is None else "txid >= ?::text::xid8"
                args = () if mark is None else (str(mark),)
                upserts, removed = self._vector_feed(conn, since, args)
        with self._feed_lock:
            if running or head < counter:
                self._feed_dirty += 1
                cursor = -self._feed_dirty
            else:
                cursor = counter
            self._feed_marks.pop(cursor, None)
            self._feed_marks[cursor] = int(xmin)
            while len(self._feed_marks) > 256:  # forget the oldest cursors (an unknown one means "from the start")
                del self._feed_marks[next(iter(self._feed_marks))]
        return VectorChanges(upserts=upserts, removed=removed, seq=cursor)

    @classmethod
    def _feed_head(cls, conn: psycopg.Connection) -> int:
        """The highest change number below which every transaction has ended: one below the
        smallest number a writer still holds, or the sequence's last value when none does."""
        return cls._feed_window(conn)[0]

    @classmethod
    def _feed_window(cls, conn: psycopg.Connection) -> tuple[int, int]:
        """``(head, last)``: the feed's head (see :meth:`_feed_head`) and the sequence's last
        value, read together; ``head < last`` means a writer still holds a number up to ``last``.
        The exclusive gate waits only for writers inside ``memmesh_next_change()``."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_lock(7262001)")
            try:
                last = cls._counter(conn)
                row = conn.execute(
                    "SELECT min(((classid::bigint << 32) | objid::bigint)) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
                    # pg_locks lists every database's locks; change numbers are per database
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND ((classid::bigint << 32) | objid::bigint) BETWEEN 1 AND %s",
                    (last,),
                ).fetchone()
            finally:
                conn.execute("SELECT pg_advisory_unlock(7262001)")
        held = row[0] if row else None
        return (last if held is None else int(held) - 1), last

    @staticmethod
    def _counter(conn: psycopg.Connection) -> int:
        """Change numbers handed out so far (the sequence's last value; 0 on a new database)."""
        row = conn.execute("SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM memmesh_changes").fetchone()
        return int(row[0])  # type: ignore[index]

    def vector_search(self, model: str, query: np.ndarray, k: int, flt: Filter) -> list[tuple[str, float]]:
        """The ``k`` memories passing ``flt`` nearest to ``query`` (cosine), searched in the
        database: with ``storage.pg_ann_index`` through the HNSW index of that dimension, where
        ``hnsw.iterative_scan`` keeps scanning until enough rows pass the filter (so selective
        filters still fill ``k``); without it, an exact scan."""
        vec = np.ascontiguousarray(query, dtype=np.float32)
        dim = int(vec.shape[0])
        where, params = filter_sql(flt, DIALECT)
        distance = f"v.embedding::halfvec({dim}) <=> ?::halfvec({dim})"
        sql = (
            f"SELECT v.memory_id, 1 - ({distance}) AS cosine FROM vectors v JOIN memories m ON m.id = v.memory_id "
            f"WHERE v.model = ? AND v.dim = {dim} AND {where} ORDER BY {distance} LIMIT ?"
        )
        with self._reading() as conn, conn.transaction():
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            # pgvector's default ef_search (40) finds ~55-80 % of the true top 10 among 384-d
            # embeddings; 200 finds ~99 % for ~20 ms (bench/backend_bench.py --vector-sizes).
            conn.execute(f"SET LOCAL hnsw.ef_search = {max(200, min(2 * int(k), 1000))}")
            rows = conn.execute(DIALECT.q(sql), [vec, model, *params, vec, k]).fetchall()
        return sorted(((mid, float(cos)) for mid, cos in rows), key=lambda r: (-r[1], r[0]))

    def change_counter(self) -> int:
        with self._reading() as conn:
            return self._counter(conn)

    def changes_since(self, since: int, limit: int, skip_node: str | None = None) -> Changes:
        with self._reading() as conn:
            head = self._feed_head(conn)  # before the snapshot: every change up to it has committed
            with snapshot_tx(conn):
                return self._changes_page(conn, since, head, limit, skip_node)

    def integrity_check(self) -> str:
        """PostgreSQL guards its own pages; this checks memmesh's invariants: the vector
        extension, the change counter, and that vectors and tags agree with their rows."""
        problems = []
        with self._reading() as conn:
            if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
                problems.append("the pgvector extension is missing")
            seq = self._counter(conn)
            top = conn.execute(
                "SELECT greatest((SELECT max(seq) FROM memories), (SELECT max(seq) FROM vectors), "
                "(SELECT max(seq) FROM tombstones), (SELECT max(seq) FROM links))"
            ).fetchone()[0]  # type: ignore[index]
            if top is not None and top > seq:
                problems.append(f"change counter {seq} is behind a stored change {top}")
            orphans = conn.execute(
                "SELECT count(*) FROM vectors v LEFT JOIN memories m ON m.id = v.memory_id WHERE m.id IS NULL"
            ).fetchone()[0]  # type: ignore[index]
            if orphans:
                problems.append(f"{orphans} vectors belong to no memory")
        return "; ".join(problems) or "ok"

    def snapshot_to(self, dest: Path, *, node_id: str, now: datetime) -> SnapshotInfo:
        """A logical dump (``memmesh-snapshot`` JSON Lines, restorable into any backend)
        read inside one REPEATABLE READ transaction, so it is one consistent moment."""
        with self.snapshot():
            return write_logical_snapshot(self, dest, backend="postgresql", node_id=node_id, now=now)

    def close(self) -> None:
        self._pool.close()


def _rollback_quietly(conn: psycopg.Connection) -> None:
    """Roll back after a failed write body; a rollback that fails too (the connection is gone)
    must not hide the error that failed the body (the pool discards a broken connection)."""
    with suppress(psycopg.Error):
        conn.rollback()


class PostgresWriteTx(SQLWrites):
    """The write primitives, valid inside :meth:`PostgresStore.write` (shared ones in
    :mod:`memmesh.store.sql.writes`)."""

    dialect = DIALECT

    def __init__(self, conn: psycopg.Connection, hnsw_dims: set[int] | None) -> None:
        self._conn = conn
        self.begun = False
        """Whether BEGIN was sent: not before the transaction's first statement, so that an
        audit-only append can send it with its one statement (:meth:`begin_with`)."""
        self._hnsw_dims = hnsw_dims
        self.flush_owed = False
        self.on_commit: list[Callable[[], None]] = []
        self.on_end: list[Callable[[], None]] = []

    @property
    def conn(self) -> psycopg.Connection:
        """The transaction's connection, its BEGIN sent (on first use)."""
        if not self.begun:
            self._conn.execute("BEGIN")
            self.begun = True
        return self._conn

    def begin_with(self, sql: str, params: Sequence[Any]) -> tuple[str | None, ...]:
        """Run ``sql`` (``%s`` placeholders) as this transaction's first statement, BEGIN sent in
        the same round trip (:func:`memmesh.store.pg_commit.begin_with`); its first row as text.
        When the transaction has begun already, a plain statement."""
        if self.begun:
            row = self._conn.execute(sql, tuple(params)).fetchone()
            return tuple(None if v is None else ("t" if v is True else "f" if v is False else str(v)) for v in row or ())
        self.begun = True  # (a failure below leaves it begun and aborted: the caller rolls back)
        return begin_with(self._conn, sql, params)

    def flush_after_commit(self) -> None:
        """This transaction's commit was made asynchronous (the audit chain's lock is then not
        held through the disk flush: :func:`memmesh.store.audit_sql.lock_chain`): after the
        commit, :meth:`PostgresStore.write` waits for the WAL flush on the same connection
        before the writer goes on, so the write is durable when it is acknowledged."""
        self.flush_owed = True

    def hooks(self, on_commit: Callable[[], None], on_end: Callable[[], None]) -> None:
        """Run ``on_commit`` right after this transaction commits (before any flush it owes) and
        ``on_end`` when it ends, committed or not, on the writer's thread: the audit caches its
        chain head and lets the process's next appender go there (see AuditLog.append_many)."""
        self.on_commit.append(on_commit)
        self.on_end.append(on_end)

    def next_seq(self) -> int:
        """A fresh change number (a sequence: no writer waits for another's commit), held by
        this transaction until it ends, so the change feed never reads past it (schema 7)."""
        return int(self._one("SELECT memmesh_next_change()")[0])

    def _lock_key(self, *parts: str) -> None:
        """Serialise writers of one key (an id, a content hash, a title) until commit; writers of
        other keys are not held up. The lock covers a row that does not exist yet, which row
        locks cannot."""
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("\x1f".join(parts),))

    def _ensure_vector_index(self, dim: int) -> None:
        """One partial HNSW index per dimension, created the first time that size is stored
        (only with ``storage.pg_ann_index``: the default recall index lives in process)."""
        if self._hnsw_dims is None or dim in self._hnsw_dims or dim > MAX_HNSW_DIM:
            return
        if self._one("SELECT to_regclass(?) IS NOT NULL", (f"vectors_hnsw_{dim}",))[0]:  # another node made it
            self._hnsw_dims.add(dim)
            return
        # One creator at a time (two would deadlock on the table lock), and no statement
        # timeout: on a store upgraded from pg_ann_index = false this indexes existing rows.
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
        self.conn.execute("SET LOCAL statement_timeout = 0")
        self.conn.execute(
            f"CREATE INDEX IF NOT EXISTS vectors_hnsw_{dim} ON vectors "
            f"USING hnsw ((embedding::halfvec({dim})) halfvec_cosine_ops) WHERE dim = {dim}"
        )
        self._hnsw_dims.add(dim)
