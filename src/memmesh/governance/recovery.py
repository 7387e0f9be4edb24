"""Approved actions a crash left unapplied: found, and applied exactly once.

Approving is three steps: the decision (``pending`` → ``approved``, one transaction), the
write (the service's own write path, its own transactions), and the outcome (``applied`` or
``failed``). The write cannot share the decision's transaction — it runs through the very
service method a direct call would use, with its read-backs and after-commit work — so a
process that dies between the steps leaves the action ``approved``.

Whoever applies an approved action holds its **apply lease** (a row ``pending:<id>`` in the
neutral ``leases`` table), taken in the decision's transaction and given back in the
outcome's. A live applier's lease stops anyone else; a dead one's expires after
:data:`APPLY_LEASE_S`. The next ``approve`` of that action, or the next garbage collection,
takes the expired lease (one atomic upsert: one taker) and applies the action again; so does
``memmesh serve`` as it starts (:class:`StartupRedrive`: once at start, and once more when the
live leases it found have run out, so a crash and a quick restart do not wait for an hourly
gc or a second approve). The
replay is idempotent for what the crash may already have written: a queued write carries the
ids chosen when it was queued, a delete of a memory already gone is its own outcome, an
update, promote or link re-applied leaves the same state.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from memmesh.governance.store import _run, _tx_conn
from memmesh.store.base import WriteTx

APPLY_LEASE_S = 60.0
"""How long an approved action's applier may take before a crash is presumed (service clock)."""

FAULT_ENV = "MEMMESH_TEST_FAULT"
"""Names a point where the process kills itself (SIGKILL): how the crash tests make the
window between the decision and the write observable. Unset outside those tests."""

_HOLDER = f"{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lease_name(pending_id: str) -> str:
    return f"pending:{pending_id}"


def holder() -> str:
    """This process's name as an apply-lease holder (a pid alone repeats across restarts)."""
    return _HOLDER


def take(tx: WriteTx, pending_id: str, now: float, secs: float = APPLY_LEASE_S) -> bool:
    """Take (or renew) the apply lease of ``pending_id`` inside ``tx``; False when another
    holder's lease is still live. One atomic upsert on both backends: one taker wins."""
    conn = _tx_conn(tx)
    _run(
        conn,
        "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
        "WHERE leases.expires_at <= ? OR leases.holder = excluded.holder",
        (lease_name(pending_id), _HOLDER, now + secs, now),
    )
    row = _run(conn, "SELECT holder FROM leases WHERE name = ?", (lease_name(pending_id),)).fetchone()
    return row is not None and str(row[0]) == _HOLDER


def release(tx: WriteTx, pending_id: str) -> None:
    """Drop the apply lease of ``pending_id`` (with the outcome, in its transaction)."""
    _run(_tx_conn(tx), "DELETE FROM leases WHERE name = ?", (lease_name(pending_id),))


def fault(point: str) -> None:
    """Exit now, as a crash would, when the crash tests ask for ``point``."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no cleanup, no flush, as a crash


def live_until(conn: Any, pending_ids: Sequence[str]) -> float | None:
    """The latest expiry among the apply leases of ``pending_ids`` (None when they hold none)."""
    if not pending_ids:
        return None
    marks = ", ".join("?" for _ in pending_ids)
    row = _run(conn, f"SELECT max(expires_at) FROM leases WHERE name IN ({marks})", [lease_name(p) for p in pending_ids]).fetchone()
    return None if row is None or row[0] is None else float(row[0])


class StartupRedrive:
    """``memmesh serve``'s start-up re-drive of approved actions a crash left unapplied.

    ``redrive`` applies every approved action whose apply lease ran out (taking that lease:
    one taker across processes) and answers how long until the still-live leases of the
    approved actions left run out (None: none left). It runs once at start in a daemon
    thread and, when a dead applier's lease was still live, once more after it ran out: a
    process restarted right after a crash otherwise leaves the action to the next approve or
    gc (hourly by default)."""

    def __init__(self, redrive: Callable[[], float | None], *, log: logging.Logger) -> None:
        self.redrive = redrive
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        """Passes run so far (for tests and logs)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="memmesh-redrive", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            wait = self._pass()
            if wait is not None and not self._stop.wait(min(wait, APPLY_LEASE_S) + 0.2):
                self._pass()
        except Exception:  # a start-up chore: logged, never fatal (approve and gc re-drive too)
            self.log.exception("re-driving approved actions at start failed")

    def _pass(self) -> float | None:
        wait = self.redrive()
        self.passes += 1
        return wait
