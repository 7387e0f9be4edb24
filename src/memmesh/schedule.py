"""Periodic background work in ``serve`` and the lease that makes it take turns.

Several things in ``memmesh serve`` run every so many seconds in a thread of their own: the
curator, gc, webhook deliveries, the web inspector's samples. :class:`Periodic` is that
loop, once: a daemon thread that waits (or runs first), runs one turn, and outlives a turn
that fails (logged; the next turn tries again) until :meth:`Periodic.stop`.

Each ``serve`` process also keeps a row there while it runs (its serving mark,
:class:`memmesh.housekeeping.ServingMark`, renewed as it goes), so that a command that must
not run beside a server (``memmesh cluster resync``) can tell one runs on the store, on this
host or another.

The curator and gc must not run twice at once when several ``serve`` processes share one
database. :class:`Lease` is a named row in the ``leases`` table (schema 22), taken with one
atomic upsert on both backends: a free or expired lease becomes the caller's, a live one of
another holder stays theirs. The curator holds its lease for a run (renewing it as it goes)
and gives it back; gc takes its lease for most of an interval and lets it run out, so the
store is collected once per interval whatever the number of servers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from memmesh.errors import MemmeshError
from memmesh.store.base import Store


class Periodic:
    """``turn`` every ``interval`` seconds in a daemon thread named ``name``.

    ``first_wait``: wait one interval before the first turn (scheduled housekeeping) or run
    at once (a worker that drains a queue). ``join_secs``: how long :meth:`stop` waits for a
    turn in flight. An exception out of a turn is logged on ``log`` and the loop goes on."""

    def __init__(
        self,
        name: str,
        interval: float,
        turn: Callable[[], object],
        *,
        log: logging.Logger,
        first_wait: bool = True,
        join_secs: float = 30.0,
    ) -> None:
        self.name = name
        self.interval = float(interval)
        self.turn = turn
        self.log = log
        self.first_wait = first_wait
        self.join_secs = join_secs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (a long turn may check it to end early)."""
        return self._stop.is_set()

    def start(self) -> None:
        """Start the thread (an interval of 0 or less means never; a second start does nothing)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the turn in flight (waiting at most ``join_secs`` for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_secs)
            self._thread = None

    def _loop(self) -> None:
        if self.first_wait and self._stop.wait(self.interval):
            return
        while not self._stop.is_set():
            try:
                self.turn()
            except MemmeshError as exc:  # the store down, a full disk: the message says it all
                self.log.warning("%s: a turn failed: %s; trying again in %.1f s", self.name, exc.message, self.interval)
            except Exception:  # a background thread must outlive one bad turn; the next one tries again
                self.log.exception("%s: a turn failed; trying again in %.1f s", self.name, self.interval)
            if self._stop.wait(self.interval):
                return


class Lease:
    """The lease row ``name`` in the store's ``leases`` table."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self._q = store.dialect.q  # type: ignore[attr-defined]  # the shared SQL layer's dialect

    def acquire(self, holder: str, now: float, secs: float) -> str | None:
        """Take the lease for ``holder`` until ``now + secs`` (or renew it: it is ours already).
        None when ``holder`` has it now, else who holds it.

        One atomic upsert on both backends: a lease that is free, expired or already
        ``holder``'s becomes ``holder``'s; a live lease of another holder stays as it is."""
        with self.store.write() as tx:
            tx.conn.execute(
                self._q(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
                    "WHERE leases.expires_at <= ? OR leases.holder = excluded.holder"
                ),
                (self.name, holder, now + secs, now),
            )
            row = tx.conn.execute(self._q("SELECT holder FROM leases WHERE name = ?"), (self.name,)).fetchone()
        current = str(row[0]) if row else None
        return None if current == holder else current

    def release(self, holder: str) -> None:
        """Give the lease back, if ``holder`` still has it."""
        with self.store.write() as tx:
            tx.conn.execute(self._q("DELETE FROM leases WHERE name = ? AND holder = ?"), (self.name, holder))


SERVING = "serving:"
"""Prefix of the lease rows of the serving marks (one per ``serve`` process)."""
SERVING_RENEW_S = 10.0
SERVING_TTL_S = 30.0
"""A serve process renews its mark every SERVING_RENEW_S for SERVING_TTL_S: a server killed
without its stop (kill -9, a lost machine) stops counting as running that long after."""


def drop_run_out(store: Store, prefix: str, now: float) -> None:
    """Delete the leases named ``prefix…`` that ran out: the serving marks of servers killed
    without a clean stop, which would otherwise pile up, one per crash."""
    q = store.dialect.q  # type: ignore[attr-defined]  # the shared SQL layer's dialect
    with store.write() as tx:
        tx.conn.execute(q("DELETE FROM leases WHERE name LIKE ? AND expires_at <= ?"), (prefix + "%", now))


def live_servers(store: Store, now: float) -> list[tuple[str, float]]:
    """The ``serve`` processes whose mark is live on ``store``: (holder ``host:pid``,
    seconds until the mark runs out)."""
    return [(holder, expires - now) for name, holder, expires in held_leases(store) if name.startswith(SERVING) and expires > now]


def held_leases(store: Store) -> list[tuple[str, str, float]]:
    """Every lease row as (name, holder, expires_at), by name: what ``memmesh doctor`` shows an
    operator deciding whether a curator run or a gc turn is going, and where (a holder names
    its host or node and its pid), or left behind by a process that died (it runs out)."""
    q = store.dialect.q  # type: ignore[attr-defined]  # the shared SQL layer's dialect
    with store.reading() as conn:
        rows = conn.execute(q("SELECT name, holder, expires_at FROM leases ORDER BY name")).fetchall()
    return [(str(name), str(holder), float(expires)) for name, holder, expires in rows]


__all__ = ["SERVING", "SERVING_RENEW_S", "SERVING_TTL_S", "Lease", "Periodic", "drop_run_out", "held_leases", "live_servers"]
