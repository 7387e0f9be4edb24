"""``McpMount``: the ``/mcp`` endpoint of the HTTP server, built on first use.

Importing the MCP SDK costs seconds, which every ``memmesh serve`` start (and every HTTP
test) would pay even when nobody speaks MCP. The mount therefore only opens a task group
in the host app's lifespan; the first request to ``/mcp`` builds the MCP server (import
on a worker thread, so the event loop keeps serving) and starts its session manager
inside that task group, where it runs until the host app shuts down.

Mounting (in ``create_app``)::

    mcp = McpMount(service, settings, deps.caller, host=settings.server.host)
    # in the FastAPI lifespan:   async with mcp.lifespan(): yield
    app.add_route("/mcp", mcp, include_in_schema=False)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus

from memmesh.config import Settings
from memmesh.errors import UnavailableError
from memmesh.model import Principal
from memmesh.service import Service

if TYPE_CHECKING:
    from memmesh.interfaces.mcp.server import McpHttpApp

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Resolver = Callable[[Any], "Principal | Awaitable[Principal]"]


class McpMount:
    """ASGI app for ``/mcp``: MCP over streamable HTTP, every request as its resolved caller."""

    def __init__(self, service: Service, settings: Settings | None, resolve: Resolver, **options: Any) -> None:
        self.service = service
        self.settings = settings
        self.resolve = resolve
        self.options = options
        self._app: McpHttpApp | None = None
        self._tg: TaskGroup | None = None
        self._lock = anyio.Lock()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Enter in the host app's lifespan; the MCP sessions live (and end) inside it."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
                self._tg = None
                self._app = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or await self._start()
        if app is None:
            await _unavailable(send)
            return
        await app(scope, receive, send)

    async def _start(self) -> McpHttpApp | None:
        async with self._lock:
            if self._app is None and self._tg is not None:
                app = await anyio.to_thread.run_sync(self._build)
                await self._tg.start(self._run, app)
                self._app = app
        return self._app

    def _build(self) -> McpHttpApp:
        from memmesh.interfaces.mcp.server import McpHttpApp

        return McpHttpApp(self.service, self.settings, self.resolve, **self.options)

    @staticmethod
    async def _run(app: McpHttpApp, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with app.lifespan():
            task_status.started()
            await anyio.sleep_forever()


async def _unavailable(send: Send) -> None:
    error = UnavailableError("the MCP endpoint is not running: the server's lifespan has not started")
    body = json.dumps(error.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.http_status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
