"""The causality token on HTTP: ``X-Memmesh-Causality`` in, wait or ``409 not_yet``, and the
node's token out on every answer (rules in :mod:`memmesh.federation.session`).

Plain ASGI around the API routes and ``/mcp`` (not the sync routes: peers replicate, they
do not carry sessions). A request with a token this node does not cover is held for at most
:data:`~memmesh.federation.session.WAIT_S` in a worker thread, then refused before any route
runs, so nothing is read or written from an older state.

The token comes in the header or, for clients that can only shape a JSON body, as a
top-level ``"causality"`` field of a JSON object body of ``/api/v1/*`` (taken out of the
body before the route reads it; with both, the two are merged). On ``/mcp`` a refusal is not
an HTTP error, which an MCP client could only report as a broken transport: the request
goes on and the MCP face answers each tool call with a ``not_yet`` tool error (the error is
left in ``scope["state"]`` under :data:`STATE_KEY`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio

from memmesh.errors import InvalidInputError, MemmeshError, NotYetError
from memmesh.federation.session import CAUSALITY_HEADER, await_token, format_token, merge_tokens, node_token, parse_token

if TYPE_CHECKING:
    from memmesh.interfaces.http.metrics import Metrics
    from memmesh.service import Service

_HEADER = CAUSALITY_HEADER.lower().encode()
BODY_FIELD = "causality"
STATE_KEY = "memmesh_causality_error"
"""Where a ``/mcp`` request's token refusal waits for the MCP face (see the module docstring)."""
_BODY_MARK = b'"causality"'


def _applies(path: str) -> bool:
    return (path.startswith("/api/v1/") and not path.startswith("/api/v1/sync/")) or path == "/mcp" or path.startswith("/mcp/")


class CausalityMiddleware:
    """Session guarantees for clients that hop between nodes."""

    def __init__(self, app: Any, *, service: Service, metrics: Metrics) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        raw = next((value.decode("latin-1") for name, value in scope["headers"] if name == _HEADER), None)
        seen: dict[str, int] = {}
        try:
            seen = parse_token(raw)
            if scope["path"].startswith("/api/v1/") and _json_body(scope):
                receive, scope, in_body = await _take_body_token(scope, receive)
                seen = merge_tokens(seen, parse_token(in_body))
            if seen:
                await anyio.to_thread.run_sync(await_token, self.service, seen)
        except MemmeshError as exc:
            if scope["path"] == "/mcp" or scope["path"].startswith("/mcp/"):
                scope.setdefault("state", {})[STATE_KEY] = exc  # a tool error, from the MCP face
                seen = seen if isinstance(exc, NotYetError) else {}
            else:
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
        self.metrics.count_error(error.code, error.http_status)
        payload = json.dumps(error.to_dict()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if isinstance(error, NotYetError):
            headers += [(b"retry-after", b"1"), (_HEADER, format_token(seen).encode())]
        await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _json_body(scope: Any) -> bool:
    """A request whose body is JSON (only those can carry the token in the body)."""
    if scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE"):
        return False
    kind = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
    return kind.split(b";")[0].strip().lower() == b"application/json"


async def _take_body_token(scope: Any, receive: Any) -> tuple[Any, Any, str | None]:
    """Read the body (the request middleware outside has bounded its size); when it is a JSON
    object with a top-level ``causality`` string, return that and the body without it, so
    the route (whose models refuse unknown fields) reads the body it expects. Any other body
    is passed on byte for byte."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return _replay([message], receive), scope, None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    token: str | None = None
    if _BODY_MARK in body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None  # the route answers the malformed body as it always does
        if isinstance(data, dict) and BODY_FIELD in data:
            value = data.pop(BODY_FIELD)
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(
                    f'"{BODY_FIELD}" in the body must be the token string a memmesh node answered (got {type(value).__name__})'
                )
            token = value
            body = json.dumps(data).encode()
            headers = [(n, v) for n, v in scope["headers"] if n != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
    return _replay([{"type": "http.request", "body": body, "more_body": False}], receive), scope, token


def _replay(messages: list[Any], receive: Any) -> Any:
    """A ``receive`` that first gives back ``messages``, then reads on."""
    pending = list(messages)

    async def again() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return again
