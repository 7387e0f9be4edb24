"""The "caller is gone" flag of a waiting call (a long-poll), shared by the core and the faces.

A face sets it when its client goes away (an HTTP client disconnects, an MCP client cancels
its request); the core's waits end at once when they see it. It lives below both, so that a
face can make one without importing the part of the core that waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Abandoned:
    """A waiting call's "the caller is gone" flag: a face sets it when its client goes away
    (an HTTP client disconnecting), and every wait handed it ends at once, freeing its slot
    and its worker thread instead of waiting out its timeout for nobody.

    Setting it wakes the waits that registered with it (:meth:`waking`), so an abandoned
    wait returns within a scheduling step, not at its next re-check."""

    def __init__(self) -> None:
        self._set = False
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []

    def set(self) -> None:
        with self._lock:
            self._set = True
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def is_set(self) -> bool:
        return self._set

    @contextmanager
    def waking(self, wake: Callable[[], None]) -> Iterator[None]:
        """Call ``wake()`` when this flag is set while the block runs (at once if it already is)."""
        with self._lock:
            self._wakers.append(wake)
            already = self._set
        try:
            if already:
                wake()
            yield
        finally:
            with self._lock:
                self._wakers.remove(wake)


def gone(abandoned: Abandoned | None) -> bool:
    """Whether the caller of a wait handed ``abandoned`` went away."""
    return abandoned is not None and abandoned.is_set()
