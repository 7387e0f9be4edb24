"""Background extraction jobs that outlive their process are marked failed, not left running.

A job row says ``queued`` or ``running`` while a worker thread of some ``serve`` process
owns it. If that process dies (a crash, ``kill -9``, a restart that does not drain), nothing
would ever move the row on, and a client polling the job would wait forever. So:

- the owning process touches ``updated_at`` of every job it holds every ``stale_s / 4``
  seconds (:class:`Heartbeat`, one daemon thread per process, only while it holds jobs);
- a job still ``queued``/``running`` whose ``updated_at`` is older than ``stale_s`` has no
  owner any more: :func:`reap` marks it ``failed`` with a reason that says what happened and
  what to do. Polling a job reaps it first, and the service sweeps the table once when it
  starts using extraction, so any process of ``serve`` answers the truth.

The turns of such a job are stored (they are committed before the job row exists); only the
facts are missing, so the reason tells the caller to send the messages again. No schema
change is needed: the heartbeat reuses ``updated_at``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from memmesh.bus.sql import BusSql

log = logging.getLogger("memmesh.extraction")


def stale_reason(stale_s: float) -> str:
    """The error a reaped job reports (what happened, and what to do about it)."""
    return (
        f"the process running this job stopped (a crash or restart) before it finished: no heartbeat for over {stale_s:g}s. "
        "The turns are stored; their facts were not extracted: send the messages again to extract them"
    )


def reap(sql: BusSql, stale_s: float, *, job_id: str | None = None, now: float | None = None) -> int:
    """Mark the ownerless live jobs (one job with ``job_id``) failed; how many were."""
    cutoff = (time.time() if now is None else now) - stale_s
    where = "status IN ('queued', 'running') AND updated_at < ?"
    params: list[object] = [cutoff]
    if job_id is not None:
        where += " AND id = ?"
        params.append(job_id)
    with sql.read() as rows:
        if rows.one(f"SELECT 1 FROM extraction_jobs WHERE {where} LIMIT 1", params) is None:
            return 0  # the common case: a read, no write transaction
    with sql.write() as rows:
        changed = rows.run(
            f"UPDATE extraction_jobs SET status = 'failed', error = ?, updated_at = ? WHERE {where}",
            [stale_reason(stale_s), time.time(), *params],
        )
    if changed:
        log.warning("marked %d extraction job(s) failed: their process stopped before they finished", changed)
    return changed


class Heartbeat:
    """Touches ``updated_at`` of the jobs this process holds, so no other process reaps them."""

    def __init__(self, sql: BusSql, interval_s: float, *, clock: Callable[[], float] = time.time) -> None:
        self.sql = sql
        self.interval_s = max(interval_s, 0.05)
        self._clock = clock
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def hold(self, job_id: str) -> None:
        with self._lock:
            self._held.add(job_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="memmesh-extract-heartbeat", daemon=True)
                self._thread.start()

    def release(self, job_id: str) -> None:
        with self._lock:
            self._held.discard(job_id)
            self._wake.notify_all()

    def _beat(self) -> None:
        while True:
            with self._lock:
                self._wake.wait(self.interval_s)
                held = sorted(self._held)
                if not held:
                    self._thread = None
                    return
            try:
                marks = ", ".join("?" for _ in held)
                with self.sql.write() as rows:
                    rows.run(
                        f"UPDATE extraction_jobs SET updated_at = ? WHERE id IN ({marks}) AND status IN ('queued', 'running')",
                        [self._clock(), *held],
                    )
            except Exception:  # a busy or closed store: the next beat tries again
                log.warning("extraction job heartbeat failed", exc_info=True)


__all__ = ["Heartbeat", "reap", "stale_reason"]
