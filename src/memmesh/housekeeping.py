"""Garbage collection on a schedule in ``serve`` (``[gc] interval_secs``; 0 = off).

Each turn runs the core :meth:`Service.gc` (TTL expiry, namespace standards' ``retention_days``,
tombstones past their retention) as the local store admin. Several ``serve`` processes on one
store take turns through the ``gc`` lease (:class:`memmesh.schedule.Lease`, a row of the
``leases`` table, schema 22): the first process whose turn comes takes the lease for 90 % of
the interval and runs; the others find it held and skip that turn, so the store is collected
about once per interval whatever the number of servers, never twice at once. The loop is a
:class:`memmesh.schedule.Periodic`, like the curator's.

:class:`ServingMark` is each serve process's row in the same table while it runs, so that
``memmesh cluster resync`` can refuse to run beside a server of the store.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from memmesh.errors import MemmeshError
from memmesh.model import LOCAL_PRINCIPAL, GcReport
from memmesh.schedule import SERVING, SERVING_RENEW_S, SERVING_TTL_S, Lease, Periodic, drop_run_out
from memmesh.service import Service
from memmesh.store.base import Store

log = logging.getLogger("memmesh.gc")

LEASE = "gc"
"""The lease row's name in ``leases``."""
LEASE_SHARE = 0.9
"""Part of the interval a turn holds the lease: short of a whole interval, so the next turn
of whichever process comes first is never refused by a lease about to run out."""


class GcSchedule:
    """The scheduled gc of one serve process."""

    def __init__(self, service: Service, interval_secs: float) -> None:
        self.service = service
        self.interval = float(interval_secs)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = Lease(service.store, LEASE)
        self.schedule = Periodic("memmesh-gc", self.interval, self.run_scheduled, log=log)
        self.runs = 0
        """Turns this process ran (not skipped)."""

    def start(self) -> None:
        """Run every ``interval`` seconds in a background thread (0: never)."""
        self.schedule.start()

    def stop(self) -> None:
        self.schedule.stop()

    def _take_turn(self) -> float | None:
        """Take the lease for this turn: the time it was taken, or None when this turn is
        another process's. The lease is not given back: it runs out, which spaces the turns."""
        now = time.time()
        turn = f"{self.holder}:{uuid.uuid4().hex[:8]}"  # this turn's own name: an old lease of ours is not this turn
        return now if self.lease.acquire(turn, now, self.interval * LEASE_SHARE) is None else None

    def run_scheduled(self) -> GcReport | None:
        """One turn: the gc report, or None when another process has this turn or it failed
        (logged; an unexpected error is logged by the loop; the next turn tries again)."""
        try:
            taken = self._take_turn()
            if taken is None:
                log.debug("gc: another serve process has this turn")
                return None
            report = self.service.gc(principal=LOCAL_PRINCIPAL)
        except MemmeshError as exc:
            log.warning("gc: the scheduled run failed: %s", exc.message)
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


serving_log = logging.getLogger("memmesh.serving")


class ServingMark:
    """This ``serve`` process's mark in the ``leases`` table while it runs: taken at start
    (before the server answers), renewed in the background, removed at a clean stop."""

    def __init__(self, store: Store) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.lease = Lease(store, f"{SERVING}{self.holder}:{uuid.uuid4().hex[:8]}")
        self.schedule = Periodic("memmesh-serving-mark", SERVING_RENEW_S, self.renew, log=serving_log)

    def renew(self) -> None:
        self.lease.acquire(self.holder, time.time(), SERVING_TTL_S)

    def start(self) -> None:
        """Take the mark now, and keep it while the process serves. A store that cannot take
        the write (a full disk) does not stop the server: the mark is taken at a later turn."""
        try:
            drop_run_out(self.lease.store, SERVING, time.time())
            self.renew()
        except MemmeshError as exc:
            serving_log.warning("serve: could not mark the store as served (retried every %.0f s): %s", SERVING_RENEW_S, exc.message)
        self.schedule.start()

    def stop(self) -> None:
        self.schedule.stop()
        try:
            self.lease.release(self.holder)
        except MemmeshError as exc:  # the mark runs out on its own
            serving_log.warning("serve: could not remove the store's serving mark (it runs out in %.0f s): %s", SERVING_TTL_S, exc.message)
