"""Ending long-polls as soon as the server starts to stop.

uvicorn's graceful shutdown (SIGTERM, Ctrl-C) stops accepting connections, waits up to
``GRACEFUL_SHUTDOWN_S`` for the requests in flight to finish, and only then runs the app's
lifespan shutdown. A long-poll in flight (``unread?wait=25``, a claim with ``wait_s``) would
hold that wait for its whole timeout, for an answer that was always going to be empty.

uvicorn does tell every open connection that the shutdown began, before it waits: it calls
``shutdown()`` on the connection's protocol. The protocols ``memmesh serve`` runs
(:class:`~memmesh.interfaces.http.timeouts.RequestDeadlineProtocol`, and
:class:`~memmesh.interfaces.http.tls_guard.PeerCertProtocol` with an mTLS allowlist) pass it
on with :func:`server_stopping` to the hook the app put in its lifespan state
(:data:`LIFESPAN_KEY`), and the hook tells the core (``Service.end_waits``): every long-poll
answers now as an empty poll would, while writes in flight finish and commit as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LIFESPAN_KEY = "memmesh.server_stopping"
"""The app's lifespan state entry holding its "the server is stopping" hook (no arguments)."""


def server_stopping(app_state: Mapping[str, Any]) -> None:
    """A connection's protocol was told the server is shutting down: run the app's hook (the
    same one for every connection; the core makes repeats free)."""
    hook = app_state.get(LIFESPAN_KEY)
    if callable(hook):
        hook()
