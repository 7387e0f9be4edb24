"""The causality token on HTTP: ``X-Memmesh-Causality`` in, wait or ``409 not_yet``, and the
node's token out on every answer (rules in :mod:`memmesh.federation.session`).

Plain ASGI around the API routes and ``/mcp`` (not the sync routes: peers replicate, they
do not carry sessions). A request with a token this node does not cover is held for at most
:data:`~memmesh.federation.session.WAIT_S` in a worker thread, then refused before any route
runs, so nothing is read or written from an older state.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio

from memmesh.errors import MemmeshError, NotYetError
from memmesh.federation.session import CAUSALITY_HEADER, await_token, format_token, node_token, parse_token

if TYPE_CHECKING:
    from memmesh.service import Service

_HEADER = CAUSALITY_HEADER.lower().encode()


def _applies(path: str) -> bool:
    return (path.startswith("/api/v1/") and not path.startswith("/api/v1/sync/")) or path == "/mcp" or path.startswith("/mcp/")


class CausalityMiddleware:
    """Session guarantees for clients that hop between nodes."""

    def __init__(self, app: Any, *, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        raw = next((value.decode("latin-1") for name, value in scope["headers"] if name == _HEADER), None)
        try:
            seen = parse_token(raw)
            if seen:
                await anyio.to_thread.run_sync(await_token, self.service, seen)
        except MemmeshError as exc:
            await self._refuse(send, exc, seen if isinstance(exc, NotYetError) else {})
            return

        async def send_with_token(message: Any) -> None:
            if message["type"] == "http.response.start" and message.get("status", 200) < 500:
                # An error answer carries no token: the store may be the thing that failed (a
                # 503 while the database is down must stay a 503, not become a second error).
                try:
                    token = await anyio.to_thread.run_sync(node_token, self.service, seen)
                except MemmeshError:
                    token = None
                if token is not None:
                    message["headers"] = [*message.get("headers", []), (_HEADER, format_token(token).encode())]
            await send(message)

        await self.app(scope, receive, send_with_token)

    async def _refuse(self, send: Any, error: MemmeshError, seen: dict[str, int]) -> None:
        payload = json.dumps(error.to_dict()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if isinstance(error, NotYetError):
            headers += [(b"retry-after", b"1"), (_HEADER, format_token(seen).encode())]
        await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
