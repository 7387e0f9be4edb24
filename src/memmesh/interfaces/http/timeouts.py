"""A deadline on reading each request, so slow clients cannot hold connections open, and a
bound on its headers, so a client cannot make the server hold megabytes of them.

uvicorn has no read timeout: a client that sends its headers (or its body) one byte a
second keeps a connection — and, with enough of them, every file descriptor — for as long
as it likes, because each byte resets nothing but uvicorn's idle keep-alive timer. This
protocol (uvicorn's httptools protocol plus a timer) gives each request
``server.request_timeout_secs`` from its first byte (or from the connection's opening) to
its last byte of body. Past that the client gets ``408 Request Timeout`` (the usual error body)
and the connection is closed; the event loop never blocked on it, so every other client
was served all along. Time the app spends answering is not counted: only the client's
sending is.

Nor does uvicorn's httptools protocol bound the headers: a 20 MB header, or 100,000 short
ones, were read in full and answered 200. Past MAX_HEAD_BYTES of request line and headers the
client gets ``431 Request Header Fields Too Large`` and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from memmesh.errors import HeadersTooLargeError, MemmeshError, RequestTimeoutError
from memmesh.interfaces.http.stopping import server_stopping

logger = logging.getLogger("memmesh.http.timeouts")

MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers, at most (nginx reads 32 KiB by default, Node 16 KiB). Counted per
chunk read, so the refusal comes at most one chunk (256 KiB) later."""


class RequestDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a per-request read deadline."""

    def __init__(self, *args: Any, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._head_open = False  # between a request's first byte and the end of its headers
        self._head_began_now = False  # ... and it began in the chunk being parsed
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is a slow client too

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        self._head_began_now = False
        super().data_received(data)
        if self._head_open and not self._head_began_now:  # a chunk that began the request may hold the one before: not counted
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open, self._head_began_now, self._head_bytes = True, True, 0

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()  # the whole request is in: what follows is the app's time, not the client's
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server began its graceful shutdown: end the long-polls first (see stopping.py)."""
        server_stopping(self.app_state)
        super().shutdown()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse_head(self) -> None:
        """Answer 431 and close the connection: the headers go on past MAX_HEAD_BYTES."""
        self._head_open = False
        self._disarm()
        if self.transport is None or self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.warning("closed the connection from %s: request headers longer than %d bytes", client, MAX_HEAD_BYTES)
        error = HeadersTooLargeError(
            f"the request line and headers are longer than {MAX_HEAD_BYTES} bytes; send fewer or shorter headers",
            details={"limit": MAX_HEAD_BYTES},
        )
        self.transport.write(raw_response(error, "Request Header Fields Too Large"))
        self.transport.close()

    def _expire(self) -> None:
        """Answer 408 (unless a response already started) and close the connection."""
        self._deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.warning("closed the connection from %s: request not received within %gs", client, self.request_timeout)
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(timeout_response(self.request_timeout))
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app, if it is waiting for the body, sees a disconnect
            self.cycle.message_event.set()
        self.transport.close()


def timeout_response(seconds: float) -> bytes:
    """The raw 408 response: the usual error body, and the connection closes."""
    error = RequestTimeoutError(
        f"the request was not received within {seconds:g} seconds (server.request_timeout_secs); send it faster or in one piece"
    )
    return raw_response(error, "Request Timeout")


def raw_response(error: MemmeshError, reason: str) -> bytes:
    """An error answered below the app (no request to route): the usual error body, and the
    connection closes."""
    body = json.dumps(error.to_dict()).encode()
    head = (
        f"HTTP/1.1 {error.http_status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def protocol_for(request_timeout: float) -> partial[RequestDeadlineProtocol]:
    """What ``uvicorn.run(http=…)`` takes: a picklable factory, so ``--workers`` can use it too."""
    return partial(RequestDeadlineProtocol, request_timeout=request_timeout)


__all__ = ["RequestDeadlineProtocol", "protocol_for", "timeout_response"]
