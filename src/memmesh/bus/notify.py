"""Waking long-polls when a message arrives, without busy polling.

In one process a send wakes the waiters of *its* conversation the moment it commits: every
waiting reader of a chat, but only as many waiting claims of a queue as it sent tasks (each
waiter sleeps on a condition of its own). Waking every waiting thread of the process for each
task cost 11-13 context switches per task with 16 workers and capped one-task-per-call
throughput (issue 24). A claim woken for a task that leaves without looking at the queue again
(its timeout, its client gone, a key revoked) hands the wake-up on to another waiter of the
queue (:meth:`Waiter.close`), so no task waits for a timer while a worker waits.

Other processes are noticed through the database itself, by one thread per process on behalf
of all its waiters: on SQLite a watcher reads ``PRAGMA data_version`` of the store's writer
connection while anyone waits (a counter SQLite moves when another connection commits, never
for the connection's own commits; reading it costs no I/O), each time the file's write-ahead
log is written (Linux inotify, see :class:`WalWrites`) and every few milliseconds for a moment
after, so a waiting process costs no CPU while nothing is written; on
PostgreSQL a listener holds ``LISTEN memmesh_bus`` on one connection, which every committed
send ``NOTIFY``-s. The watcher does not know which conversation changed and wakes every
waiter; the listener wakes the conversation's waiters as a send here does when the payload
names the conversation and its count. Waiters themselves only sleep: with a worker pool of 16
threads, a check per waiter every 4 ms was 4,000 reads a second, and every commit of the
process's own claims and completes woke them all (issue 24).
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from memmesh.errors import MemmeshError
from memmesh.waits import Abandoned, gone

try:  # Linux only; elsewhere the watcher polls every SQLITE_CHECK_S
    from inotify_simple import INotify
    from inotify_simple import flags as inotify_flags
except ImportError:  # pragma: no cover - not Linux
    INotify = None

CHANNEL = "memmesh_bus"
SQLITE_CHECK_S = 0.004
"""How often the SQLite watcher asks whether another process committed, while anyone waits and
the write-ahead log was written in the last FOLLOW_S (or always, where inotify is missing)."""
FOLLOW_S = 0.05
"""How long the SQLite watcher keeps checking every SQLITE_CHECK_S after a write to the log: a
committing process writes its frames to the log (the event) *before* it publishes the commit in
the shared-memory index, so the counter may move only a moment after the event."""
QUIET_CHECK_S = 0.25
"""How often the SQLite watcher checks while the log is not written at all: a safety net for a
write inotify cannot see (a log file replaced under the watch), at ~4 reads a second."""
WATCH_LINGER_S = 1.0
"""How long the SQLite watcher keeps watching after its last waiter left: a worker that claims,
works and claims again finds it still watching (no fresh start, which wakes every waiter once).
Then the watcher ends; the next waiter starts another. A paused watcher outlived its store: it
never read the store again, so nothing told it the store had closed, and it kept the closed
store and its service alive for the life of the process."""
RECHECK_S = 1.0
"""A waiter re-reads this often even without a wake-up (a lost listener connection or a dead
watcher must not leave a poll asleep until its timeout)."""


class Waiter:
    """One long-poll's place among a notifier's waiters (see :meth:`Notifier.waiting`).

    A waiter of a queue (``queue``) counts the wake-ups sent to it for tasks (``received``)
    and how many of them a look at the queue has answered (``answered``): a look that found
    nothing claimable answers every wake-up received before it started (whatever those sends
    committed, it saw), and a claim answers as many as it took tasks (all of them when it took
    fewer than it asked for: the queue had no more). What is unanswered when the waiter leaves
    is handed on (:meth:`close`). Any other waiter is woken by every send to its conversation
    (a chat's readers each want every message), or by every send at all when it names none."""

    __slots__ = ("abandoned", "answered", "cond", "key", "notifier", "queue", "ready", "received", "seen")

    def __init__(self, notifier: Notifier, key: str | None, queue: bool, abandoned: Abandoned | None) -> None:
        self.notifier = notifier
        self.key = key
        self.queue = queue
        self.abandoned = abandoned
        self.cond = threading.Condition(notifier._lock)
        self.received = 0
        self.answered = 0
        self.ready = False
        """The last look found something the caller has not claimed yet: leaving now owes it on."""
        self.seen: tuple[int, int] | None = None
        """The wake-up counts (this waiter's, every waiter's) when its last look began: a
        wake-up after them is news to it. None before its first look."""

    def look(self, check: Callable[[], Any]) -> Any:
        """``check()``, counting what it answers: when it finds nothing, every wake-up received
        before it started; when it finds something, nothing yet (the caller's claim answers)."""
        before = self.received
        self.seen = (before, self.notifier._everyone)
        found = check()
        self.ready = bool(found)
        if not found:
            self.answered = max(self.answered, before)
        return found

    def claiming(self) -> int:
        """A claim starts now, a look of its own: the wake-ups it may answer (give it back to
        :meth:`claimed`)."""
        self.seen = (self.received, self.notifier._everyone)
        return self.seen[0]

    def claimed(self, before: int, took: int, limit: int) -> None:
        """The claim started at ``before`` (see :meth:`claiming`) leased ``took`` of up to ``limit`` tasks."""
        self.ready = False
        self.answered = max(self.answered, before) if took < limit else min(before, self.answered + took)

    def wait(self, check: Callable[[], Any], timeout_s: float) -> Any:
        """``check()`` until it returns something truthy or ``timeout_s`` passes (then its last,
        falsy, answer); it looks again only when woken (a send to this waiter, a wake-up of
        every waiter, its caller gone, the process stopping) or every RECHECK_S. A waiter
        that looked already (its caller's first look, or a claim) sleeps first.

        The wake-up counts are read *before* each look, so a commit landing between a look and
        the wait is never missed: its wake-up moves a count the wait then sees (the waiter is
        registered before its first look, so a send after it counts it).

        When ``abandoned`` is set (the caller went away) the wait ends at once with None,
        without another look: nobody is there to take what it would find. Once the process
        is stopping (:meth:`Notifier.end_waits`) a wait ends as at its timeout: at once, with
        one last look (its caller is still there to take what it finds)."""
        notifier, abandoned = self.notifier, self.abandoned
        deadline = time.monotonic() + timeout_s
        if gone(abandoned):
            return None
        found, looked = None, False
        if self.seen is None:
            found, looked = self.look(check), True
        while not found:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or notifier._ending:
                return found if looked else self.look(check)
            with notifier._lock:
                self.cond.wait_for(self._moved_on, timeout=min(remaining, RECHECK_S))
            if gone(abandoned):
                return None
            found, looked = self.look(check), True
        return found

    def _moved_on(self) -> bool:
        """Whether a wake-up came since the last look began, the caller went away, or the
        process is stopping (called with the lock held)."""
        return self.seen != (self.received, self.notifier._everyone) or gone(self.abandoned) or self.notifier._ending

    def wake(self) -> None:
        """Wake this waiter without a wake-up (its caller went away: it sees that and leaves)."""
        with self.notifier._lock:
            self.cond.notify()

    def close(self) -> None:
        """Leave the waiters. A queue waiter hands on what it owes: the wake-ups no look of its
        answered, or, when it found a task it never claimed (its caller went away, its key was
        revoked), one. They go to other waiters of the queue as a send of that many tasks
        does, so they read the queue afresh (a ticket this waiter took is not theirs)."""
        notifier = self.notifier
        with notifier._lock:
            waiters = notifier._waiters.get(self.key)
            if waiters is not None:
                waiters.pop(self, None)
                if not waiters:
                    del notifier._waiters[self.key]
            owed = max(self.received - self.answered, int(self.ready)) if self.queue else 0
        if owed > 0 and self.key is not None:
            notifier.notify(self.key, owed)


class Notifier:
    """Per-store wake-ups for long-polls (see the module doc)."""

    def __init__(self, store: Any, postgres: bool) -> None:
        self.store = store
        self.postgres = postgres
        self._lock = threading.Lock()
        self._waiters: dict[str | None, dict[Waiter, None]] = {}
        """Who waits, per conversation (None: waiters of any), in the order they came."""
        self._generation = 0
        self._everyone = 0
        """Wake-ups of every waiter (another process's commit, a replica's, the listener's start)."""
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._ending = False
        """Set by :meth:`end_waits` (the process is stopping): every wait ends at once."""
        self._waiting = 0
        self._watching = False
        self._watches = not postgres and not getattr(store, "in_memory", False)
        """SQLite files need a watcher; an in-memory store has no other connection to watch."""
        self._watched = threading.Condition()
        """Guards ``_waiting`` (waiters now) and ``_watching`` (a SQLite watcher runs): a waiter
        counts itself and starts a watcher in one step, and a watcher ends in one step with
        finding nobody waiting, so no waiter is ever counted while no watcher runs."""
        self.origin = secrets.token_hex(8)
        self._mine = f" {self.origin}"
        """This process's mark in the payload of the NOTIFY its sends issue (see :meth:`payload`)."""
        self.on_sent: Callable[[str, int, int], None] | None = None
        """Told (conversation, messages sent, new wake-up count) under the wake-up lock when
        another process's send is notified (PostgreSQL): the bus carries its queue counts
        forward instead of every such wake-up costing a read of the queue (Bus._sent)."""

    def payload(self, conversation_id: str, count: int = 0) -> str:
        """The NOTIFY payload of a send in this process. Its listener skips its own marks: the
        send already woke this process's waiters (:meth:`notify` after it returned), and the
        echo would wake them a second time, each wake-up costing a read of the queue. Other
        processes' listeners read the conversation and ``count``, the messages sent, and wake
        that conversation's waiters (see :attr:`on_sent`)."""
        return f"{conversation_id} {count} {self.origin}" if count > 0 else f"{conversation_id} {self.origin}"

    @property
    def generation(self) -> int:
        """How many wake-ups this process has seen (a send here, or a NOTIFY from any process
        on PostgreSQL), whoever they woke: a reading taken before a look at the database
        dates that look."""
        return self._generation

    def notify(self, conversation_id: str | None = None, count: int | None = None, then: Callable[[int], None] | None = None) -> None:
        """Something committed: wake its waiters. With ``conversation_id`` a send of ``count``
        messages (None: unknown) to that conversation wakes its waiters that are not queue
        waiters, up to ``count`` of its queue waiters (all of them when None) and the waiters
        of any conversation; without it (another process's commit on SQLite, a replica's)
        every waiter wakes. ``then(new wake-up count)`` runs under the wake-up lock before any
        waiter runs, so what it notes (a send's task count, see Bus._sent) is filed under the
        new count before a waiter can look."""
        with self._lock:
            self._generation += 1
            if then is not None:
                then(self._generation)
            if conversation_id is None:
                self._wake_everyone()
                return
            for waiter in self._waiters.get(None, ()):
                waiter.received += 1
                waiter.cond.notify()
            waiters = self._waiters.get(conversation_id)
            if waiters:
                self._deliver(waiters, count)

    @staticmethod
    def _deliver(waiters: dict[Waiter, None], count: int | None) -> None:
        """Wake ``waiters`` of one conversation for ``count`` messages (lock held): each queue
        waiter that owes nothing first, in the order they came, so one task wakes one worker;
        what is left goes to the first queue waiter, which hands on what its claim cannot use."""
        left = len(waiters) if count is None else count
        first = None
        for waiter in waiters:
            if not waiter.queue:
                waiter.received += 1
                waiter.cond.notify()
                continue
            first = first or waiter
            if left > 0 and waiter.received == waiter.answered and not waiter.ready:
                waiter.received += 1
                waiter.cond.notify()
                left -= 1
        if left > 0 and first is not None:
            first.received += left
            first.cond.notify()

    def _wake_everyone(self) -> None:
        """Wake every waiter (lock held)."""
        self._everyone += 1
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cond.notify()

    @contextmanager
    def waiting(self, conversation_id: str | None = None, *, queue: bool = False, abandoned: Abandoned | None = None) -> Iterator[Waiter]:
        """Register a waiter for the block (see :class:`Waiter`): from now on a send to
        ``conversation_id`` counts it, so a send committed after its first look wakes it. A
        ``queue`` waiter is one of a queue's claims: a send of n tasks wakes n of them."""
        if self.postgres:
            self._ensure_listener()
        waiter = Waiter(self, conversation_id, queue, abandoned)
        with self._lock:
            self._waiters.setdefault(conversation_id, {})[waiter] = None
        try:
            with self._counted_waiter(), abandoned.waking(waiter.wake) if abandoned is not None else nullcontext():
                yield waiter
        finally:
            waiter.close()

    def wait_for(
        self, check: Callable[[], Any], timeout_s: float, abandoned: Abandoned | None = None, conversation_id: str | None = None
    ) -> Any:
        """``check()`` until it returns something truthy or ``timeout_s`` passes (then its
        last, falsy, answer), woken by sends to ``conversation_id`` (to any conversation when
        None) and by whatever wakes every waiter (see :meth:`Waiter.wait`)."""
        if timeout_s <= 0 or self._ending:
            return None if gone(abandoned) else check()
        with self.waiting(conversation_id, abandoned=abandoned) as waiter:
            return waiter.wait(check, timeout_s)

    @contextmanager
    def _counted_waiter(self) -> Iterator[None]:
        """Count this waiter while it waits, so the SQLite watcher watches only while someone
        does (starting one when none runs)."""
        with self._watched:
            self._waiting += 1
            if self._watches and not self._watching and self._wanted():
                self._watching = True
                threading.Thread(target=self._watch, name="memmesh-bus-watch", daemon=True).start()
        try:
            yield
        finally:
            with self._watched:
                self._waiting -= 1

    @property
    def ending(self) -> bool:
        """Whether :meth:`end_waits` was called: waits end at once from now on."""
        return self._ending

    def end_waits(self) -> bool:
        """The process is stopping (a server shutting down): wake every waiter, and end this
        and every later wait at once, as at its timeout (one last check, then its answer). A
        stopping server thus answers its long-polls as empty polls, instead of holding its
        shutdown until each times out. Nothing else changes: writes go on. True the first time."""
        with self._lock:
            first = not self._ending
            self._ending = True
            self._wake_everyone()
        return first

    def _ensure_listener(self) -> None:
        """Start this process's PostgreSQL listener if it is not running (SQLite's watcher is
        started by the waiter that finds none running, see :meth:`_counted_waiter`)."""
        with self._lock:
            if self._listener is not None and self._listener.is_alive():
                return
            self._listener = threading.Thread(target=self._listen, name="memmesh-bus-listen", daemon=True)
            self._listener.start()

    def _watch(self) -> None:
        """SQLite: while anyone waits (and WATCH_LINGER_S after), read the writer connection's
        commit counter every SQLITE_CHECK_S and wake the waiters when another process
        committed; then end (the next waiter starts another). A watcher's first reading
        wakes the waiters once: a commit may have landed between a waiter's look and it."""
        try:
            self._watching_loop()
        finally:
            with self._watched:
                self._watching = False

    def _watching_loop(self) -> None:
        marker: int | None = None
        busy: tuple[int, int] | None = None
        idle_since = time.monotonic()
        with WalWrites.watch(getattr(self.store, "wal_path", None)) as writes:
            written_at = time.monotonic()
            while self._wanted():
                with self._watched:
                    if self._waiting:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since >= WATCH_LINGER_S:
                        self._watching = False  # with nobody counted: the next waiter starts a watcher
                        return
                try:
                    moved, marker, busy = self._look(marker, busy)
                except MemmeshError:  # the store closed (or failed): the waiters' own checks say so
                    return
                if moved:
                    self.notify()
                if writes is None or busy is not None or time.monotonic() - written_at < FOLLOW_S:
                    self._stop.wait(SQLITE_CHECK_S)
                    if writes is not None and writes.seen(0):
                        written_at = time.monotonic()
                elif writes.seen(QUIET_CHECK_S):
                    written_at = time.monotonic()

    def _look(self, marker: int | None, busy: tuple[int, int] | None) -> tuple[bool, int | None, tuple[int, int] | None]:
        """One reading of the watcher: whether to wake the waiters, the writer connection's
        counter (``marker``), and, while this process's writer is busy, the reader
        connection's counter with this process's count of finished commits read just before
        it (``busy``).

        The writer's counter is exact (it never moves for this process's own commits), but
        the writer may be busy for long: waiting up to ``busy_timeout`` for another process's
        lock, exactly while other processes commit. Then a reader connection's counter is
        read instead; it moves for this process's commits too, so a move counts only when no
        commit of this process can have landed between the two readings: the commits begun
        by now (read after the counter) are those finished before the last look (read before
        its counter). A COMMIT lands between its two counts, so neither order of reading one
        count alone is safe: counted before, a look between the count and the landing took
        the commit for another process's; counted after, a look between the landing and the
        count did. (A commit of another process hidden by one of ours is seen on the
        writer's counter once the writer is free.)"""
        now = self.store.others_commits(wait=False)
        if now is not None:
            return now != marker and (marker is not None or self._waiting > 0), now, None
        finished = self.store.own_commits
        seen = self.store.commits_seen()
        begun = self.store.own_commits_begun
        return busy is not None and seen != busy[0] and begun == busy[1], marker, (seen, finished)

    def _listen(self) -> None:
        """One LISTEN connection for this process; a notification wakes the waiters of the
        conversation it names (every waiter when it names none)."""
        import psycopg

        while self._wanted():
            try:
                with psycopg.connect(self.store.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.notify()  # anything sent while we were connecting is re-read
                    while self._wanted():
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            if not note.payload.endswith(self._mine):
                                self._notified(note.payload)
            except psycopg.Error:
                if self._stop.wait(0.5):
                    return

    def _notified(self, payload: str) -> None:
        """Wake the waiters a NOTIFY payload names (see :meth:`payload`): a send's with its
        count is carried (:attr:`on_sent`) and wakes that many of the queue's waiters, one
        without a count wakes all of the conversation's, an empty one (a replica's commit)
        every waiter."""
        parts = payload.split(" ")
        if len(parts) == 3 and parts[1].isdigit():
            then = None if self.on_sent is None else functools.partial(self.on_sent, parts[0], int(parts[1]))
            self.notify(parts[0], int(parts[1]), then)
        elif len(parts) == 2 and parts[0]:
            self.notify(parts[0])
        else:
            self.notify()

    def _wanted(self) -> bool:
        """Listen while the store is open (its pool closes with it) and nobody said stop."""
        return not self._stop.is_set() and not getattr(getattr(self.store, "_pool", None), "closed", False)

    def close(self) -> None:
        self._stop.set()


class WalWrites:
    """Writes to a SQLite file's write-ahead log, seen through Linux inotify: what lets the
    watcher sleep while nothing is written instead of reading the commit counter 250 times a
    second (issue 24: a waiting process's CPU ≈ 0). An event says the log was *written*, by
    any process, this one included; only the commit counter says whether another process
    committed. Where inotify is missing (not Linux, the per-user limit of inotify instances
    reached, no log file yet) :meth:`watch` yields None and the watcher polls as before."""

    def __init__(self, inotify: Any) -> None:
        self._inotify = inotify

    @classmethod
    @contextmanager
    def watch(cls, wal_path: str | None) -> Iterator[WalWrites | None]:
        watcher = cls._open(wal_path)
        try:
            yield watcher
        finally:
            if watcher is not None:
                watcher._inotify.close()

    @classmethod
    def _open(cls, wal_path: str | None) -> WalWrites | None:
        if INotify is None or wal_path is None:
            return None
        try:
            inotify = INotify()
        except OSError:  # too many inotify instances for this user, or no inotify at all
            return None
        try:
            inotify.add_watch(wal_path, inotify_flags.MODIFY)
        except OSError:  # no log file (yet): poll
            inotify.close()
            return None
        return cls(inotify)

    def seen(self, timeout_s: float) -> bool:
        """Whether the log was written since the last call, waiting up to ``timeout_s`` for a
        write (0: only look). Every pending event is read, so one look covers a burst."""
        return bool(self._inotify.read(timeout=int(timeout_s * 1000)))
