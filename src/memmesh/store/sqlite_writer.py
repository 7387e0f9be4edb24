"""The SQLite group-commit writer: many callers' writes share one COMMIT.

Every write goes through one writer connection per process, inside ``BEGIN IMMEDIATE`` so
the file lock is taken before anything is read (no upgrade deadlock of deferred
transactions). The COMMIT is most of a small write's cost, so callers that arrive while a
transaction is open join it and the last one in commits for all; each caller that joins runs
its block under its own ``SAVEPOINT``, so its failure undoes only its own changes. The first
caller of a group needs none (the transaction holds nothing else; its failure rolls it back
whole): a savepoint costs two statements and an undo copy of every page the block changes, and
most writes are alone in their group (issue 16). ``busy_timeout``
makes other processes wait for the lock; :meth:`GroupCommitWriter._retry` covers the rare
``SQLITE_BUSY`` that bypasses the busy handler (e.g. during checkpoints).

SQLite may roll a whole transaction back on its own when a statement fails with
``SQLITE_FULL``, ``SQLITE_IOERR`` (a full disk, a file-size limit) or ``SQLITE_NOMEM``. The
group then lost every member's changes, so the writer checks after each caller's block that
the group transaction is still open: if not, every member of that group gets the error (no
one is told a rolled-back write committed), and the next caller begins a fresh group rather
than running its block outside any transaction (where ``SAVEPOINT``/``RELEASE`` would
commit it on its own, unreported).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any

from memmesh.errors import CorruptDatabaseError, StorageError, UnavailableError
from memmesh.store.base import not_unicode

log = logging.getLogger(__name__)

GROUP_LIMIT = 64
"""Most callers whose writes share one COMMIT."""


class _Done:
    """A group's end, which every member waits for: a lock taken when made, released once by
    :meth:`set` (under the write lock, so never twice at once); each waiter takes it and
    passes it on. A ``threading.Event`` (a condition variable over a second lock, its
    ``notify_all`` and a fresh waiter lock per blocked wait) cost ~15 µs of Python on every
    write, most of them alone in their group (issue 24: three writes per queued task)."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        """Let every member's :meth:`wait` return (again: no-op)."""
        if not self._set:
            self._set = True
            self._lock.release()

    def wait(self) -> None:
        """Return once :meth:`set` was called, waking the next waiter on the way out (a
        ``with`` block: a waiter interrupted there, Ctrl-C in the main thread, still hands
        the lock on, so the group's other members are not left waiting)."""
        with self._lock:
            pass


class _Batch:
    """One group transaction: how many callers' units it holds, and how its commit went."""

    __slots__ = ("done", "error", "members")

    def __init__(self) -> None:
        self.members = 0
        self.error: BaseException | None = None
        self.done = _Done()


def translate(exc: BaseException, path: str) -> BaseException:
    """Driver errors become memmesh errors where they enter; everything else passes through."""
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in str(exc) or "busy" in str(exc):
            return UnavailableError(f"database {path} is busy: {exc}; try again")
        return StorageError(f"write to {path} failed: {exc}")
    if isinstance(exc, sqlite3.DatabaseError):
        return CorruptDatabaseError(f"database {path} is damaged: {exc}")
    if isinstance(exc, UnicodeEncodeError):
        return not_unicode(exc)
    return exc


class GroupCommitWriter:
    """Serialised, group-committed writes on ``self._writer`` (mixed into the SQLite store,
    which sets ``path``, ``busy_timeout_ms`` and ``_writer`` and makes write transactions
    with ``_new_tx``)."""

    path: str
    busy_timeout_ms: int
    _writer: sqlite3.Connection
    _new_tx: Callable[[sqlite3.Connection], Any]
    _refuse_if_closed: Callable[[], None]

    def _init_writer(self) -> None:
        self._local = threading.local()
        self._write_lock = threading.RLock()  # re-entrant: in-memory reads share the writer
        self._group_lock = threading.Lock()
        self._queued = 0
        self._batch: _Batch | None = None
        self.own_commits = 0
        """How many group transactions this writer committed (see SQLiteStore.others_commits);
        counted once each COMMIT has returned."""
        self.own_commits_begun = 0
        """The same, counted just before each COMMIT: between the two counts a COMMIT is in
        flight (it may have landed already). The bus watcher reads both (bus/notify.py)."""
        self._trouble: tuple[float, str] | None = None

    def write_trouble(self) -> tuple[float, str] | None:
        """When (epoch seconds) and why a write last failed for the store's own reasons (a
        full disk, an I/O error; None if none did since the store opened): the health
        report's ``writes`` component, so an operator sees a node that refuses writes even
        though it still answers reads. Later commits do not clear it: on a full disk small
        writes still commit (into log space SQLite reuses) while every larger one fails."""
        return self._trouble

    def _troubled(self, error: BaseException | None) -> None:
        """Remember a write the store itself refused (full disk, I/O error, a transaction
        SQLite rolled back): plain StorageError, not a busy lock (UnavailableError, which
        clears itself) nor a caller's bad input."""
        if type(error) is StorageError:
            self._trouble = (time.time(), error.message)

    def _retry(self, action: Callable[[], Any]) -> Any:
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

    def write(self) -> _Unit:
        """One serialised, atomic unit of writing (group commit).

        Each caller's block runs alone; a caller joining an open group runs under its own
        ``SAVEPOINT`` (its failure undoes only its own changes), the group's first caller
        without one (its failure rolls the transaction back whole: nothing else is in it).
        Callers that arrive while a transaction is open join it, and the last one in commits
        for all (at most ``GROUP_LIMIT`` per commit); everyone returns only after that
        commit, so nothing is acknowledged before it is durable. A lone caller (CLI, one
        agent) commits at once, exactly like a plain transaction. (The block is a
        :class:`_Unit`.)
        """
        return _Unit(self)

    def _lost_error(self) -> StorageError:
        return StorageError(
            f"write to {self.path} failed: SQLite rolled the transaction back (disk full or I/O error); nothing was stored, try again"
        )

    def _abandon(self, batch: _Batch) -> None:
        """The group transaction is gone (SQLite rolled it back on its own): wake its members
        with the error, so none of them reports success, and let the next caller begin anew."""
        if batch.members:
            batch.error = self._lost_error()
            self._troubled(batch.error)
        self._batch = None
        batch.done.set()

    def _open_batch(self) -> _Batch:
        """The open group transaction, beginning one (BEGIN IMMEDIATE) if none is open."""
        conn = self._writer
        if self._batch is not None:
            if conn.in_transaction:
                return self._batch
            self._abandon(self._batch)  # rolled back under a caller whose failure did not say so
        elif conn.in_transaction:
            self._rollback()  # left open by a ROLLBACK that failed: never build on it
        try:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.OperationalError as exc:
            raise UnavailableError(f"database {self.path} stayed locked for {self.busy_timeout_ms} ms; try again") from exc
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"database {self.path} is damaged: {exc}") from exc
        self._batch = _Batch()
        return self._batch

    @contextmanager
    def _savepoint(self, conn: sqlite3.Connection) -> Iterator[Any]:
        conn.execute("SAVEPOINT unit")
        try:
            yield self._new_tx(conn)
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
                self.own_commits_begun += 1
                try:
                    self._retry(lambda: conn.execute("COMMIT"))
                finally:
                    self.own_commits = self.own_commits_begun
            elif batch.members:
                batch.error = StorageError(f"write to {self.path} failed: the transaction was aborted; try again")
        except sqlite3.DatabaseError as exc:
            batch.error = translate(exc, self.path)  # before the ROLLBACK, which may fail too
            self._troubled(batch.error)
            self._rollback()
        finally:
            self._batch = None
            batch.done.set()

    def _rollback(self) -> None:
        """Roll back whatever is open, best effort: on a full disk or a failing device the
        ROLLBACK itself can fail, and the error the callers get is the one that made us roll back."""
        conn = self._writer
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            log.warning("rollback on %s failed: %s", self.path, exc)


class _Unit:
    """One caller's block of :meth:`GroupCommitWriter.write`, whose docstring says what it
    does. A class rather than a ``@contextmanager`` generator: every write of the process
    opens one (three per queued task), and the generator's machinery cost more Python than
    the block's own bookkeeping (issue 24)."""

    __slots__ = ("_alone", "_batch", "_nested", "_savepoint", "_w")

    def __init__(self, writer: GroupCommitWriter) -> None:
        self._w = writer

    def __enter__(self) -> Any:
        w = self._w
        self._savepoint: AbstractContextManager[Any] | None = None
        if getattr(w._local, "write_depth", 0):
            # A write inside a write on the same thread: a nested savepoint of the same unit.
            if not w._writer.in_transaction:
                raise w._lost_error()
            self._nested = True
            self._savepoint = w._savepoint(w._writer)
            return self._savepoint.__enter__()
        self._nested = False
        with w._group_lock:
            w._queued += 1
        w._write_lock.acquire()
        try:
            with w._group_lock:
                w._queued -= 1
            w._refuse_if_closed()
            batch = self._batch = w._open_batch()
            self._alone = batch.members == 0  # first in its group: the transaction holds nothing of anyone else
            w._local.write_depth = 1
        except BaseException:
            w._write_lock.release()
            raise
        try:
            if self._alone:
                return w._new_tx(w._writer)
            savepoint = w._savepoint(w._writer)
            tx = savepoint.__enter__()
        except BaseException as exc:  # (a Ctrl-C, a failed SAVEPOINT): the writer is never left held
            self._finish(exc, None)  # raises exc (translated), after the group's bookkeeping
            raise  # (unreachable: _finish raised)
        self._savepoint = savepoint
        return tx

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> bool:
        if self._nested:
            assert self._savepoint is not None
            return bool(self._savepoint.__exit__(kind, error, trace))
        self._finish(error, error, kind, trace)
        return False

    def _finish(
        self,
        failure: BaseException | None,
        error: BaseException | None,
        kind: type[BaseException] | None = None,
        trace: TracebackType | None = None,
    ) -> None:
        """After the caller's block (its ``error``, or None) or a failed ``SAVEPOINT``
        (``failure``): end the unit, commit the group if this caller is its last, release
        the writer, then raise the failure (translated) or the group's error, or return
        once the group's commit is done. The block's own error propagates untouched."""
        w, batch, alone = self._w, self._batch, self._alone
        try:
            try:
                try:
                    if self._savepoint is not None:
                        self._savepoint.__exit__(kind, error, trace)  # undoes this caller's changes on error; raises if that fails
                    if failure is None:
                        if not w._writer.in_transaction:
                            raise w._lost_error()
                        batch.members += 1
                except BaseException as exc:
                    failure = exc
                if failure is not None and alone:
                    w._rollback()  # its own transaction: undo it whole (nobody else's is in it)
                    w._abandon(batch)  # even if the ROLLBACK failed: never commit a failed caller's changes
            finally:
                w._local.write_depth = 0
            if batch is not w._batch:
                pass  # abandoned above: the next caller begins a fresh group
            elif not w._writer.in_transaction:
                w._abandon(batch)  # SQLite rolled the group back: its members' writes are gone
            else:
                with w._group_lock:
                    last = w._queued == 0 or batch.members >= GROUP_LIMIT
                if last:
                    w._commit(batch)
        finally:
            w._write_lock.release()
        if failure is not None:
            translated = translate(failure, w.path)
            w._troubled(translated)
            if translated is failure:
                if failure is error:
                    return  # the block's own error: the with statement re-raises it as it was
                raise failure
            raise translated from failure
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
