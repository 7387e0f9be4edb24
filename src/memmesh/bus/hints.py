"""Where a task queue's live rows begin, as this process last saw them (issue 24).

A queue keeps its done tasks, and every task leaves index entries behind as it moves from
ready to leased to done. The database drops those entries only when it vacuums (about once
a minute at best), so a claim that looks for "the oldest ready task" from the start of the
ready index, or for "a lease that ran out" from the start of the lease index, walks every
entry the tasks finished since then left behind: the cost of a claim would grow with the
queue's throughput. These hints let the statements start where the live rows are:

- *ready floor*: the highest seq this process claimed. Tasks are numbered in the order
  their sends commit, so no task below it is ready unless one was given back (a failed
  attempt, a lease that ran out) or a claim rolled back. This process drops the floor when
  it gives a task back; another process's give-back is seen when the floor lapses.
- *lease floor*: a time up to which a claim found no lease in flight had run out. A new
  lease runs out later than the moment it is granted, so only leases running out after the
  floor need looking at.
- *earliest expiry*: when the first lease in flight runs out, as read by the last lapsed-lease
  check (lowered by every lease this process grants). Until then no lease can have run out,
  so an SQLite claim skips the lapsed-lease check: a lease another process granted meanwhile
  with a shorter lease is seen when the hint lapses (HINT_TTL_S), so it is rescued at most
  that much later.
- *leased seq*: the seq of the task an attempt token this process handed out holds, so its
  ``complete`` reaches the row by primary key instead of looking through the leases.

A floor lapses HINT_TTL_S after it was first set: then one statement looks from the start
again, so whatever another process did is seen within that time. A hint only narrows where
a statement looks; every rule (token, lease, fencing) is still checked by the statement.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

HINT_TTL_S = 1.0
"""How long a floor is trusted before a statement looks from the start again."""
MAX_TOKENS = 4096
"""Attempt tokens remembered per process (the oldest are forgotten: their complete looks them up)."""
NO_LEASE_FLOOR = float("-inf")


class QueueHints:
    """Per-process hints for the queue statements (see the module doc). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[str, tuple[int, float]] = {}
        self._leases: dict[str, tuple[float, float]] = {}
        self._seqs: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._expiry: dict[str, tuple[float, float]] = {}

    def ready_floor(self, conversation_id: str) -> int:
        """The lowest seq a ready task can have (0: look from the start)."""
        with self._lock:
            got = self._ready.get(conversation_id)
            if got is None or time.monotonic() - got[1] > HINT_TTL_S:
                self._ready.pop(conversation_id, None)
                return 0
            return got[0]

    def claimed(self, conversation_id: str, seq: int, floor: int) -> None:
        """A claim that looked from ``floor`` leased the task ``seq`` (the lowest ready one
        it could lock); a floor is started only by a claim that looked from the start."""
        with self._lock:
            got = self._ready.get(conversation_id)
            if got is not None:
                self._ready[conversation_id] = (max(got[0], seq), got[1])
            elif floor == 0:
                self._ready[conversation_id] = (seq, time.monotonic())

    def given_back(self, conversation_id: str) -> None:
        """A task of this queue is ready again below the floor: look from the start."""
        with self._lock:
            self._ready.pop(conversation_id, None)

    def lease_floor(self, conversation_id: str) -> float:
        """Leases running out at or before this time were all given back (-inf: look at all)."""
        with self._lock:
            got = self._leases.get(conversation_id)
            if got is None or time.monotonic() - got[1] > HINT_TTL_S:
                self._leases.pop(conversation_id, None)
                return NO_LEASE_FLOOR
            return got[0]

    def leases_checked(self, conversation_id: str, now: float) -> None:
        """A claim found no lease in flight that ran out at or before ``now``."""
        with self._lock:
            got = self._leases.get(conversation_id)
            self._leases[conversation_id] = (max(got[0], now), got[1]) if got is not None else (now, time.monotonic())

    def leases_due(self, conversation_id: str, now: float) -> bool:
        """Whether a lease in flight may have run out by ``now`` (True when the earliest
        expiry is unknown or its hint lapsed): only then must a claim look for lapsed leases."""
        with self._lock:
            got = self._expiry.get(conversation_id)
            if got is None or time.monotonic() - got[1] > HINT_TTL_S:
                self._expiry.pop(conversation_id, None)
                return True
            return got[0] <= now

    def leases_known(self, conversation_id: str, earliest: float | None) -> None:
        """A lapsed-lease check gave back every lease run out; the earliest one still in
        flight runs out at ``earliest`` (None: no lease in flight)."""
        with self._lock:
            self._expiry[conversation_id] = (float("inf") if earliest is None else earliest, time.monotonic())

    def lease_granted(self, conversation_id: str, expires: float) -> None:
        """This process leased a task until ``expires``: the earliest expiry is at most that."""
        with self._lock:
            got = self._expiry.get(conversation_id)
            if got is not None and expires < got[0]:
                self._expiry[conversation_id] = (expires, got[1])

    def leased(self, attempt_token: str, conversation_id: str, seq: int) -> None:
        """This process handed out ``attempt_token`` for task ``seq``."""
        with self._lock:
            self._seqs[attempt_token] = (conversation_id, seq)
            while len(self._seqs) > MAX_TOKENS:
                self._seqs.popitem(last=False)

    def seq_of(self, attempt_token: str, conversation_id: str) -> int | None:
        """The task's seq, when this process handed the token out for this queue (forgotten
        once asked: the token is used up by its complete or fail)."""
        with self._lock:
            got = self._seqs.pop(attempt_token, None) if isinstance(attempt_token, str) else None
        return got[1] if got is not None and got[0] == conversation_id else None
