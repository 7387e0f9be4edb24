"""Who is on the other end of a TLS connection, and keeping unlisted peers off the sync routes.

uvicorn does not hand the client certificate to the app, so :class:`PeerCertProtocol` (its
HTTP protocol with one addition) reads the certificate once the handshake is done and wraps
the app for that connection in :class:`SyncRouteGuard`. The guard answers ``403
peer_certificate_required`` to every request under ``/api/v1/sync/`` whose connection did not
present a certificate on the mTLS allowlist, before the app sees it; all other routes are
untouched (agents use API keys as usual). A certificate that does not chain to the client CA
never gets that far: the TLS handshake fails.

Why the whole ``/api/v1/sync/`` prefix: a sync route added later is guarded by default.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from typing import Any

from starlette.responses import JSONResponse

from memmesh.errors import PeerCertificateError
from memmesh.interfaces.http.timeouts import RequestDeadlineProtocol
from memmesh.tls import Allowlist, fingerprint_der

log = logging.getLogger("memmesh.http")

SYNC_PREFIX = "/api/v1/sync"


def is_sync_path(path: str) -> bool:
    """True for ``/api/v1/sync`` and everything below it, however the path is spelled."""
    normal = posixpath.normpath("/" + path.lstrip("/")).rstrip("/")
    return normal == SYNC_PREFIX or normal.startswith(SYNC_PREFIX + "/")


class SyncRouteGuard:
    """The app as one connection sees it: sync routes only for an allowlisted certificate."""

    def __init__(self, app: Any, allowlist: Allowlist, fingerprint: str | None, client: str) -> None:
        self.app = app
        self.allowlist = allowlist
        self.fingerprint = fingerprint
        self.client = client

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        guarded = scope["type"] in ("http", "websocket") and is_sync_path(scope.get("path", ""))
        if guarded and not self.allowlist.allows(self.fingerprint):
            log.warning(
                "sync route %s refused: client %s certificate %s is not on the mTLS allowlist %s",
                scope.get("path"),
                self.client,
                self.fingerprint or "(none)",
                self.allowlist.path,
            )
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            error = _refusal(self.fingerprint)
            await JSONResponse(error.to_dict(), status_code=error.http_status)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _refusal(fingerprint: str | None) -> PeerCertificateError:
    return PeerCertificateError(
        "the sync routes need a client certificate on this node's mTLS allowlist"
        + (f"; this connection's certificate {fingerprint} is not on it" if fingerprint else "; this connection presented none")
        + " (add its `memmesh certs fingerprint` to the allowlist file)",
        details={"fingerprint": fingerprint},
    )


class PeerCertProtocol(RequestDeadlineProtocol):
    """The server's HTTP protocol (with its read deadline, :mod:`.timeouts`), plus the
    client-certificate check above for each connection.

    Built by uvicorn as ``functools.partial(PeerCertProtocol, allowlist=…, request_timeout=…)``
    (picklable, so worker processes get it too); asyncio calls :meth:`connection_made` after
    the handshake. It replaces the plain deadline protocol when an allowlist is set, so it must
    keep the deadline: without it a client that connected over TLS and sent nothing held its
    connection for good."""

    def __init__(self, *args: Any, allowlist: Allowlist, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._allowlist = allowlist

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        peer = transport.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
        self.app = SyncRouteGuard(self.app, self._allowlist, fingerprint_der(der) if der else None, client)
