"""Embedding off the write path: a write commits first, its vector follows in micro-batches.

Embedding dominates a write (MiniLM takes ~10 ms for one text on 2 cores; committing the row
takes under 1 ms), and a remote embedder adds a network round trip. So a write stores the
memory with a *pending* mark (table ``pending_vectors``, in the same transaction) and hands
its id to this worker; the memory is recallable by keyword at once. The worker, one thread
per process, waits a moment (``linger_s``) for more ids, embeds up to ``batch_size`` texts in
one call (the group commit of vectors: one model call and one transaction for a burst of
writes) and stores the vectors, which clears the marks. The vector index follows the store's
change counter, so the next recall sees them.

Crash safety: the pending marks are committed with the memories. A process that is killed
before embedding leaves them behind, and the next process that opens the store (``start``)
queues every marked memory first. A write whose text changed while its old text was being
embedded is not given the old vector: the worker checks, inside its write transaction, that
each memory still has the text it embedded (else the newer write has queued it again).

Read-your-writes by meaning: :meth:`wait_for` waits until everything queued before a given
ticket is embedded, so a recall in this process sees the writes that came before it (the
recall engine waits up to a bound and says so in a notice when it had to give up).

Stopping (``close()`` and interpreter exit, :meth:`stop`): the worker embeds what is queued
for up to ``close_wait_s`` (10 s), then finishes the batch it is embedding and starts no other one,
so stopping takes seconds however long the queue. What is left keeps its pending marks; a
warning names how many and what embeds them (the next process that opens the store, or
``memmesh reindex``). The thread must have left the embedder before the interpreter ends:
onnxruntime aborts the process (SIGABRT, "terminate called without an active exception")
when it is torn down while a daemon thread is inside a session.

An embedder that fails leaves the marks in place (the memories are found by keyword until a
later process start or ``memmesh reindex`` embeds them); the error is kept in
:attr:`last_error`.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from memmesh.errors import EmbedderError, MemmeshError
from memmesh.model import Memory
from memmesh.recall.embedder_api import Embedder
from memmesh.store.base import Store, VectorRow
from memmesh.wording import agree, count

log = logging.getLogger(__name__)

TextOf = Callable[[Memory], str]
"""The text a memory is embedded from (the kernel's ``embed_text`` of title and content)."""

CATCH_UP_LIMIT = 10_000_000
"""Pending marks read when a process starts (all of them, in practice: ids only)."""

IDLE_EXIT_S = 5.0
"""An idle worker thread ends after this long (the next write starts a new one), so a
service nobody closes holds no thread and its store can be collected."""

EXIT_DRAIN_S = 10.0
"""By default (``embeddings.close_wait_s``), at ``close()`` and interpreter exit, how long each worker may go on embedding what is
still queued (a CLI ``memmesh add`` or a short script stores its vectors before the process
ends); past it the batch in progress is finished and the rest is left pending."""

BATCH_FINISH_S = 30.0
"""How long :meth:`BackgroundEmbedder.stop` waits for the batch in progress once no new one
may start (one model call of ``batch_size`` texts: about a second for MiniLM on 2 cores)."""

_LIVE: weakref.WeakSet[BackgroundEmbedder] = weakref.WeakSet()


@dataclass
class EmbedStats:
    """What the worker has done since it started (for benchmarks and diagnostics)."""

    embedded: int = 0
    batches: int = 0
    skipped: int = 0
    failures: int = 0


class BackgroundEmbedder:
    """One worker thread that embeds queued memories in micro-batches and stores their vectors."""

    def __init__(
        self,
        store: Store,
        embedder: Callable[[], Embedder | None],
        text_of: TextOf,
        *,
        batch_size: int = 64,
        linger_s: float = 0.002,
        close_wait_s: float = EXIT_DRAIN_S,
    ) -> None:
        self.store = store
        self.embedder = embedder
        """The current embedder (read per batch: a service whose embedder is replaced embeds
        with the new one; None leaves the memories pending, found by keyword)."""
        self.text_of = text_of
        self.batch_size = max(1, batch_size)
        self.linger_s = linger_s
        self.close_wait_s = close_wait_s
        """How long :meth:`stop` (``close()``, interpreter exit) embeds what is queued by default."""
        self.stats = EmbedStats()
        self.last_error: str | None = None
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, str]] = deque()  # (ticket, memory id) this process wrote, in submit order
        self._backlog: deque[tuple[int, str]] = deque()  # what earlier processes left pending: embedded after _queue
        self._own_in_flight = False  # the batch being embedded holds something of _queue
        self._queued: dict[str, int] = {}  # id -> its latest ticket
        self._issued = 0  # tickets handed out
        self._done = 0  # every ticket <= this is finished (embedded, skipped or failed)
        self._in_flight: list[int] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._started = False
        self._catching_up = False
        self._catch_up_ticket = 0
        self._catch_up_last = 0  # the newest ticket when the catch-up queued what it found

    # -- the write side -----------------------------------------------------------------

    def start(self) -> None:
        """Start the worker; it first queues what earlier processes left pending (crash recovery)."""
        with self._cond:
            if self._started:
                return
            self._started = True
            self._catching_up = True
            self._issued += 1  # ticket of the catch-up: recalls wait for it like for a write
            self._catch_up_ticket = self._issued
            self._spawn()
        _LIVE.add(self)

    def submit(self, ids: Iterable[str]) -> int:
        """Queue committed memories for embedding; returns the ticket to :meth:`wait_for`."""
        return self._enqueue(ids, self._queue)

    def _enqueue(self, ids: Iterable[str], lane: deque[tuple[int, str]]) -> int:
        with self._cond:
            for memory_id in ids:
                self._issued += 1
                lane.append((self._issued, memory_id))
                self._queued[memory_id] = self._issued
            if self._thread is None and lane:
                self._spawn()
            self._cond.notify_all()
            return self._issued

    def _spawn(self) -> None:
        """Start a worker thread (caller holds the lock)."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="memmesh-embedder", daemon=True)
        self._thread.start()

    def ticket(self) -> int:
        """The newest ticket handed out: waiting for it waits for everything queued so far."""
        with self._cond:
            return self._issued

    def pending(self) -> int:
        """How many queued memories are not embedded yet (in this process)."""
        with self._cond:
            return len(self._queue) + len(self._backlog) + len(self._in_flight)

    def queued_ids(self) -> set[str]:
        """Ids queued or being embedded now."""
        with self._cond:
            return set(self._queued)

    def wait_for(self, ticket: int, timeout: float | None = None) -> bool:
        """Wait until every memory queued up to ``ticket`` is done; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._done < ticket and self._thread is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._done >= ticket

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is embedded; False on timeout."""
        return self.wait_for(self.ticket(), timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Embed what this process wrote for up to ``timeout`` seconds (None: ``close_wait_s``), then finish the batch in
        progress (bounded by ``BATCH_FINISH_S``), start no other one and end the thread. What is
        left stays marked pending in the store: the next process that opens it embeds it, and
        so does ``memmesh reindex``; a warning says how many. True when nothing was left.

        The backlog earlier processes left is not waited for: a short command (``memmesh
        get``) after a large import would otherwise spend its whole close wait embedding
        other processes' memories, every time, until none is left."""
        drained = self._drain_own(self.close_wait_s if timeout is None else timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(BATCH_FINISH_S)
        _LIVE.discard(self)  # stopped: interpreter exit has nothing more to do for it
        with self._cond:
            left = len(self._queued)  # queued or (when the join gave up) still being embedded
            earlier = len({memory_id for _, memory_id in self._backlog} - {memory_id for _, memory_id in self._queue})
        if left:
            whose, who_embeds = (
                (" written by earlier processes", "a long-running process (memmesh serve) embeds them")
                if left == earlier
                else ("", "the next process that opens this store embeds them in the background")
            )
            log.warning(
                "memmesh: %s%s %s still waiting for %s vectors (found by keyword until then); %s, or run `memmesh reindex`",
                count(left, "memory"),
                whose,
                agree(left, "is", "are"),
                agree(left, "its", "their"),
                who_embeds,
            )
        return drained and not left

    def _drain_own(self, timeout: float) -> bool:
        """Wait until nothing this process wrote is queued or being embedded; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._queue or self._own_in_flight) and self._thread is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not (self._queue or self._own_in_flight)

    # -- the worker -----------------------------------------------------------------------

    def _run(self) -> None:
        if self._catching_up:
            self._catch_up()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._embed_batch(batch)
            except Exception as exc:  # the worker must outlive any one failure
                self.stats.failures += 1
                self.last_error = _describe(exc)
            finally:
                self._finish(batch)

    def _catch_up(self) -> None:
        """Queue every memory an earlier process marked pending and did not embed."""
        try:
            with self.store.write() as tx:
                left = tx.pending_vector_ids(CATCH_UP_LIMIT)
            last = self._enqueue(left, self._backlog)
            with self._cond:
                self._catch_up_last = last
        except Exception as exc:  # a closed or broken store: nothing to recover now
            self.last_error = _describe(exc)
        finally:
            with self._cond:
                self._catching_up = False
                self._advance()
                self._cond.notify_all()

    def _next_batch(self) -> list[tuple[int, str]] | None:
        with self._cond:
            idle_until = time.monotonic() + IDLE_EXIT_S
            while self._stopping or not (self._queue or self._backlog):
                left = idle_until - time.monotonic()
                if self._stopping or left <= 0:  # stopping: no new batch, even with a queue
                    self._thread = None  # the next submit starts a new thread
                    self._cond.notify_all()
                    return None
                self._cond.wait(left)
            if len(self._queue) + len(self._backlog) < self.batch_size and self.linger_s > 0:
                self._cond.wait(self.linger_s)  # let a burst of writes join this batch
                if self._stopping or not (self._queue or self._backlog):
                    self._thread = None
                    self._cond.notify_all()
                    return None
            batch: list[tuple[int, str]] = []
            while self._queue and len(batch) < self.batch_size:
                batch.append(self._queue.popleft())
            self._own_in_flight = bool(batch)
            while self._backlog and len(batch) < self.batch_size:  # this process's own writes first
                batch.append(self._backlog.popleft())
            self._in_flight = [ticket for ticket, _ in batch]
            return batch

    def _finish(self, batch: list[tuple[int, str]]) -> None:
        with self._cond:
            for ticket, memory_id in batch:
                if self._queued.get(memory_id) == ticket:
                    del self._queued[memory_id]
            self._in_flight = []
            self._own_in_flight = False
            self._advance()
            self._cond.notify_all()

    def _advance(self) -> None:
        """Move ``_done`` to just below the oldest ticket still queued or in flight (and below
        the catch-up's ticket until what the catch-up queued is embedded: a recall or
        ``await_vectors`` that takes its ticket before the catch-up has queued waits for
        the recovered memories, not only for their queueing)."""
        open_tickets = [lane[0][0] for lane in (self._queue, self._backlog) if lane]
        oldest = min([*open_tickets, *self._in_flight], default=None)
        done = self._issued if oldest is None else oldest - 1
        if self._catching_up or done < self._catch_up_last:
            done = min(done, self._catch_up_ticket - 1)
        self._done = max(self._done, done)

    def _embed_batch(self, batch: list[tuple[int, str]]) -> None:
        ids = list(dict.fromkeys(memory_id for _, memory_id in batch))
        memories = {m.id: m for m in self.store.get_many(ids)}
        gone = [memory_id for memory_id in ids if memory_id not in memories]
        todo = [memories[memory_id] for memory_id in ids if memory_id in memories]
        vectors = None
        embedder = self.embedder()
        if todo and embedder is not None:
            try:
                vectors = embedder.embed([self.text_of(m) for m in todo])
            except EmbedderError as exc:
                self.stats.failures += 1
                self.last_error = exc.message
                return  # the marks stay: a later start or `memmesh reindex` embeds them
        with self.store.write() as tx:
            if gone:
                tx.clear_vectors_pending(gone)
            if vectors is None or embedder is None:
                return
            rows = []
            for memory, vector in zip(todo, vectors, strict=True):
                current = tx.get(memory.id)
                if current is None or current.content_hash != memory.content_hash or current.title != memory.title:
                    self.stats.skipped += 1  # changed meanwhile: the newer write queued it again
                    continue
                rows.append(VectorRow(memory.id, embedder.model_id, vector))
            if rows:
                tx.put_vectors(rows, tx.next_seq())
        self.stats.embedded += len(rows)
        self.stats.batches += 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemmeshError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


@atexit.register
def _drain_at_exit() -> None:
    """Embed what this process queued before it ends (bounded: ``EXIT_DRAIN_S`` and the batch
    in progress), and stop the threads while the interpreter is still whole."""
    for worker in list(_LIVE):
        worker.stop()
