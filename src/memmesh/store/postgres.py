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
psycopg errors are translated into memmesh errors where they enter (here), naming the
server and what to check.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import numpy as np
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types import TypeInfo
from psycopg.types.json import Json, Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from memmesh.clock import new_id, parse_ts
from memmesh.errors import CorruptDatabaseError, InvalidInputError, MemmeshError, NotFoundError, StorageError, UnavailableError
from memmesh.model import Conflict, HistoryEntry, Link, Memory, NamespaceCount, PeerState, Stats, TierCount, Tombstone
from memmesh.redact import redact_url
from memmesh.store.base import VISIBLE_LINK, Changes, Filter, VectorChanges, VectorRow, cut_page
from memmesh.store.postgres_access import AGENT_COLUMNS, AccessReads, AccessWrites, _agent

APP_ID = "memmesh"
WRITE_LOCK_KEY = 0x6D656D6D657368
"""Advisory lock id ("memmesh" in ASCII) that serialises schema migrations (not writes)."""
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2", "keepalives_count": "3"}
"""libpq TCP keepalives (unless the URL sets its own): a dead server is noticed in ~11 s."""
POOL_WAIT_S = 1.0
"""How long a request waits for a pooled connection before checking the server is up."""
MAX_HNSW_DIM = 2000
"""pgvector's HNSW limit for the ``vector`` type; larger vectors are searched exactly."""
RANK_WEIGHTS = "{0.05, 0.5, 0.75, 1.0}"
"""ts_rank_cd weights {D, C, B, A} (each ≤ 1): content : tags : title = 1 : 1.5 : 2, as SQLite's bm25()."""
MEMORY_FIELDS = (
    "id",
    "namespace",
    "title",
    "content",
    "tier",
    "kind",
    "tags",
    "priority",
    "confidence",
    "source",
    "agent_id",
    "metadata",
    "created_at",
    "updated_at",
    "expires_at",
    "valid_from",
    "valid_to",
    "access_count",
    "last_accessed_at",
    "content_hash",
    "version",
)
MEMORY_COLUMNS = ", ".join(MEMORY_FIELDS)
LINK_COLUMNS = "source_id, target_id, relation, valid_from, valid_until, observed_by, created_at"


def load_migrations() -> list[tuple[int, str, str]]:
    """The numbered PostgreSQL migrations shipped in the package, in order: (number, name, sql)."""
    folder = resources.files("memmesh.store.migrations") / "postgres"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


MIGRATIONS = load_migrations()
LATEST_SCHEMA = MIGRATIONS[-1][0]


def describe_server(url: str) -> str:
    """``user@host:port/dbname`` for messages: where we tried to go, never the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise InvalidInputError(f"bad PostgreSQL URL: {exc}; write postgresql://user:password@host:5432/dbname") from None
    host = parts.get("host") or "localhost"
    if host.startswith("/"):
        host = f"socket {host}"
    port = parts.get("port") or "5432"
    return f"{parts.get('user') or '(default user)'}@{host}:{port}/{parts.get('dbname') or '(default db)'}"


def memory_params(memory: Memory) -> dict[str, Any]:
    """Column values for a Memory (timestamps stay datetimes; JSON columns as Jsonb)."""
    data = {name: getattr(memory, name) for name in MEMORY_FIELDS}
    data["tier"] = memory.tier.value
    data["kind"] = memory.kind.value
    data["tags"] = list(memory.tags)
    data["metadata"] = Jsonb(memory.metadata)
    data["version"] = Jsonb(memory.version.model_dump(mode="json"))
    return data


def row_to_memory(row: Sequence[Any]) -> Memory:
    """A Memory from a row selected with MEMORY_COLUMNS (in that order)."""
    return Memory.model_validate(dict(zip(MEMORY_FIELDS, row[:21], strict=True)))


def filter_sql(flt: Filter, alias: str = "m") -> tuple[str, list[Any]]:
    """WHERE clauses and parameters for a Filter: the same rules as the SQLite backend's."""
    clauses: list[str] = []
    params: list[Any] = []
    if not flt.include_expired:
        clauses.append(f"({alias}.expires_at IS NULL OR {alias}.expires_at > %s)")
        params.append(flt.now)
    for roots in ([flt.namespace] if flt.namespace else None, flt.scopes):
        if roots is not None:
            # Each root itself or anything below it; '0' is the byte after '/' (C collation).
            subtree = f"({alias}.namespace = %s OR ({alias}.namespace > %s AND {alias}.namespace < %s))"
            clauses.append("(" + (" OR ".join([subtree] * len(roots)) or "FALSE") + ")")
            for root in roots:
                params += [root, root + "/", root + "0"]
    if flt.tags:
        clauses.append(f"{alias}.tags @> %s::text[]")
        params.append(list(flt.tags))
    for column in ("tier", "kind", "agent_id"):
        value = getattr(flt, column)
        if value is not None:
            clauses.append(f"{alias}.{column} = %s")
            params.append(value)
    if flt.since is not None:
        clauses.append(f"{alias}.created_at >= %s")
        params.append(flt.since)
    if flt.until is not None:
        clauses.append(f"{alias}.created_at < %s")
        params.append(flt.until)
    if flt.as_of is not None:
        clauses.append(f"({alias}.valid_from IS NULL OR {alias}.valid_from <= %s) AND ({alias}.valid_to IS NULL OR {alias}.valid_to > %s)")
        params += [flt.as_of, flt.as_of]
    if flt.ids is not None:
        clauses.append(f"{alias}.id = ANY(%s::text[])")
        params.append(list(flt.ids))
    return (" AND ".join(clauses) or "TRUE"), params


def tsquery_sql(terms: Sequence[str]) -> str:
    """A tsquery expression ORing each term (``plainto_tsquery`` makes any token literal)."""
    return "(" + " || ".join(["plainto_tsquery('english'::regconfig, %s)"] * len(terms)) + ")"


class PostgresStore(AccessReads):
    """A memmesh database in PostgreSQL (with the pgvector extension)."""

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
            self._hnsw_dims = self._indexed_dims(conn)
        self._pool = QuickReconnectPool(
            self._conninfo,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            name="memmesh",
            configure=self._configure,
            check=ConnectionPool.check_connection,
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
        text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        lowered = str(exc).lower()
        if "password authentication failed" in lowered or "no password supplied" in lowered or "authentication failed" in lowered:
            return StorageError(
                f"PostgreSQL at {self.where} refused the credentials ({text}); "
                "check the user and password in the URL, PGPASSWORD or ~/.pgpass"
            )
        if "does not exist" in lowered and "database" in lowered:
            return StorageError(f"PostgreSQL at {self.where}: {text}; create it first (createdb, or CREATE DATABASE)")
        if "role" in lowered and "does not exist" in lowered:
            return StorageError(f"PostgreSQL at {self.where}: {text}; check the user name in the URL")
        if "too many clients" in lowered or "too many connections" in lowered or "remaining connection slots" in lowered:
            return UnavailableError(
                f"PostgreSQL at {self.where} has no free connection slot ({text}); the server's max_connections is "
                "used up: lower storage.pool_size on the nodes, or raise max_connections on the server, then try again"
            )
        if "starting up" in lowered or "shutting down" in lowered or "recovery" in lowered:
            return UnavailableError(f"PostgreSQL at {self.where} is not accepting connections yet ({text}); try again shortly")
        return UnavailableError(
            f"cannot connect to PostgreSQL at {self.where}: {text}; "
            "check that the server is running and the host, port and firewall allow the connection"
        )

    def _configure(self, conn: psycopg.Connection) -> None:
        """Per pooled connection: UTC timestamps, the pgvector type adapters, and the limits
        that keep one slow or frozen session from holding up the others (the server enforces
        them, so they hold even when this process is paused)."""
        from pgvector.psycopg.vector import register_vector_info

        conn.execute(
            "SET TIME ZONE 'UTC'; "
            f"SET statement_timeout = {int(self.statement_timeout_ms)}; "
            f"SET lock_timeout = {int(self.busy_timeout_ms)}; "
            f"SET idle_in_transaction_session_timeout = {int(self.idle_in_transaction_timeout_ms)}; "
            "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
        )
        register_vector_info(conn, self._vector_info)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection, failing fast when the server is unreachable: after a short
        wait the server is probed directly, so a request answers 503 within about a second
        instead of waiting for the pool; a busy but healthy pool gets the full busy timeout."""
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
        finally:
            self._pool.putconn(conn)

    def _probe(self) -> None:
        """Raise the right "unavailable" error when a direct connection fails too."""
        try:
            psycopg.connect(self._conninfo, autocommit=True, connect_timeout=2).close()
        except psycopg.OperationalError as exc:
            raise self._connect_error(exc) from exc

    def _translate(self, exc: psycopg.Error) -> MemmeshError:
        """One psycopg error → the memmesh error a user can act on."""
        if isinstance(exc, MemmeshError):
            return exc
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, pg_errors.LockNotAvailable):
            return UnavailableError(
                f"PostgreSQL at {self.where}: a lock was not granted within {self.busy_timeout_ms} ms "
                "(storage.busy_timeout_ms): another transaction is writing the same memory or holds a table lock; "
                "nothing was stored; try again"
            )
        if isinstance(exc, pg_errors.DeadlockDetected | pg_errors.SerializationFailure):
            return UnavailableError(
                f"PostgreSQL at {self.where}: this write and a concurrent one waited on each other, so this one was "
                "cancelled and nothing was stored; try again"
            )
        if isinstance(exc, pg_errors.QueryCanceled):
            return UnavailableError(
                f"PostgreSQL at {self.where}: a statement ran longer than storage.statement_timeout_ms "
                f"({self.statement_timeout_ms} ms): the server is overloaded or a table is locked; try again, "
                "or raise storage.statement_timeout_ms"
            )
        if isinstance(exc, psycopg.DataError):
            return InvalidInputError(f"PostgreSQL refused a value: {message}")
        if isinstance(exc, psycopg.OperationalError):
            return UnavailableError(
                f"lost the connection to PostgreSQL at {self.where}: {message}; check that the server is up, then try again"
            )
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return StorageError(f"PostgreSQL at {self.where}: {message}; grant the memmesh role rights on its tables")
        return StorageError(f"database error on PostgreSQL at {self.where}: {message}")

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
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

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
        try:
            with self._connection() as conn:
                with conn.transaction():
                    # An xid before any change number: the change feed relies on it (vector_changes).
                    conn.execute("SELECT pg_current_xact_id()")
                    tx = PostgresWriteTx(conn, self._hnsw_dims if self.ann_index else None)
                    self._local.tx = tx
                    try:
                        yield tx
                    finally:
                        self._local.tx = None
                    phase = "commit"
                phase = "done"
        except psycopg.OperationalError as exc:
            if phase == "commit":
                raise UnavailableError(
                    f"lost the connection to PostgreSQL at {self.where} while committing ({_first_line(exc)}): the write "
                    "may or may not have been stored; read it back, or retry with the same client-chosen id "
                    "(the `id` field), which makes the retry safe"
                ) from exc
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
                            conn.execute(sql)  # type: ignore[arg-type]
                    except pg_errors.DuplicateTable as exc:
                        raise CorruptDatabaseError(
                            f"PostgreSQL database {self.where} already has tables memmesh did not create ({exc}); "
                            "use an empty database, or another schema via ?options=-csearch_path%3Dmemmesh"
                        ) from exc
                    _set_meta(conn, "schema_version", str(number))
            if _get_meta(conn, "app") is None:
                _set_meta(conn, "app", APP_ID)
                _set_meta(conn, "node_id", new_id())
        return max(current, LATEST_SCHEMA)

    def _schema_version(self, conn: psycopg.Connection) -> int:
        if conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0] is False:  # type: ignore[index]
            return 0
        app = _get_meta(conn, "app")
        if app is not None and app != APP_ID:
            raise CorruptDatabaseError(f"PostgreSQL database {self.where} belongs to another application ({app})")
        if app is None and _get_meta(conn, "schema_version") is None:
            raise CorruptDatabaseError(
                f"PostgreSQL database {self.where} has a table named meta that memmesh did not create; "
                "use an empty database or another schema"
            )
        return int(_get_meta(conn, "schema_version") or 0)

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

    # -- reads ---------------------------------------------------------------------------------

    def get(self, memory_id: str, now: datetime | None = None) -> Memory | None:
        with self._reading() as conn:
            row = conn.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = %s", (memory_id,)).fetchone()
        return row_to_memory(row) if row else None

    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = %s AND content_hash = %s", (namespace, content_hash)
            ).fetchone()
        return row_to_memory(row) if row else None

    def get_many(self, ids: Sequence[str]) -> list[Memory]:
        if not ids:
            return []
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ANY(%s::text[])", (list(ids),)).fetchall()
        by_id = {row[0]: row_to_memory(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def list(self, flt: Filter, limit: int, after: tuple[str, str] | None = None) -> list[Memory]:
        where, params = filter_sql(flt)
        if after is not None:
            moment = parse_ts(after[0])
            where += " AND (m.created_at < %s OR (m.created_at = %s AND m.id < %s))"
            params += [moment, moment, after[1]]
        sql = f"SELECT {_prefixed('m')} FROM memories m WHERE {where} ORDER BY m.created_at DESC, m.id DESC LIMIT %s"
        with self._reading() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        return [row_to_memory(row) for row in rows]

    def keyword_search(self, terms: Sequence[str], flt: Filter, limit: int) -> list[tuple[Memory, float]]:
        terms = [t for t in terms if t and t.strip()]
        if not terms:
            return []
        where, params = filter_sql(flt)
        sql = (
            f"WITH q AS (SELECT {tsquery_sql(terms)} AS query) "
            f"SELECT {_prefixed('m')}, ts_rank_cd('{RANK_WEIGHTS}'::float4[], m.fts, q.query, 1) AS rank "
            f"FROM memories m, q WHERE m.fts @@ q.query AND {where} ORDER BY rank DESC, m.id LIMIT %s"
        )
        with self._reading() as conn:
            rows = conn.execute(sql, [*terms, *params, limit]).fetchall()
        return [(row_to_memory(row), float(row[21])) for row in rows]

    def keyword_scores(self, terms: Sequence[str], flt: Filter, limit: int) -> dict[str, float]:
        terms = [t for t in terms if t and t.strip()]
        if not terms:
            return {}
        where, params = filter_sql(flt)
        sql = (
            f"WITH q AS (SELECT {tsquery_sql(terms)} AS query) "
            f"SELECT m.id, ts_rank_cd('{RANK_WEIGHTS}'::float4[], m.fts, q.query, 1) AS rank "
            f"FROM memories m, q WHERE m.fts @@ q.query AND {where} ORDER BY rank DESC, m.id LIMIT %s"
        )
        with self._reading() as conn:
            return {mid: float(rank) for mid, rank in conn.execute(sql, [*terms, *params, limit])}

    def neighbours(self, ids: Sequence[str], span: int, window_s: float) -> dict[str, list[tuple[str, int]]]:
        if not ids or span < 1:
            return {}
        window = timedelta(seconds=window_s)
        found: dict[str, list[tuple[str, int]]] = {}
        with self._reading() as conn:
            targets = conn.execute("SELECT id, namespace, created_at FROM memories WHERE id = ANY(%s::text[])", (list(ids),)).fetchall()
            for memory_id, namespace, created_at in targets:
                before = conn.execute(
                    "SELECT id FROM memories WHERE namespace = %s AND (created_at, id) < (%s, %s) AND created_at >= %s "
                    "ORDER BY created_at DESC, id DESC LIMIT %s",
                    (namespace, created_at, memory_id, created_at - window, span),
                ).fetchall()
                after = conn.execute(
                    "SELECT id FROM memories WHERE namespace = %s AND (created_at, id) > (%s, %s) AND created_at <= %s "
                    "ORDER BY created_at, id LIMIT %s",
                    (namespace, created_at, memory_id, created_at + window, span),
                ).fetchall()
                found[memory_id] = [(row[0], -i) for i, row in enumerate(before, 1)] + [(row[0], i) for i, row in enumerate(after, 1)]
        return found

    def matching_ids(self, flt: Filter) -> set[str]:
        where, params = filter_sql(flt)
        with self._reading() as conn:
            return {row[0] for row in conn.execute(f"SELECT m.id FROM memories m WHERE {where}", params)}

    def history(self, memory_id: str) -> list[HistoryEntry]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT memory_id, event, old, new, actor, at FROM history WHERE memory_id = %s ORDER BY id", (memory_id,)
            ).fetchall()
        return [_history_entry(row) for row in rows]

    def links(self, memory_id: str) -> list[Link]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {LINK_COLUMNS} FROM links WHERE (source_id = %s OR target_id = %s) AND {VISIBLE_LINK} ORDER BY created_at, seq",
                (memory_id, memory_id),
            ).fetchall()
        return [_link(row) for row in rows]

    def tombstones_since(self, seq: int) -> list[Tombstone]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT id, namespace, deleted_at, actor, version FROM tombstones WHERE seq > %s ORDER BY seq, id", (seq,)
            ).fetchall()
        return [_tombstone(row) for row in rows]

    def vector_changes(self, since_seq: int) -> VectorChanges:
        """Vector upserts and removals since the cursor ``since_seq`` (0: everything).

        Writers run in parallel, so change numbers are not in commit order and "rows with a
        higher number" would skip a row that commits late. The feed is read by transaction id
        instead: each read takes a snapshot and remembers its watermark, the oldest
        transaction still running (``pg_snapshot_xmin``); every transaction below it had
        finished, so the next read asks for rows written by transactions at or above it (a
        row may come twice; applying it is idempotent).

        The returned cursor is the change counter read *before* the snapshot when no
        transaction was running at the snapshot (so ``change_counter() == cursor`` means
        there is nothing new); otherwise a negative token that never equals the counter, so
        the next refresh reads again and picks up the late commits."""
        with self._reading() as conn:
            counter = self._counter(conn)
            with _snapshot_tx(conn):
                xmin, running = conn.execute(
                    "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmin(s) <> pg_snapshot_xmax(s) FROM pg_current_snapshot() s"
                ).fetchone()  # type: ignore[misc]
                with self._feed_lock:
                    mark = self._feed_marks.get(since_seq) if since_seq else None
                since = "TRUE" if mark is None else "txid >= %s::text::xid8"
                args = () if mark is None else (str(mark),)
                upserts = [
                    VectorRow(mid, model, _as_array(vec))
                    for mid, model, vec in conn.execute(f"SELECT memory_id, model, embedding FROM vectors WHERE {since}", args)
                ]
                removed = [row[0] for row in conn.execute(f"SELECT memory_id FROM vector_removals WHERE {since}", args)]
        with self._feed_lock:
            if running:
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
        smallest number a writer still holds, or the sequence's last value when none does.
        The exclusive gate waits only for writers inside ``memmesh_next_change()``."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_lock(7262001)")
            try:
                last = cls._counter(conn)
                row = conn.execute(
                    "SELECT min(((classid::bigint << 32) | objid::bigint)) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
                    "AND ((classid::bigint << 32) | objid::bigint) BETWEEN 1 AND %s",
                    (last,),
                ).fetchone()
            finally:
                conn.execute("SELECT pg_advisory_unlock(7262001)")
        held = row[0] if row else None
        return last if held is None else int(held) - 1

    @staticmethod
    def _counter(conn: psycopg.Connection) -> int:
        """Change numbers handed out so far (the sequence's last value; 0 on a new database)."""
        row = conn.execute("SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM memmesh_changes").fetchone()
        return int(row[0])  # type: ignore[index]

    def get_vectors(self, ids: Sequence[str]) -> list[VectorRow]:
        if not ids:
            return []
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT memory_id, model, embedding FROM vectors WHERE memory_id = ANY(%s::text[])", (list(ids),)
            ).fetchall()
        return [VectorRow(mid, model, _as_array(vec)) for mid, model, vec in rows]

    def vector_models(self) -> dict[str, int]:
        with self._reading() as conn:
            return dict(conn.execute("SELECT model, count(*) FROM vectors GROUP BY model").fetchall())  # type: ignore[arg-type]

    def ids_missing_vectors(self, model: str) -> list[str]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT m.id FROM memories m LEFT JOIN vectors v ON v.memory_id = m.id AND v.model = %s "
                "WHERE v.memory_id IS NULL ORDER BY m.pos",
                (model,),
            ).fetchall()
        return [row[0] for row in rows]

    def vector_search(self, model: str, query: np.ndarray, k: int, flt: Filter) -> list[tuple[str, float]]:
        """The ``k`` memories passing ``flt`` nearest to ``query`` (cosine), searched in the
        database: with ``storage.pg_ann_index`` through the HNSW index of that dimension, where
        ``hnsw.iterative_scan`` keeps scanning until enough rows pass the filter (so selective
        filters still fill ``k``); without it, an exact scan."""
        vec = np.ascontiguousarray(query, dtype=np.float32)
        dim = int(vec.shape[0])
        where, params = filter_sql(flt)
        distance = f"v.embedding::vector({dim}) <=> %s::vector({dim})"
        sql = (
            f"SELECT v.memory_id, 1 - ({distance}) AS cosine FROM vectors v JOIN memories m ON m.id = v.memory_id "
            f"WHERE v.model = %s AND v.dim = {dim} AND {where} ORDER BY {distance} LIMIT %s"
        )
        with self._reading() as conn, conn.transaction():
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            # pgvector's default ef_search (40) finds ~55-80 % of the true top 10 among 384-d
            # embeddings; 200 finds ~99 % for ~20 ms (bench/backend_bench.py --vector-sizes).
            conn.execute(f"SET LOCAL hnsw.ef_search = {max(200, min(2 * int(k), 1000))}")
            rows = conn.execute(sql, [vec, model, *params, vec, k]).fetchall()
        return sorted(((mid, float(cos)) for mid, cos in rows), key=lambda r: (-r[1], r[0]))

    def stats(self, now: datetime, soon: datetime) -> Stats:
        live = "(expires_at IS NULL OR expires_at > %s)"
        with self._reading() as conn:
            total = conn.execute(f"SELECT count(*) FROM memories WHERE {live}", (now,)).fetchone()[0]  # type: ignore[index]
            tiers = conn.execute(f"SELECT tier, count(*) FROM memories WHERE {live} GROUP BY tier ORDER BY tier", (now,)).fetchall()
            spaces = conn.execute(
                f"SELECT namespace, count(*) FROM memories WHERE {live} GROUP BY namespace ORDER BY count(*) DESC, namespace",
                (now,),
            ).fetchall()
            expiring = conn.execute("SELECT count(*) FROM memories WHERE expires_at > %s AND expires_at <= %s", (now, soon)).fetchone()[0]  # type: ignore[index]
            links = conn.execute(f"SELECT count(*) FROM links WHERE {VISIBLE_LINK}").fetchone()[0]  # type: ignore[index]
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
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
                    f"SELECT {MEMORY_COLUMNS}, pos FROM memories WHERE pos > %s ORDER BY pos LIMIT %s", (last, batch)
                ).fetchall()
            if not rows:
                return
            last = rows[-1][21]
            yield from (row_to_memory(row) for row in rows)

    def iter_links(self) -> Iterator[Link]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {LINK_COLUMNS} FROM links WHERE {VISIBLE_LINK} ORDER BY seq, source_id, target_id, relation"
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
        return [(kind, ns, mid, version) for kind, ns, mid, version in rows]

    def node_id(self) -> str:
        with self._reading() as conn:
            return conn.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0]  # type: ignore[index]

    def change_counter(self) -> int:
        with self._reading() as conn:
            return self._counter(conn)

    def changes_since(self, since: int, limit: int) -> Changes:
        queries = {
            "memories": f"SELECT seq, {MEMORY_COLUMNS} FROM memories",
            "tombstones": "SELECT seq, id, namespace, deleted_at, actor, version FROM tombstones",
            "links": f"SELECT seq, {LINK_COLUMNS} FROM links",
            "conflicts": f"SELECT seq, {CONFLICT_COLUMNS} FROM conflicts",
            "agents": f"SELECT seq, {AGENT_COLUMNS} FROM agents",
        }
        with self._reading() as conn:
            head = self._feed_head(conn)  # before the snapshot: every change up to it has committed
            with _snapshot_tx(conn):
                return self._changes_page(conn, queries, since, head, limit)

    @staticmethod
    def _changes_page(conn: psycopg.Connection, queries: dict[str, str], since: int, head: int, limit: int) -> Changes:
        """One page of the feed, read inside the caller's snapshot."""
        rows = {
            name: conn.execute(f"{sql} WHERE seq > %s AND seq <= %s ORDER BY seq LIMIT %s", (since, head, limit)).fetchall()
            for name, sql in queries.items()
        }
        cut = cut_page(since, head, limit, [[r[0] for r in found] for found in rows.values()])
        if cut is None:
            cut = min(r[-1][0] for r in rows.values() if len(r) >= limit)
            rows = {name: conn.execute(f"{sql} WHERE seq = %s", (cut,)).fetchall() for name, sql in queries.items()}
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
        with self._reading() as conn:
            if memory_id is None:
                rows = conn.execute(f"SELECT {CONFLICT_COLUMNS} FROM conflicts ORDER BY id").fetchall()
            else:
                rows = conn.execute(f"SELECT {CONFLICT_COLUMNS} FROM conflicts WHERE memory_id = %s ORDER BY id", (memory_id,)).fetchall()
        return [_conflict(row) for row in rows]

    def peers(self) -> list[PeerState]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {PEER_COLUMNS} FROM peers ORDER BY node_id").fetchall()
        return [_peer(row) for row in rows]

    def purged_seq(self) -> int:
        with self._reading() as conn:
            value = _get_meta(conn, "purged_seq")
        return int(value) if value else 0

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

    def close(self) -> None:
        self._pool.close()


class PostgresWriteTx(AccessWrites):
    """The write primitives, valid inside :meth:`PostgresStore.write`."""

    def __init__(self, conn: psycopg.Connection, hnsw_dims: set[int] | None) -> None:
        self.conn = conn
        self._hnsw_dims = hnsw_dims

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any:
        return self.conn.execute(sql, params).fetchone()  # type: ignore[arg-type]

    def next_seq(self) -> int:
        """A fresh change number (a sequence: no writer waits for another's commit), held by
        this transaction until it ends, so the change feed never reads past it (schema 7)."""
        return int(self._one("SELECT memmesh_next_change()", ())[0])

    def _lock_key(self, *parts: str) -> None:
        """Serialise writers of one key (an id, a content hash, a title) until commit; writers of
        other keys are not held up. The lock covers a row that does not exist yet, which row
        locks cannot."""
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("\x1f".join(parts),))

    def get(self, memory_id: str) -> Memory | None:
        """The memory, locked until commit: a concurrent update waits and then sees this one's result."""
        self._lock_key("id", memory_id)
        row = self._one(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = %s FOR UPDATE", (memory_id,))
        return row_to_memory(row) if row else None

    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None:
        self._lock_key("hash", namespace, content_hash)
        row = self._one(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = %s AND content_hash = %s", (namespace, content_hash))
        return row_to_memory(row) if row else None

    def find_by_title(self, namespace: str, title: str) -> Memory | None:
        self._lock_key("title", namespace, title)
        row = self._one(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = %s AND title = %s ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
            (namespace, title),
        )
        return row_to_memory(row) if row else None

    def insert_memory(self, memory: Memory, seq: int) -> None:
        placeholders = ", ".join(f"%({name})s" for name in MEMORY_FIELDS)
        self.conn.execute(
            f"INSERT INTO memories ({MEMORY_COLUMNS}, seq) VALUES ({placeholders}, %(seq)s)", {**memory_params(memory), "seq": seq}
        )
        self.conn.execute("DELETE FROM tombstones WHERE id = %s", (memory.id,))

    def insert_memories(self, memories: Sequence[Memory], seq: int) -> None:
        """executemany runs in psycopg's pipeline mode: one round trip for the whole batch."""
        if not memories:
            return
        placeholders = ", ".join(f"%({name})s" for name in MEMORY_FIELDS)
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO memories ({MEMORY_COLUMNS}, seq) VALUES ({placeholders}, %(seq)s)",
                [{**memory_params(m), "seq": seq} for m in memories],
            )
        self.conn.execute("DELETE FROM tombstones WHERE id = ANY(%s::text[])", ([m.id for m in memories],))

    def add_history_many(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO history (memory_id, event, old, new, actor, at) VALUES (%s, %s, %s, %s, %s, %s)",
                [(e.memory_id, e.event.value, _json(e.old), _json(e.new), e.actor, e.at) for e in entries],
            )

    def put_vectors(self, rows: Sequence[VectorRow], seq: int) -> None:
        if not rows:
            return
        for dim in {int(np.asarray(r.vector).shape[0]) for r in rows}:
            self._ensure_hnsw(dim)
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO vectors (memory_id, model, dim, embedding, seq) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (memory_id) DO UPDATE SET model = EXCLUDED.model, dim = EXCLUDED.dim, "
                "embedding = EXCLUDED.embedding, seq = EXCLUDED.seq, txid = pg_current_xact_id()",
                [
                    (r.memory_id, r.model, int(np.asarray(r.vector).shape[0]), np.ascontiguousarray(r.vector, dtype=np.float32), seq)
                    for r in rows
                ],
            )
        self.conn.execute("DELETE FROM vector_removals WHERE memory_id = ANY(%s::text[])", ([r.memory_id for r in rows],))

    def update_memory(self, memory: Memory, seq: int) -> None:
        assignments = ", ".join(f"{name} = %({name})s" for name in MEMORY_FIELDS if name != "id")
        cursor = self.conn.execute(
            f"UPDATE memories SET {assignments}, seq = %(seq)s WHERE id = %(id)s", {**memory_params(memory), "seq": seq}
        )
        if cursor.rowcount != 1:
            raise NotFoundError(f"memory {memory.id} does not exist")

    def delete_memory(self, tombstone: Tombstone, seq: int) -> None:
        self.conn.execute("DELETE FROM memories WHERE id = %s", (tombstone.id,))
        self._drop_vector(tombstone.id, seq)
        self.conn.execute(
            "INSERT INTO tombstones (id, namespace, deleted_at, actor, version, seq) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET namespace = EXCLUDED.namespace, deleted_at = EXCLUDED.deleted_at, "
            "actor = EXCLUDED.actor, version = EXCLUDED.version, seq = EXCLUDED.seq",
            (
                tombstone.id,
                tombstone.namespace,
                tombstone.deleted_at,
                tombstone.actor,
                Jsonb(tombstone.version.model_dump(mode="json")),
                seq,
            ),
        )

    def _drop_vector(self, memory_id: str, seq: int) -> None:
        if self.conn.execute("DELETE FROM vectors WHERE memory_id = %s", (memory_id,)).rowcount:
            self.conn.execute(
                "INSERT INTO vector_removals (memory_id, seq) VALUES (%s, %s) "
                "ON CONFLICT (memory_id) DO UPDATE SET seq = EXCLUDED.seq, txid = pg_current_xact_id()",
                (memory_id, seq),
            )

    def tombstone(self, memory_id: str) -> Tombstone | None:
        row = self._one("SELECT id, namespace, deleted_at, actor, version FROM tombstones WHERE id = %s", (memory_id,))
        return _tombstone(row) if row else None

    def add_history(self, entry: HistoryEntry) -> None:
        self.conn.execute(
            "INSERT INTO history (memory_id, event, old, new, actor, at) VALUES (%s, %s, %s, %s, %s, %s)",
            (entry.memory_id, entry.event.value, _json(entry.old), _json(entry.new), entry.actor, entry.at),
        )

    def put_link(self, link: Link, seq: int) -> None:
        self.conn.execute(
            f"INSERT INTO links ({LINK_COLUMNS}, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (source_id, target_id, relation) DO UPDATE SET valid_from = EXCLUDED.valid_from, "
            "valid_until = EXCLUDED.valid_until, observed_by = EXCLUDED.observed_by, created_at = EXCLUDED.created_at, "
            "seq = EXCLUDED.seq",
            (
                link.source_id,
                link.target_id,
                link.relation.value,
                link.valid_from,
                link.valid_until,
                link.observed_by,
                link.created_at,
                seq,
            ),
        )

    def delete_links(self, memory_id: str) -> int:
        return self.conn.execute("DELETE FROM links WHERE source_id = %s OR target_id = %s", (memory_id, memory_id)).rowcount

    def put_vector(self, memory_id: str, model: str, vector: np.ndarray, seq: int) -> None:
        vec = np.ascontiguousarray(vector, dtype=np.float32)
        dim = int(vec.shape[0])
        self._ensure_hnsw(dim)
        self.conn.execute(
            "INSERT INTO vectors (memory_id, model, dim, embedding, seq) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (memory_id) DO UPDATE SET model = EXCLUDED.model, dim = EXCLUDED.dim, "
            "embedding = EXCLUDED.embedding, seq = EXCLUDED.seq, txid = pg_current_xact_id()",
            (memory_id, model, dim, vec, seq),
        )
        self.conn.execute("DELETE FROM vector_removals WHERE memory_id = %s", (memory_id,))

    def _ensure_hnsw(self, dim: int) -> None:
        """One partial HNSW index per dimension, created the first time that size is stored
        (only with ``storage.pg_ann_index``: the default recall index lives in process)."""
        if self._hnsw_dims is None or dim in self._hnsw_dims or dim > MAX_HNSW_DIM:
            return
        if self._one("SELECT to_regclass(%s) IS NOT NULL", (f"vectors_hnsw_{dim}",))[0]:  # another node made it
            self._hnsw_dims.add(dim)
            return
        # One creator at a time (two would deadlock on the table lock), and no statement
        # timeout: on a store upgraded from pg_ann_index = false this indexes existing rows.
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
        self.conn.execute("SET LOCAL statement_timeout = 0")
        self.conn.execute(
            f"CREATE INDEX IF NOT EXISTS vectors_hnsw_{dim} ON vectors "
            f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WHERE dim = {dim}"
        )
        self._hnsw_dims.add(dim)

    def record_access(self, memory_id: str, at: datetime, expires_at: datetime | None) -> None:
        self.conn.execute(
            "UPDATE memories SET access_count = access_count + 1, last_accessed_at = %s, expires_at = %s WHERE id = %s",
            (at, expires_at, memory_id),
        )

    def expired(self, now: datetime, limit: int) -> list[Memory]:
        rows = self.conn.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE expires_at IS NOT NULL AND expires_at <= %s ORDER BY pos LIMIT %s "
            "FOR UPDATE SKIP LOCKED",  # two nodes' gc share the work instead of archiving one memory twice
            (now, limit),
        ).fetchall()
        return [row_to_memory(row) for row in rows]

    def archive(self, memory: Memory, at: datetime, reason: str) -> None:
        self.conn.execute(
            "INSERT INTO archive (id, namespace, archived_at, reason, data) VALUES (%s, %s, %s, %s, %s::json) "
            "ON CONFLICT (id) DO UPDATE SET namespace = EXCLUDED.namespace, archived_at = EXCLUDED.archived_at, "
            "reason = EXCLUDED.reason, data = EXCLUDED.data",
            (memory.id, memory.namespace, at, reason, memory.model_dump_json()),
        )
        seq = self.next_seq()
        self.conn.execute("DELETE FROM memories WHERE id = %s", (memory.id,))
        self._drop_vector(memory.id, seq)

    def purge_tombstones(self, before: datetime) -> int:
        newest = self._one("SELECT max(seq) FROM tombstones WHERE deleted_at < %s", (before,))[0]
        if newest is not None and newest > int(self.get_meta("purged_seq") or 0):
            self.set_meta("purged_seq", str(newest))
        dead = "SELECT id FROM tombstones WHERE deleted_at < %s"
        self.conn.execute(f"DELETE FROM links WHERE source_id IN ({dead}) OR target_id IN ({dead})", (before, before))
        return self.conn.execute("DELETE FROM tombstones WHERE deleted_at < %s", (before,)).rowcount

    def get_link(self, source_id: str, target_id: str, relation: str) -> Link | None:
        row = self._one(
            f"SELECT {LINK_COLUMNS} FROM links WHERE source_id = %s AND target_id = %s AND relation = %s", (source_id, target_id, relation)
        )
        return _link(row) if row else None

    def put_conflict(self, conflict: Conflict, seq: int) -> bool:
        cursor = self.conn.execute(
            f"INSERT INTO conflicts ({CONFLICT_COLUMNS}, seq) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                conflict.id,
                conflict.memory_id,
                conflict.namespace,
                Jsonb(conflict.loser),
                Jsonb(conflict.version.model_dump(mode="json")),
                seq,
            ),
        )
        return cursor.rowcount == 1

    def peer(self, node_id: str) -> PeerState | None:
        row = self._one(f"SELECT {PEER_COLUMNS} FROM peers WHERE node_id = %s", (node_id,))
        return _peer(row) if row else None

    def put_peer(self, state: PeerState) -> None:
        self.conn.execute(
            f"INSERT INTO peers ({PEER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (node_id) DO UPDATE SET "
            "url = EXCLUDED.url, sent_seq = EXCLUDED.sent_seq, recv_seq = EXCLUDED.recv_seq, "
            "last_contact = EXCLUDED.last_contact, last_error = EXCLUDED.last_error",
            (state.node_id, state.url, state.sent_seq, state.recv_seq, state.last_contact, state.last_error),
        )

    def get_meta(self, key: str) -> str | None:
        return _get_meta(self.conn, key)

    def set_meta(self, key: str, value: str) -> None:
        _set_meta(self.conn, key, value)


SNAPSHOT_LIMITS = "SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL statement_timeout = 600000"
"""Read-only snapshots hold no row locks and no transaction id, so they may stay open while
the client converts rows (a first load of every vector) or writes elsewhere (migrate); they
get ten minutes per statement instead of storage.statement_timeout_ms."""


@contextmanager
def _snapshot_tx(conn: psycopg.Connection) -> Iterator[None]:
    """A REPEATABLE READ transaction (or nothing, when already inside a snapshot)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(SNAPSHOT_LIMITS)
        yield


class _QuickAttempt(AttemptWithBackoff):
    """Reconnect attempts every ~0.25 s instead of psycopg_pool's 1, 2, 4, 8 … s backoff."""

    INITIAL_DELAY = 0.25
    DELAY_BACKOFF = 1.0


class QuickReconnectPool(ConnectionPool):
    """A pool that retries a lost server every quarter second, so the first request after a
    PostgreSQL restart succeeds within about a second instead of 15 (the default backoff had
    grown to 8-16 s during a 45 s outage). Relies on psycopg_pool's ``_add_connection``
    (pinned in constraints.txt; the restart test guards it)."""

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _QuickAttempt(timeout=self.reconnect_timeout), growing)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _get_meta(conn: psycopg.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def _set_meta(conn: psycopg.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{name}" for name in MEMORY_FIELDS)


def _json(value: Any) -> Json | None:
    return None if value is None else Json(value, dumps=_dumps)


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _as_array(value: Any) -> np.ndarray:
    return value.to_numpy().astype(np.float32, copy=False) if hasattr(value, "to_numpy") else np.asarray(value, dtype=np.float32)


def _history_entry(row: Sequence[Any]) -> HistoryEntry:
    memory_id, event, old, new, actor, at = row
    return HistoryEntry(memory_id=memory_id, event=event, old=old, new=new, actor=actor, at=at)


def _link(row: Sequence[Any]) -> Link:
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


def _tombstone(row: Sequence[Any]) -> Tombstone:
    mid, namespace, deleted_at, actor, version = row
    return Tombstone(id=mid, namespace=namespace, deleted_at=deleted_at, actor=actor, version=version)


CONFLICT_COLUMNS = "id, memory_id, namespace, loser, version"
PEER_COLUMNS = "node_id, url, sent_seq, recv_seq, last_contact, last_error"


def _conflict(row: Sequence[Any]) -> Conflict:
    cid, memory_id, namespace, loser, version = row
    return Conflict(id=cid, memory_id=memory_id, namespace=namespace, loser=loser, version=version)


def _peer(row: Sequence[Any]) -> PeerState:
    node_id, url, sent_seq, recv_seq, last_contact, last_error = row
    return PeerState(node_id=node_id, url=url, sent_seq=sent_seq, recv_seq=recv_seq, last_contact=last_contact, last_error=last_error)
