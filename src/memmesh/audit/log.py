"""The audit log: every change appended, hash-chained, in the transaction that makes it.

:class:`AuditLog` is the service's (``service.audit``). It wraps the store so that every
write transaction is an :class:`~memmesh.audit.capture.AuditedTx`: the history entry each memory change already
writes (add, update, delete, promote, archive, restore, from any face, import or peer), each
link, agent, key creation and revocation, and each purge is appended to ``audit_log`` in the
same transaction. So an acknowledged change is never unaudited, and a rolled-back one
leaves no entry: the chain cannot disagree with the data, whatever the process dies of.

Who acted comes from the caller the service last authorized on this thread or task
(:data:`current_caller`): its key id and agent id, never a key's secret. Entries hold a
digest of what changed, not the content.

Signed checkpoints (see :mod:`.notes`) are written by :meth:`AuditLog.checkpoint`: by a
background thread in ``serve`` (every ``checkpoint_interval_s`` or ``checkpoint_every``
entries, whichever first, and at shutdown) and by ``memmesh audit checkpoint``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from memmesh.audit import chain
from memmesh.audit.capture import AuditedStore, AuditedTx, Pending, actor_of, current_caller, unwrap
from memmesh.audit.group import GroupCommit
from memmesh.audit.notes import Checkpoint, CheckpointFile, Signer, Verifier, append_checkpoint, make_note, read_checkpoints, signed_by
from memmesh.audit.parallel import verify_parallel
from memmesh.audit.verify import VerifyReport, expect_checkpoints, verify_log
from memmesh.clock import format_ts, parse_ts, system_clock
from memmesh.errors import InvalidInputError, StorageError
from memmesh.kernel import authorize_store_wide
from memmesh.model import Principal
from memmesh.store import audit_sql
from memmesh.store.audit_sql import Anchor, AuditRow

if TYPE_CHECKING:
    from memmesh.host import Host

log = logging.getLogger("memmesh.audit")


@dataclass(frozen=True)
class AuditConfig:
    """The [audit] settings the log runs with (see config.AuditSettings)."""

    checkpoint_dir: Path | None = None
    signing_key_file: Path | None = None
    verify_key_file: Path | None = None
    checkpoint_interval_s: float = 1.0
    checkpoint_every: int = 1000
    retention_days: float = 0.0


class AuditEntry(BaseModel):
    """One audit entry as the faces show it."""

    index: int
    at: str
    actor: str
    action: str
    namespace: str | None
    target: str | None
    detail: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_since: int | None


class PruneReport(BaseModel):
    pruned: int
    below: int
    checkpoint_size: int | None


HEAD_CACHE_S = 1.0
"""How long a committed chain head is reused without reading it (see AuditLog._cached_head)."""
YIELD_EVERY = 32
"""A checkpoint rehashes every new entry in Python (~25 µs each; ~1,000 per checkpoint under
load) on a thread of the appenders' process. Held for CPython's whole switch interval (5 ms),
the GIL kept an appender whose answer had arrived from running on: appends that overlapped a
checkpoint were five times likelier to be among the slowest (PostgreSQL, 8 threads). Yielding it
every YIELD_EVERY entries (under 1 ms of work) cut those from ~40 to ~10 per 5,000 appends and
the p99 from ~11 to ~9 ms in alternating runs (docs/benchmarks.md, session 12)."""


_second: tuple[int, str] = (-1, "")
"""The last whole second :func:`_stamp` formatted (seconds since the epoch) and its text up
to the fraction's dot: a tuple, replaced whole, so threads never see half of one."""


def _stamp(moment: datetime) -> str:
    """:func:`format_ts` of ``moment``, its common case (an aware UTC time after 1970) built
    from the text of its whole second, formatted once per second, and the microseconds:
    once per append, and ``isoformat`` was a tenth of the audit's Python per write."""
    if moment.tzinfo is UTC and moment.year >= 1970:
        # whole seconds, exactly: a float of seconds and microseconds rounds up to the next second in far years
        whole = int(moment.replace(microsecond=0).timestamp())
        known = _second
        if known[0] != whole:
            known = _second_text(whole)
        return f"{known[1]}{moment.microsecond:06d}Z"
    return format_ts(moment)


def _second_text(whole: int) -> tuple[int, str]:
    """Format a whole second (seconds since the epoch) for :func:`_stamp` and keep it."""
    global _second
    _second = (whole, datetime.fromtimestamp(whole, UTC).replace(tzinfo=None).isoformat() + ".")
    return _second


def _now_stamp() -> str:
    """``_stamp(system_clock())`` without making a datetime: the system clock's time in
    microseconds, floored as ``datetime.now`` floors it (once per append of the real clock)."""
    whole, micro = divmod(time.time_ns() // 1000, 1_000_000)
    known = _second
    if known[0] != whole:
        known = _second_text(whole)
    return f"{known[1]}{micro:06d}Z"


def _chained(top: tuple[int, bytes] | None, at: str, items: Sequence[Pending]) -> tuple[list[tuple[Any, ...]], bytes]:
    """``items`` as rows (plain tuples in :data:`audit_sql.COLUMNS` order: a tuple is made in
    a fraction of a NamedTuple's time) hashed onto the chain head ``top`` (index and hash;
    None: the empty log)."""
    idx, prev = (top[0] + 1, top[1]) if top is not None else (0, chain.GENESIS)
    rows = []
    sha256 = hashlib.sha256
    canonical = chain.canonical
    for action, target, namespace, detail, actor in items:
        text = detail if isinstance(detail, str) else chain.detail_text(detail)
        prev = sha256(prev + canonical(idx, at, actor, action, namespace, target, text)).digest()
        rows.append((idx, at, actor, action, namespace, target, text, prev.hex()))
        idx += 1
    return rows, prev


def _read_head(conn: Any) -> tuple[int, bytes] | None:
    """The chain head as stored (see :func:`audit_sql.head`), its hash as bytes."""
    top = audit_sql.head(conn)
    return (top[0], bytes.fromhex(top[1])) if top is not None else None


def _rehash(prev: bytes, row: tuple[Any, ...]) -> bytes | None:
    """The hash ``row`` (in :data:`audit_sql.COLUMNS` order) must hold after ``prev``; None for
    a row whose fields were retyped (SQLite stores whatever type is written), which no append wrote."""
    try:
        return chain.entry_hash(prev, *row[:7])
    except (TypeError, UnicodeEncodeError):
        return None


def _entry(row: AuditRow) -> AuditEntry:
    import json

    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = {"unreadable": row.detail}
    return AuditEntry(
        index=row.idx,
        at=row.at,
        actor=row.actor,
        action=row.action,
        namespace=row.namespace,
        target=row.target,
        detail=detail,
        hash=row.hash,
    )


class AuditLog:
    """The service's audit log (one per Service)."""

    def __init__(self, service: Host) -> None:
        self.service = service
        self.config = AuditConfig()
        self._signer: Signer | None = None
        self._ck_lock = threading.Lock()
        self._state: tuple[chain.Frontier, str] | None = None  # (tree at last checkpoint, its last entry hash)
        self._appended = 0
        self._clock: Any = None  # the service's clock, read at the first append (append_local)
        self._head: tuple[int, bytes, float] | None = None
        """(index, hash, monotonic time) of the newest entry this process appended and saw
        committed; see :meth:`_cached_head`."""
        self._mine = threading.local()  # the head this thread appended in its open transaction
        self._turn = threading.Lock()  # PostgreSQL appenders of this process take turns (see _take_turn)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.group: GroupCommit[Pending, int] = GroupCommit(self._append_group)
        """PostgreSQL: :meth:`record` calls outside a transaction share transactions (see :meth:`_grouped`)."""

    # -- configuration ------------------------------------------------------------------

    def configure(self, config: AuditConfig) -> None:
        """Use these settings; the signing key is read now, so a bad key fails at start."""
        self.config = config
        self._signer = Signer.load(config.signing_key_file) if config.signing_key_file else None

    @property
    def origin(self) -> str:
        """The checkpoint origin line: names this store's log (stable for its life)."""
        return f"memmesh/{self.service.node_id}/audit"

    @property
    def folder(self) -> Path | None:
        return self.config.checkpoint_dir

    def verifier(self) -> Verifier | None:
        if self.config.verify_key_file is not None:
            try:
                text = self.config.verify_key_file.read_text()
            except OSError as exc:
                raise InvalidInputError(f"audit.verify_key_file {self.config.verify_key_file}: {exc.strerror}") from None
            return Verifier.parse(text, f"audit.verify_key_file {self.config.verify_key_file}")
        return self._signer.verifier if self._signer is not None else None

    def wrap(self, store: Any) -> AuditedStore:
        return AuditedStore(store, self)

    # -- appending ------------------------------------------------------------------------

    def append(
        self,
        tx: Any,
        action: str,
        *,
        target: str | None = None,
        namespace: str | None = None,
        detail: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> int:
        """Append one entry inside the write transaction ``tx`` now; returns its index."""
        who = actor if actor is not None else actor_of(current_caller.get())
        return self.append_many(tx, [Pending(action, target, namespace, detail, who)])

    def append_many(self, tx: Any, items: Sequence[Pending]) -> int:
        """Append entries inside ``tx``: the chain is locked, its head found once, every entry
        hashed onto the previous one and inserted. Returns the last index (-1 for none).

        On PostgreSQL, when the server's commits wait for a disk flush, the transaction's
        commit is made asynchronous and the store waits for the flush right after it (see
        :func:`audit_sql.lock_chain`): the chain's lock is not held through the flush, so
        concurrent appenders share flushes, and the write is still durable when it returns."""
        if not items:
            return -1
        owe = getattr(tx, "flush_after_commit", None)  # a PostgreSQL write transaction (or one wrapping it)
        if owe is not None:
            self._take_turn(tx)
        if owe is not None and (cached := self._cached_head()) is not None:
            rows, last, split = self._append_pg(tx, cached, items)
        else:
            conn = getattr(tx, "conn", tx)
            split = audit_sql.lock_chain(conn, split=owe is not None)
            cached = self._cached_head()
            top = cached or _read_head(conn)
            at = _stamp(self.service.clock())
            rows, last = _chained(top, at, items)
            if cached is None:
                audit_sql.insert_many(conn, rows)
            elif not audit_sql.insert_new(conn, rows):
                # another process appended since this one last did: chain onto the real head
                self._head = None
                rows, last = _chained(_read_head(conn), at, items)
                audit_sql.insert_many(conn, rows)
        end = rows[-1][0]
        self._mine.head = (end, last)
        if split and owe is not None:
            owe()
        before = self._appended
        self._appended += len(rows)
        if before < self.config.checkpoint_every <= self._appended:
            self._wake.set()
        return int(end)

    def append_local(self, tx: Any, items: Sequence[Pending]) -> tuple[int, bytes] | None:
        """:meth:`append_many` as an audited transaction's end calls it. On SQLite the append
        written out in one call (issue 16: it runs once per write, and was nine Python calls):
        the database's write lock is held, so the chain needs no lock of its own, and the head
        is the one this process last saw committed when that is fresh (see :meth:`_cached_head`),
        else read. Returns the new head (last index and hash) for :meth:`committed`; None
        when :meth:`append_many` appended (PostgreSQL), which keeps it per thread."""
        dialect = getattr(tx, "dialect", None)  # (not tx.conn first: PostgreSQL's sends its BEGIN)
        if dialect is None or dialect.name != "sqlite" or not items:
            self.append_many(tx, items)
            return None
        conn = tx.conn
        found = self._head
        cached = found is not None and time.monotonic() - found[2] <= HEAD_CACHE_S
        if cached:
            idx, prev = found[0] + 1, found[1]  # type: ignore[index]
        else:
            top = _read_head(conn)
            idx, prev = (top[0] + 1, top[1]) if top is not None else (0, chain.GENESIS)
        clock = self._clock
        if clock is None:
            clock = self._clock = self.service.clock  # set once, as the service is made
        if clock is system_clock:  # _now_stamp() written out (once per write)
            whole, micro = divmod(time.time_ns() // 1000, 1_000_000)
            known = _second
            if known[0] != whole:
                known = _second_text(whole)
            at = f"{known[1]}{micro:06d}Z"
        else:
            at = _stamp(clock())
        rows = []
        entry_hash = chain.entry_hash
        for action, target, namespace, detail, actor in items:
            text = detail if isinstance(detail, str) else chain.detail_text(detail)
            prev = entry_hash(prev, idx, at, actor, action, namespace, target, text)
            rows.append((idx, at, actor, action, namespace, target, text, prev.hex()))
            idx += 1
        if not cached:
            audit_sql.insert_many(conn, rows)
        elif conn.execute(audit_sql.INSERT_NEW_SQLITE, rows[0]).rowcount != 1:
            # another process appended since this one last did: chain onto the real head
            self._head = None
            rows, prev = _chained(_read_head(conn), at, items)
            audit_sql.insert_many(conn, rows)
        elif len(rows) > 1:
            audit_sql.insert_many(conn, rows[1:])
        before = self._appended
        self._appended = before + len(rows)
        if before < self.config.checkpoint_every <= self._appended:
            self._wake.set()
        return rows[-1][0], prev

    def _take_turn(self, tx: Any) -> None:
        """PostgreSQL: this process's appenders take turns in process, from the append to their
        commit (the store releases the turn right after the commit, before the flush it may
        owe, or when the transaction fails: :meth:`PostgresWriteTx.hooks`). The turn spans
        what the chain's advisory lock spans, so it adds no wait the lock did not; but a
        thread waits for it *before* it chooses the head, and finds the head its predecessor
        committed cached, so its one statement (lock and insert) does not collide and redo
        its work under the lock. Once per transaction (an append in a transaction that
        already appended keeps the turn)."""
        if getattr(self._mine, "turn", False):
            return
        self._turn.acquire()
        self._mine.turn = True
        tx.hooks(self._turn_committed, self._turn_release)

    def _turn_committed(self) -> None:
        mine: tuple[int, bytes] | None = getattr(self._mine, "head", None)
        if mine is not None:
            self._remember(*mine)
        self._turn_release()

    def _turn_release(self) -> None:
        if getattr(self._mine, "turn", False):
            self._mine.turn = False
            self._turn.release()

    def _append_pg(self, tx: Any, cached: tuple[int, bytes], items: Sequence[Pending]) -> tuple[list[tuple[Any, ...]], bytes, bool]:
        """PostgreSQL with a cached head: the chain's lock and the first row's insert in one
        statement (:func:`audit_sql.lock_and_insert_new`), so the lock is held for two round
        trips (that statement and the commit), not three; concurrent appenders take turns
        at it. The entries' time is read before the lock, so appenders that waited for it may
        hold times a few milliseconds out of index order (retention only stops earlier)."""
        at = _stamp(self.service.clock())
        rows, last = _chained(cached, at, items)
        first = getattr(tx, "begin_with", None)  # the transaction's first statement carries its BEGIN
        if first is not None:
            split, inserted = audit_sql.lock_and_insert_first(first, rows)  # every row, one statement
            conn = tx.conn
        else:
            conn = tx.conn
            split, inserted = audit_sql.lock_and_insert_new(conn, rows, split=True)
        if not inserted:  # another appender came first (the lock is held now): chain onto the real head
            self._head = None
            rows, last = _chained(_read_head(conn), at, items)
            audit_sql.insert_many(conn, rows)
        return rows, last, split

    def _cached_head(self) -> tuple[int, bytes] | None:
        """The chain head without reading it, when that is safe to try.

        Reading the head is a query per write transaction (on PostgreSQL a round trip);
        instead, the head this process last appended *and saw committed* (:meth:`committed`)
        is used, on both backends, for a second at most. Chaining onto a stale head cannot go
        unnoticed: appends are serialised (SQLite's write lock, PostgreSQL's advisory lock
        taken just before), so if any process appended since, the next index is taken, the
        insert skips it on the primary key (:func:`audit_sql.insert_new`) and the entries are
        chained onto the real head instead. An uncommitted head is never cached (a
        rolled-back append would otherwise leave a gap), and the time limit keeps a prune or
        restore made by another process meanwhile from hiding the gap."""
        found = self._head
        if found is None or time.monotonic() - found[2] > HEAD_CACHE_S:
            return None
        return found[0], found[1]

    def committed(self, head: tuple[int, bytes] | None = None) -> None:
        """The write transaction of this thread that appended last is committed: its head
        (``head``, as :meth:`append_local` returned it, else the one this thread's last
        :meth:`append_many` kept) may be reused by the next append (see :meth:`_cached_head`)."""
        mine: tuple[int, bytes] | None = head
        if mine is None:
            mine = getattr(self._mine, "head", None)
            if mine is None:
                return
            self._mine.head = None
        current = self._head  # (what _remember does, inline: once per write, one Python call less)
        if current is None or mine[0] >= current[0]:
            self._head = (mine[0], mine[1], time.monotonic())

    def _remember(self, end: int, last: bytes) -> None:
        """Cache a committed head (the newest this process saw committed wins)."""
        current = self._head
        if current is None or end >= current[0]:
            self._head = (end, last, time.monotonic())

    def abandoned(self) -> None:
        """This thread's write transaction failed: what it appended is gone, so is the cache."""
        self._mine.head = None
        self._head = None

    def record(
        self,
        action: str,
        *,
        principal: Principal,
        target: str | None = None,
        namespace: str | None = None,
        detail: dict[str, Any] | None = None,
        tx: Any = None,
    ) -> int:
        """Append an entry for an action the service took for ``principal`` (approvals,
        decisions, admin actions): inside ``tx`` when given (preferred: then it commits with
        the change), else in a transaction of its own, which on PostgreSQL concurrent callers of
        this process share (:attr:`group`: one transaction per group, answered once its flush
        covers the entry). Returns the entry's index, or -1 when it is appended at the
        transaction's end (see :class:`AuditedTx`)."""
        if not isinstance(principal, Principal):
            raise TypeError("audit.record needs the caller's Principal")
        if not isinstance(action, str) or not action.strip():
            raise InvalidInputError("an audit action is a non-empty name, e.g. 'pending.approve'")
        item = Pending(action, target, namespace, detail, actor_of(principal))
        if tx is not None:
            if isinstance(tx, AuditedTx):
                tx.defer(item)  # appended with the transaction's other entries, just before it commits
                return -1
            return self.append_many(tx, [item])
        if self._grouped():
            return self.group.submit(item)
        with self.service.store.write() as own:
            if isinstance(own, AuditedTx):  # the service's store is the audited one (wrap)
                own.defer(item)
                return -1
            return self.append_many(own, [item])

    def _grouped(self) -> bool:
        """Whether a :meth:`record` without a transaction goes through the group commit: on
        PostgreSQL (where a transaction costs round trips and a commit record per append;
        SQLite's writer groups commits already), when this thread has no write open (its
        transaction would be joined, and the leader must never wait for a follower's locks)."""
        store = unwrap(self.service.store)
        writing = getattr(store, "in_write", None)
        return writing is not None and not writing()

    def _append_group(self, items: Sequence[Pending], committed: Callable[[], None]) -> list[int]:
        """Write a group's entries (:class:`GroupCommit`'s leader): one transaction, its lock and
        every row in one statement sent with BEGIN, its commit asynchronous and sent with the
        flush wait (see :meth:`append_many`); ``committed`` lets the next group start as soon
        as the commit record is written, this one still waiting for its flush. Returns each
        entry's index once they are durable."""
        store = unwrap(self.service.store)
        try:
            with store.write() as tx:
                end = self.append_many(tx, items)
                tx.hooks(committed, committed)  # after the turn's hook: the next leader finds the head cached
        except BaseException:
            self.abandoned()
            raise
        self.committed()
        return list(range(end - len(items) + 1, end + 1))

    # -- reading ------------------------------------------------------------------------

    def _admin(self, principal: Principal) -> None:
        authorize_store_wide(principal, "the audit log")

    def entries(self, *, principal: Principal, since: int = 0, limit: int = 100, until: datetime | str | None = None) -> AuditPage:
        """Entries from index ``since`` on, oldest first (store-wide admins only: the log
        names every namespace and actor)."""
        self._admin(principal)
        _check_since(since)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= self.service.policy.max_page_size:
            raise InvalidInputError(
                f"limit must be between 1 and {self.service.policy.max_page_size} (got {limit!r})", usage=True, field="limit"
            )
        with audit_sql.reading(self.service.store) as conn:
            found = []
            for row in audit_sql.rows(conn, since, batch=limit + 1):
                found.append(row)
                if len(found) > limit:
                    break
        more = len(found) > limit
        page = [_entry(r) for r in found[:limit]]
        return AuditPage(entries=page, next_since=page[-1].index + 1 if more else None)

    def iter_entries(self, *, principal: Principal, since: int = 0) -> Iterator[AuditEntry]:
        """Every entry from ``since`` on (export), read in pages; the caller is checked now,
        not when the first entry is asked for."""
        self._admin(principal)
        _check_since(since)
        return self._iter(since)

    def _iter(self, since: int) -> Iterator[AuditEntry]:
        with audit_sql.reading(self.service.store) as conn:
            for row in audit_sql.rows(conn, since):
                yield _entry(row)

    def verify(self, *, principal: Principal, verifier: Verifier | None = None, checkpoint_dir: Path | None = None) -> VerifyReport:
        """Recompute the chain and the tree; check every checkpoint (see :mod:`.verify`), read
        from ``checkpoint_dir`` (default: the configured folder, ``<data dir>/audit`` unless
        ``[audit] checkpoint_dir`` says otherwise). A verifier key given here or as ``[audit]
        public_key_path`` expects checkpoints: none found is a failure (``no_checkpoint``)."""
        self._admin(principal)
        key = verifier or self.verifier()
        folder = checkpoint_dir or self.folder
        found = read_checkpoints(folder, self.origin) if folder is not None else CheckpointFile([], [])
        with audit_sql.reading(self.service.store) as conn:
            anchor = audit_sql.anchor(conn)
            report = None
            path = self._file_path()
            if path is not None and audit_sql.is_sqlite(conn):  # a long log: checked by several processes
                report = verify_parallel(path, conn, anchor, found, key)
            if report is None:  # short, one core, PostgreSQL, or something to name: one exact pass
                report = verify_log(audit_sql.raw_rows(conn), anchor, found, key)
        report.checkpoint_dir = str(folder) if folder is not None else None
        if folder is None:
            report.warnings.append("no [audit] checkpoint_dir is configured: only the hash chain was checked")
        if verifier is not None or self.config.verify_key_file is not None:
            expect_checkpoints(report, found, folder)
        return report

    def _file_path(self) -> str | None:
        """The store's SQLite file (other processes can read it), None for PostgreSQL or memory."""
        store = self.service.store
        path = getattr(store, "path", None)
        if isinstance(path, str) and path and not getattr(store, "in_memory", True):
            return path
        return None

    # -- checkpoints ----------------------------------------------------------------------

    def _require_signing(self) -> tuple[Signer, Path]:
        if self._signer is None or self.folder is None:
            raise InvalidInputError(
                "signed checkpoints need [audit] signing_key_file and checkpoint_dir; create a key with `memmesh audit init-key`"
            )
        return self._signer, self.folder

    def _resume(self, conn: Any, signer: Signer, folder: Path) -> tuple[chain.Frontier, str]:
        """The tree at the newest checkpoint this key signed (its stored compact range, checked
        against the signed root), or at the prune anchor, or empty."""
        latest = None
        for checkpoint, signatures in read_checkpoints(folder, self.origin).checkpoints:
            newer = latest is None or checkpoint.size >= latest.size
            if newer and checkpoint.head and signed_by(checkpoint.note, signatures, signer.verifier):
                latest = checkpoint
        anchor = audit_sql.anchor(conn)
        if latest is not None and (anchor is None or latest.size >= anchor.size):
            try:
                tree = chain.Frontier.from_hex(latest.size, latest.frontier)
            except ValueError:
                tree = None
            if tree is not None and tree.root() == latest.root and latest.head is not None:
                return tree, latest.head
        if anchor is not None:
            return chain.Frontier.from_hex(anchor.size, anchor.frontier), anchor.last_hash
        return chain.Frontier(), chain.GENESIS.hex()

    def checkpoint(self, *, principal: Principal | None = None, force: bool = False) -> Checkpoint | None:
        """Sign the log's committed entries: a new checkpoint when the log grew since the last
        one (or ``force``). Entries are read from committed data and made durable (SQLite:
        WAL synced) before signing, so no checkpoint covers an entry a crash could lose.
        Refuses to sign a log whose new entries do not chain onto the last checkpoint."""
        if principal is not None:
            self._admin(principal)
        signer, folder = self._require_signing()
        with self._ck_lock:
            with audit_sql.reading(self.service.store) as conn:
                if self._state is None:
                    self._state = self._resume(conn, signer, folder)
                tree, head = self._state[0].copy(), self._state[1]
                prev = bytes.fromhex(head)
                for row in audit_sql.raw_rows(conn, tree.size):  # plain tuples: every entry is read once more here
                    if row[0] != tree.size:
                        raise StorageError(f"audit entry {tree.size} is missing; refusing to sign (run `memmesh audit verify`)")
                    digest = _rehash(prev, row)
                    if digest is None or digest.hex() != row[7]:
                        raise StorageError(f"audit entry {row[0]} does not match its hash; refusing to sign (run `memmesh audit verify`)")
                    tree.append(digest)
                    prev = digest
                    if not tree.size % YIELD_EVERY:
                        time.sleep(0)  # let appenders of this process have the GIL (see YIELD_EVERY)
            if tree.size == self._state[0].size and not force:
                return None  # nothing new: the state's size is signed already (or is the empty log)
            self._make_durable()
            note = make_note(signer, self.origin, tree.size, tree.root())
            checkpoint = Checkpoint(self.origin, tree.size, tree.root(), note, tree.to_hex(), prev.hex())
            append_checkpoint(folder, checkpoint)
            self._state = (tree, prev.hex())
            self._appended = 0
            return checkpoint

    def _make_durable(self) -> None:
        """SQLite in WAL mode with synchronous=NORMAL commits without fsync: make what the
        checkpoint signs survive power loss first. On PostgreSQL an append's commit may be
        asynchronous, its appender waiting for the flush after it (see
        :func:`audit_sql.lock_chain`): another reader sees the entry a moment before it is
        durable, so the WAL is flushed past every entry read before signing.

        A passive checkpoint alone is not enough: it syncs the WAL only when it can move
        frames into the database, and while a reader holds an older snapshot (any open read
        under ``serve``) it moves none and syncs nothing, so the newest commits would be
        signed while still only in the page cache. So the WAL file itself is fsynced after
        it (fsync covers the file, whichever descriptor wrote it). Frames a checkpoint has
        already moved are in the database file, which that checkpoint synced; SQLite reuses
        the WAL from its start only after that."""
        store = self.service.store
        durable = getattr(unwrap(store), "make_commits_durable", None)
        if durable is not None:  # PostgreSQL
            durable()
            return
        path = getattr(store, "path", None)
        if path and not getattr(store, "in_memory", True):
            with store.reading() as conn:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            _fsync_if_present(f"{path}-wal")

    # -- retention --------------------------------------------------------------------------

    def prune(self, *, older_than_days: float, principal: Principal | None = None) -> PruneReport:
        """Drop entries older than the given age, but only below a signed checkpoint: the
        largest checkpointed size whose last entry is old enough. The compact range and last
        hash of what is dropped stay (so the rest still verifies against every checkpoint),
        and the prune itself is appended as an entry."""
        if principal is not None:
            self._admin(principal)
        if not isinstance(older_than_days, int | float) or isinstance(older_than_days, bool) or older_than_days <= 0:
            raise InvalidInputError(f"the retention age must be a positive number of days (got {older_than_days!r})", usage=True)
        signer, folder = self._require_signing()
        cutoff = self.service.clock() - timedelta(days=older_than_days)
        verifier = signer.verifier
        signed = {c.size: c for c, sigs in read_checkpoints(folder, self.origin).checkpoints if signed_by(c.note, sigs, verifier)}
        with self._ck_lock, self.service.store.write() as tx:
            conn = tx.conn
            audit_sql.lock_chain(conn)
            anchor = audit_sql.anchor(conn)
            start = anchor.size if anchor else 0
            tree = chain.Frontier.from_hex(start, anchor.frontier) if anchor else chain.Frontier()
            prev = bytes.fromhex(anchor.last_hash) if anchor else chain.GENESIS
            best: tuple[int, chain.Frontier, bytes] | None = None
            for row in audit_sql.rows(conn, start):
                if parse_ts(row.at) >= cutoff:
                    break
                digest = _rehash(prev, row)
                if row.idx != tree.size or digest is None or digest.hex() != row.hash:
                    raise StorageError(f"audit entry {tree.size} does not verify; refusing to prune (run `memmesh audit verify`)")
                tree.append(digest)
                prev = digest
                if tree.size in signed:
                    if tree.root() != signed[tree.size].root:
                        raise StorageError(
                            f"the log differs from signed checkpoint {tree.size}; refusing to prune (run `memmesh audit verify`)"
                        )
                    best = (tree.size, tree.copy(), prev)
            if best is None:
                return PruneReport(pruned=0, below=start, checkpoint_size=None)
            size, kept, last = best
            pruned = audit_sql.prune_below(conn, Anchor(size=size, last_hash=last.hex(), frontier=kept.to_hex()))
            self.append(
                tx,
                "audit.prune",
                detail={
                    "below": size,
                    "pruned": pruned,
                    "older_than_days": older_than_days,
                    "root": base64.b64encode(kept.root()).decode(),
                },
                actor=actor_of(principal, "retention") if principal is not None else "system:retention",
            )
        return PruneReport(pruned=pruned, below=size, checkpoint_size=size)

    # -- the background checkpointer (serve) ----------------------------------------------

    def start(self) -> None:
        """Checkpoint in the background while a server runs (when signing is configured)."""
        if self._signer is None or self.folder is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="memmesh-audit-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the checkpointer and sign what is committed (a clean shutdown's checkpoint)."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._thread = None
        self._safe_checkpoint()

    def _run(self) -> None:
        last_prune = 0.0
        import time

        while not self._stop.is_set():
            self._wake.wait(self.config.checkpoint_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._safe_checkpoint()
            if self.config.retention_days > 0 and time.monotonic() - last_prune > 3600:
                last_prune = time.monotonic()
                try:
                    self.prune(older_than_days=self.config.retention_days)
                except Exception:
                    log.exception("audit retention failed")

    def sign_unsigned(self) -> None:
        """Sign what this process appended and has not signed yet, when signing is set up
        (called as the store closes, so a clean shutdown leaves no entry of its own unsigned)."""
        if self._appended and self._signer is not None and self.folder is not None:
            self._safe_checkpoint()

    def _safe_checkpoint(self) -> None:
        try:
            self.checkpoint()
        except Exception:
            log.exception("audit checkpoint failed")


def _fsync_if_present(path: str) -> None:
    """fsync a file by name; a file that is not there (no WAL yet, or removed as the last
    connection closed, its frames moved into the synced database file) has nothing to sync."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MAX_INDEX = 2**63 - 1
"""The largest entry index a store can hold (a signed 64-bit integer in SQLite and PostgreSQL)."""


def _check_since(since: object) -> None:
    """Refuse a ``since`` no store can compare with (above 64 bits the SQL driver itself fails)."""
    if not isinstance(since, int) or isinstance(since, bool) or not 0 <= since <= MAX_INDEX:
        raise InvalidInputError(f"since must be an entry index from 0 to {MAX_INDEX} (got {since!r})", usage=True)
