"""The one ASGI middleware around every request: request id, body limit, metrics, access log.

Written as plain ASGI (not Starlette's ``BaseHTTPMiddleware``) because it sits on the hot
path of every request; the body limit is checked before any route runs, so an oversized
body is refused with 413 without being parsed or stored.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from memmesh.errors import ContentTooLargeError, ForbiddenError, MemmeshError, MisdirectedRequestError, UnsupportedMediaTypeError
from memmesh.interfaces.http.logs import access_logger, request_id
from memmesh.interfaces.http.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")  # with fullmatch, not "$"
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
API_PREFIX = "/api/v1"
MCP_PATH = "/mcp"
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_JSON_ITEMS = 10_000
"""The most elements one JSON array or object of a request body may hold (no route takes more:
a batch is at most 2,000 items, metadata at most 16 KiB). Validation answers every bad element
with an error, on the event loop: 250,000 wrong ids in one 2 MB body held it for 3 s."""


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is short and plain, else a fresh one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


WEB_PREFIX = "/ui"
"""The web inspector: its pages get the same Host and Origin checks as the API (DNS rebinding, cross-site forms)."""


def _route_label(scope: Scope) -> str:
    """The route's template as a metrics label, under its mount: a web inspector page is
    ``/ui/memories``, not the ``/memories`` its mounted app knows it by (a route the API may
    have one day). Starlette's mount adds its prefix to the scope's ``root_path``, minus the
    ``app_root_path`` the server was given (a proxy's prefix, the same for every route)."""
    template = getattr(scope.get("route"), "path", None)
    if template is None:
        return "<unmatched>"
    mounted = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    return f"{mounted}{template}"


class RequestMiddleware:
    """Tags each request with an id, enforces ``limits.max_body_bytes``, counts and logs it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        loopback: bool = False,
        allowed_hosts: list[str] | None = None,
        allowed_origins: list[str] | None = None,
        key_refusal: Callable[[Scope], Awaitable[MemmeshError | None]] | None = None,
    ) -> None:
        self.app = app
        self.key_refusal = key_refusal
        """The 401 of a request without a valid key (None: accepted), asked before any other refusal."""
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.guard = BrowserGuard(loopback=loopback, allowed_hosts=allowed_hosts or [], allowed_origins=allowed_origins or [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = incoming_request_id(scope["headers"])
        token = request_id.set(rid)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, rid.encode())]
            await send(message)

        try:
            refusal = self.guard.check(scope) if scope["path"].startswith((API_PREFIX, WEB_PREFIX, MCP_PATH)) else None
            if refusal is None and scope["method"] in _BODY_METHODS:
                body = await self._read_body(scope, receive)
                if body is None:
                    refusal = await self._unauthenticated(scope)
                    await (self._refuse(send_with_id, refusal, close=True) if refusal is not None else self._too_large(send_with_id))
                    return
                receive = _replay(body, receive)
                if scope["path"].startswith((API_PREFIX, MCP_PATH)):  # /mcp: refused in the one error shape, before the SDK's plain text
                    refusal = _json_only(scope["headers"], body)
                    if refusal is None and len(body) > MAX_JSON_ITEMS * 2:  # a smaller body cannot hold that many
                        refusal = await anyio.to_thread.run_sync(_too_wide, body)
            if refusal is not None:
                await self._refuse(send_with_id, await self._unauthenticated(scope) or refusal)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_label(scope)
            self.metrics.observe_request(scope["method"], route, status, elapsed)
            access_logger.info(
                "%s %s %d %.1fms",
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )
            request_id.reset(token)

    async def _unauthenticated(self, scope: Scope) -> MemmeshError | None:
        """The 401 this request gets for its key (API and MCP paths), so that a caller without a
        valid key learns that first, never which other check its request would fail."""
        if self.key_refusal is None or not scope["path"].startswith((API_PREFIX, MCP_PATH)):
            return None
        return await self.key_refusal(scope)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        declared = _content_length(scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        error = ContentTooLargeError(
            f"request body is larger than {self.max_body_bytes} bytes (limits.max_body_bytes)",
            details={"limit": self.max_body_bytes},
        )
        await self._refuse(send, error, close=True)

    async def _refuse(self, send: Send, error: MemmeshError, *, close: bool = False) -> None:
        """A refusal before any route runs, counted with the handlers' error answers."""
        self.metrics.count_error(error.code, error.http_status)
        await _send_error(send, error, close=close)


async def _send_error(send: Send, error: MemmeshError, *, close: bool = False) -> None:
    """Answer with the one error shape before any route runs."""
    payload = json.dumps(error.to_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:  # the body was not read to its end: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    if error.http_status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="memmesh"'))
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


def _json_only(headers: list[tuple[bytes, bytes]], body: bytes) -> MemmeshError | None:
    """Refuse a body that is not declared ``application/json`` (415).

    A web page may POST text/plain or form bodies to any address without a CORS preflight;
    reading those as JSON would let any site write memories or mint keys on a local server.
    Requiring the JSON type forces the browser to ask first, and we never say yes.
    """
    declared = _header(headers, b"content-type")
    media = (declared or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (declared is None and not body):
        return None
    shown = f"Content-Type {declared!r}" if declared is not None else "no Content-Type"
    return UnsupportedMediaTypeError(
        f"request bodies must be JSON sent with 'Content-Type: application/json' (got {shown}); "
        "with curl pass -H 'Content-Type: application/json' or use --json",
        details={"content_type": declared},
    )


def _too_wide(body: bytes) -> MemmeshError | None:
    """413 when a JSON array or object of ``body`` holds more than MAX_JSON_ITEMS elements
    (run on a worker thread; a body that is not JSON is left to the route to refuse).

    n elements take n - 1 commas, and every encoding ``json.loads`` reads (UTF-8, -16, -32)
    writes a comma with the byte 0x2C: a body with fewer commas than that is cleared without
    a parse. Any other is parsed, and FastAPI parses it again for the route. A scan that
    skips strings (their commas and brackets are text) and counts commas per nesting level
    was tried and measured slower: on 2 MB bodies its regular expression over the strings
    alone took 20 to 30 ms, ``json.loads`` 6 to 14 ms (it is C; a Python scan is not).
    """
    if not _has_commas(body, MAX_JSON_ITEMS):
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack = [parsed] if isinstance(parsed, dict | list) else []  # a bare long string is no array
    while stack:
        value = stack.pop()
        if len(value) > MAX_JSON_ITEMS:
            kind = "an object of" if isinstance(value, dict) else "an array of"
            return ContentTooLargeError(
                f"the request body holds {kind} {len(value)} elements; at most {MAX_JSON_ITEMS} fit in one: split the request",
                details={"limit": MAX_JSON_ITEMS},
            )
        stack += [v for v in (value.values() if isinstance(value, dict) else value) if isinstance(v, _CONTAINERS)]
    return None


_CONTAINERS = (dict, list)


def _has_commas(body: bytes, wanted: int, chunk: int = 1 << 16) -> bool:
    """Whether ``body`` holds ``wanted`` commas; stops counting once it has seen them (a
    2 MB text body reaches 10,000 in its first half megabyte)."""
    seen = 0
    for start in range(0, len(body), chunk):
        seen += body.count(b",", start, start + chunk)
        if seen >= wanted:
            return True
    return False


def _host_name(host: str) -> str:
    """The name part of a Host header, lower-cased, without port or brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class BrowserGuard:
    """Host and Origin checks for /api/v1, /ui and /mcp (where the MCP SDK checks again, but
    would refuse in plain text).

    A loopback server is reachable from every web page the user opens: DNS rebinding makes a
    foreign name resolve to 127.0.0.1 (caught by the Host check, 421), and a cross-site
    request carries the page's Origin (caught by the Origin check, 403).
    """

    def __init__(self, *, loopback: bool, allowed_hosts: list[str], allowed_origins: list[str]) -> None:
        self.loopback = loopback
        self.hosts = _LOOPBACK_NAMES | {_host_name(h) for h in allowed_hosts}
        self.origins = {o.strip().rstrip("/").lower() for o in allowed_origins}

    def check(self, scope: Scope) -> MemmeshError | None:
        """The refusal for this request, or None when it may go on."""
        hosts = sum(1 for name, _ in scope["headers"] if name == b"host")
        if hosts > 1:  # RFC 9112 3.2: refuse, rather than check the first and let a proxy route by the last
            return MisdirectedRequestError(f"the request has {hosts} Host headers; send exactly one", details={"hosts": hosts})
        host = _header(scope["headers"], b"host")
        if self.loopback and (host is None or _host_name(host) not in self.hosts):
            return MisdirectedRequestError(
                f"this server is bound to loopback and does not answer to Host {host!r}; "
                "use localhost, 127.0.0.1 or [::1], or list the name in server.allowed_hosts",
                details={"host": host},
            )
        origin = _header(scope["headers"], b"origin")
        if origin is None:
            return None
        normalized = origin.strip().rstrip("/").lower()
        own = f"{scope.get('scheme', 'http')}://{(host or '').strip().lower()}"
        if normalized == own or normalized in self.origins:
            return None
        return ForbiddenError(
            f"cross-origin requests from {origin!r} are refused; list the origin in server.allowed_origins to allow it",
            details={"origin": origin},
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body to the app once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
