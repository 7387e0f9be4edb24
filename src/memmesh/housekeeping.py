"""Garbage collection on a schedule in ``serve`` (``[gc] interval_secs``; 0 = off).

Each turn runs the core :meth:`Service.gc` (TTL expiry, namespace standards' ``retention_days``,
tombstones past their retention) as the local store admin. Several ``serve`` processes on one
store take turns through a lease row: the first process whose turn comes takes the lease for
90 % of the interval and runs; the others find it held and skip that turn, so the store is
collected about once per interval whatever the number of servers, never twice at once. The
lease is a row named ``gc`` in the curator's lease table (``curator_lease``, schema 12), which
holds one row per named schedule.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from memmesh.errors import MemmeshError
from memmesh.model import LOCAL_PRINCIPAL, GcReport
from memmesh.service import Service

log = logging.getLogger("memmesh.gc")

LEASE = "gc"
"""The lease row's name in ``curator_lease``."""
LEASE_SHARE = 0.9
"""Part of the interval a turn holds the lease: short of a whole interval, so the next turn
of whichever process comes first is never refused by a lease about to run out."""


class GcSchedule:
    """The scheduled gc of one serve process."""

    def __init__(self, service: Service, interval_secs: float) -> None:
        self.service = service
        self.interval = float(interval_secs)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        """Turns this process ran (not skipped)."""

    def start(self) -> None:
        """Run every ``interval`` seconds in a background thread (0: never)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="memmesh-gc", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_scheduled()

    def _take_turn(self) -> float | None:
        """Take the lease for this turn (one atomic upsert on both backends): a free or expired
        lease becomes ours; a live one of another process stays theirs. The time it was taken,
        or None when this turn is another process's."""
        now = time.time()
        turn = f"{self.holder}:{uuid.uuid4().hex[:8]}"  # this turn's own name: an old lease of ours is not this turn
        q = self.service.store.dialect.q  # type: ignore[attr-defined]  # the shared SQL layer's dialect
        with self.service.store.write() as tx:
            tx.conn.execute(
                q(
                    "INSERT INTO curator_lease (name, holder, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
                    "WHERE curator_lease.expires_at <= ?"
                ),
                (LEASE, turn, now + self.interval * LEASE_SHARE, now),
            )
            row = tx.conn.execute(q("SELECT holder, expires_at FROM curator_lease WHERE name = ?"), (LEASE,)).fetchone()
        return now if row is not None and row[0] == turn else None

    def run_scheduled(self) -> GcReport | None:
        """One turn: the gc report, or None when another process has this turn (or it failed:
        a background thread must outlive one bad turn; the next one tries again)."""
        try:
            taken = self._take_turn()
            if taken is None:
                log.debug("gc: another serve process has this turn")
                return None
            report = self.service.gc(principal=LOCAL_PRINCIPAL)
        except MemmeshError as exc:
            log.warning("gc: the scheduled run failed: %s", exc.message)
            return None
        except Exception:
            log.exception("gc: the scheduled run failed")
            return None
        self.runs += 1
        log.info(
            "gc: scheduled run by %s (turn taken at %.3f): %d archived, %d tombstones purged, %d forgotten by retention",
            self.holder,
            taken,
            report.archived,
            report.tombstones_purged,
            report.retention_forgotten,
        )
        return report
