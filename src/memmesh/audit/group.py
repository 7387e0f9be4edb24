"""Group commit: concurrent callers of one process hand their items to one leader, who writes
them in one transaction (issue 24: PostgreSQL audit appends, and the bus's sends, claims and
completes, see :meth:`memmesh.bus.sql.BusSql.grouped`).

On PostgreSQL one transaction per audit append costs two round trips, a commit record, a
share of a WAL flush and about half a millisecond of client and server CPU: with both on two
cores that caps appends near 2,000/s whatever the disk does. Here the first caller to arrive
while no batch is being written becomes the *leader*: it takes every item queued so far (up to
``limit``), writes them with ``write`` in one transaction, and answers each caller. Callers that
arrive meanwhile queue up and wait; when the leader's batch has *committed* (its commit record
written, the disk flush still to come) it hands the lead to the first of them, who writes the
next batch while the previous one waits for its flush. So batches form while the previous batch
commits: a lone caller never waits for company (no timer, no ``commit_delay``), and under load
each transaction carries as many items as arrived during one commit.

A caller returns only when its batch's ``write`` returned, i.e. after whatever that waits for
(the audit: the WAL flush covering its entry), with its own result, or raises the batch's
error: a batch is one transaction, so a failed batch fails every item in it and writes none.

Only for callers holding nothing the leader may wait for (no open transaction of their own on
the thread): a follower waits for the leader, and the leader's transaction must never wait for
a follower's locks.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

LIMIT = 256
"""The most items one transaction carries: bounds its statement's size and the time the chain's
lock is held; a larger queue is written by the next leader, the next moment."""


class _Signal:
    """A one-shot wake-up for one waiting thread: a lock taken when made, released by
    :meth:`set`, taken again by :meth:`wait`. One futex wake per hand-over, where a
    ``threading.Event`` (a condition variable over a second lock, and a fresh waiter lock
    per wait) costs several lock operations and allocations on every call of every group;
    the bus's group commit signals two or three of them per task (issue 24)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Wake the waiter (or let its coming :meth:`wait` return at once); again: no-op."""
        with contextlib.suppress(RuntimeError):  # set already, not waited for yet
            self._lock.release()

    def wait(self) -> None:
        """Return once :meth:`set` was called (only one thread waits, once)."""
        self._lock.acquire()


class _Slot(Generic[Item, Result]):
    """One caller's place in the queue (the leader fills in its answer and sets ``done``)."""

    __slots__ = ("done", "error", "item", "lead", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = _Signal()
        self.lead = False  # woken to lead the next batch (not answered yet)
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Batches concurrent :meth:`submit` calls into calls of ``write``.

    ``write(items, committed)`` writes ``items`` in one transaction and returns one result per
    item, in order; it calls ``committed()`` as soon as the transaction has committed (before a
    flush it then waits for), so the next batch can start. It may not call it (e.g. it failed
    first): the group then hands the lead on when ``write`` returns or raises.
    """

    def __init__(self, write: Callable[[Sequence[Item], Callable[[], None]], Sequence[Result]], limit: int = LIMIT) -> None:
        if limit < 1:
            raise ValueError("a group commit batch holds at least one item")
        self._write = write
        self._limit = limit
        self._lock = threading.Lock()
        self._queue: list[_Slot[Item, Result]] = []
        self._busy = False  # a leader has taken a batch and not yet handed the lead on
        self.batches = 0
        """Transactions written so far (a count for tests and benchmarks)."""

    def submit(self, item: Item) -> Result:
        """Write ``item`` with whatever else is queued; its result once its batch is written."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            try:
                slot.done.wait()
            except BaseException:  # interrupted (KeyboardInterrupt in the main thread): leave no hole in the queue
                self._withdraw(slot)
                raise
            if not slot.lead:
                if slot.error is not None:
                    raise _own_copy(slot.error)
                return slot.result  # type: ignore[return-value]  # set with done: a Result
        return self._lead(slot)

    def _withdraw(self, slot: _Slot[Item, Result]) -> None:
        """Take back a waiting caller's item that no leader has taken yet; if it was just made
        the leader, pass the lead on (else every later caller would wait for it forever). An
        item already taken is written with its group (as an interrupted write may commit)."""
        following = None
        with self._lock:
            if slot not in self._queue:
                return
            self._queue.remove(slot)
            if slot.lead:
                following = self._next_leader()
        if following is not None:
            following.done.set()

    def _next_leader(self) -> _Slot[Item, Result] | None:
        """Make the head of the queue the leader (call with ``_lock`` held), or mark the group
        idle when nobody waits; the caller wakes the slot returned once the lock is released."""
        following = self._queue[0] if self._queue else None
        if following is None:
            self._busy = False
        else:
            following.lead = True
        return following

    def _lead(self, me: _Slot[Item, Result]) -> Result:
        with self._lock:
            batch = self._queue[: self._limit]
            del self._queue[: self._limit]
            self.batches += 1
        assert batch[0] is me, "the leader heads the queue"  # only a leader takes from it
        handed = False

        def hand_on() -> None:
            nonlocal handed
            if handed:
                return
            handed = True
            with self._lock:
                following = self._next_leader()
            if following is not None:
                following.done.set()

        try:
            results = self._write([slot.item for slot in batch], hand_on)
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items was answered with {len(results)} results")
        except BaseException as exc:
            hand_on()
            for slot in batch[1:]:
                slot.error = exc
                slot.done.set()
            raise
        hand_on()
        for slot, result in zip(batch[1:], results[1:], strict=True):
            slot.result = result
            slot.done.set()
        return results[0]


def _own_copy(error: BaseException) -> BaseException:
    """The batch's error for one more caller: a copy, so that callers raising it in several
    threads at once do not share (and grow) one traceback."""
    try:
        made = copy.copy(error)
    except Exception:
        return error
    made.__traceback__ = None
    return made
