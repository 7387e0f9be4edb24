"""``create_server``: memmesh as an MCP server (official SDK, ``MCPServer``), stdio or HTTP.

The server registers the tools of the chosen profile (see :mod:`.catalog`), the resources
``memory://{id}`` and ``memory://namespace/{ns}`` and the ``memory_context`` prompt. Each
tool is a method of :class:`.tools.MemoryTools` wrapped once by :func:`_guarded`, the one
place a :class:`MemmeshError` becomes an ``isError`` result; any other exception (a bug)
becomes the ``internal_error`` one in ``_MemmeshServer.call_tool`` (:func:`crashed`), and
the session goes on.

Over stdio the caller is fixed (the local principal, carrying ``--agent-id``). Over HTTP,
:class:`McpHttpApp` asks a resolver for the caller of each request (e.g. from its API
key), answers an auth failure with the error body, and hands the principal to the
tools through a context variable set by a server middleware.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import logging
import math
import secrets
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedResourceError,
    UnexpectedToolError,
)
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    CallToolResult,
    ErrorData,
    InputRequiredResult,
    JSONRPCError,
    ToolAnnotations,
)
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from memmesh.config import Settings
from memmesh.errors import InternalError, InvalidInputError, MemmeshError, NotFoundError, internal_error
from memmesh.interfaces.mcp.catalog import ALL_TOOLS, family_of, resolve_profile, tools_for
from memmesh.interfaces.mcp.families import tool_methods
from memmesh.interfaces.mcp.render import check_arguments, error_result, memory_view, ok, to_text, truncate
from memmesh.interfaces.mcp.tools import MemoryTools, current_abandoned, current_principal
from memmesh.model import NOT_UNICODE, Principal, describe_validation_error, text_problem
from memmesh.service import Service
from memmesh.waits import Abandoned

INSTRUCTIONS = """memmesh is your long-term memory, shared with other agents and sessions.
At the start of a task call memory_session_start (or memory_recall) to see what is already known;
store lasting facts, preferences and decisions with memory_store (self-contained text, a namespace
such as 'user/prefs' or 'team/project'); correct with memory_update, remove with memory_delete.
memory_capabilities lists every tool family and how to enable more."""

PrincipalResolver = Callable[[Request], "Principal | Awaitable[Principal]"]
"""Given an HTTP request to /mcp, the caller it stands for; raise a MemmeshError (e.g.
AuthError) to refuse it."""

NAMESPACE_RESOURCE_LIMIT = 20

log = logging.getLogger("memmesh.mcp")


def create_server(
    service: Service,
    settings: Settings | None = None,
    principal: Principal | None = None,
    *,
    profile: str | None = None,
    allow_paths: bool = True,
) -> MCPServer:
    """An MCP server over ``service``.

    ``profile`` defaults to ``settings.mcp.profile`` (else ``core``); ``principal`` is the
    caller for every request that does not bring its own (stdio); ``allow_paths`` lets
    export/import read and write files on this machine (off for remote transports).
    """
    from memmesh import __version__

    families = resolve_profile(profile if profile is not None else (settings.mcp.profile if settings else None))
    enabled = set(tools_for(families))
    tools = MemoryTools(service, principal, allow_paths=allow_paths, enabled=families)
    server: MCPServer = _MemmeshServer(
        "memmesh", title="memmesh", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING", warn_on_duplicate_tools=False
    )
    for name, (method, info) in tool_methods(tools).items():
        if name not in enabled:
            continue
        server.add_tool(
            _guarded(method, waits=info.waits),
            name=name,
            title=info.title,
            description=inspect.cleandoc(method.__doc__ or ""),
            annotations=ToolAnnotations(
                title=info.title,
                read_only_hint=info.read_only,
                destructive_hint=info.destructive,
                idempotent_hint=info.idempotent,
                open_world_hint=False,
            ),
            structured_output=False,
        )
    for registered in server._tool_manager.list_tools():
        registered.fn_metadata = _TextKeepingMetadata.of(registered.fn_metadata)
    _add_resources(server, tools)
    _add_prompt(server, tools)
    server.middleware.append(_principal_middleware)
    server.middleware.append(_object_arguments)
    return server


class _TextKeepingMetadata(FuncMetadata):
    """The SDK's argument handling, except that text stays text.

    The SDK JSON-decodes string arguments of any parameter not annotated exactly ``str``
    (helpful for ``tags='["a"]'``), which turned a one-line JSONL given to ``memory_import``,
    or a memory whose content is a JSON object, into a dict and then refused it. Parameters
    that take text (``str | None``) keep the string as sent.
    """

    @classmethod
    def of(cls, metadata: FuncMetadata) -> _TextKeepingMetadata:
        return cls(
            arg_model=metadata.arg_model,
            output_schema=metadata.output_schema,
            output_model=metadata.output_model,
            wrap_output=metadata.wrap_output,
        )

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        text = {name for name, info in self.arg_model.model_fields.items() if _admits_text(info.annotation)}
        parsed = super().pre_parse_json({k: v for k, v in data.items() if k not in text})
        return {k: data[k] if k in text else parsed[k] for k in data}


def _admits_text(annotation: Any) -> bool:
    return annotation is str or str in typing.get_args(annotation)


class _MemmeshServer(MCPServer):
    """MCPServer whose argument-validation failures and crashes read like every other memmesh error."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> CallToolResult | InputRequiredResult:
        """The tool's result; a crash (an exception no memmesh error covers, in the tool or in
        the SDK's handling of it) is the internal error, its traceback logged once (:func:`crashed`)."""
        try:
            return await self._call_tool(name, arguments, context)
        except UnexpectedToolError as exc:  # the SDK's wrapper of a crash; __cause__ is what was raised
            return error_result(crashed("tool", name, exc.__cause__ or exc))
        except (ToolError, MCPError):
            raise
        except Exception as exc:  # in memmesh's own checks before the SDK's
            return error_result(crashed("tool", name, exc))

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        """The resource; a crash in reading it is the internal error (JSON-RPC -32603), its
        traceback logged once (the SDK would answer only "Error creating resource from template")."""
        try:
            return await super().read_resource(uri, context)
        except UnexpectedResourceError as exc:
            raise ResourceError(f"error: {crashed('resource', str(uri), exc.__cause__ or exc).message}") from exc

    async def _call_tool(self, name: str, arguments: dict[str, Any], context: Any) -> CallToolResult | InputRequiredResult:
        registered = self._tool_manager.get_tool(name)
        if registered is None and name in ALL_TOOLS:  # the SDK would say only "Unknown tool"
            return error_result(not_enabled(name))
        if registered is None:
            return error_result(self._unknown(name))
        if registered is not None:
            refused_arguments = current_argument_error.get()
            if refused_arguments is not None:
                return error_result(refused_arguments)
            try:
                check_arguments(registered.fn_metadata, arguments or {})
            except MemmeshError as exc:
                return error_result(InvalidInputError(f"{name}: {exc.message}"))
        refused = current_causality_error.get()
        if refused is not None:  # the session's token is not covered here (interfaces/http/causality.py)
            return error_result(refused)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                return error_result(InvalidInputError(f"{name}: {describe_validation_error(exc.__cause__)}"))
            raise

    def _unknown(self, name: str) -> NotFoundError:
        """A tool no memmesh profile has: the nearest names, and where the list is."""
        names = [tool.name for tool in self._tool_manager.list_tools()]
        near = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(repr(n) for n in near)}? " if near else ""
        return NotFoundError(f"no tool named {name[:100]!r}; {hint}tools/list names the {len(names)} tools of this server")


def crashed(kind: str, name: str, exc: BaseException) -> InternalError:
    """The answer to an exception no memmesh error covers, raised serving the ``kind``
    (tool, resource, prompt) ``name``: its traceback logged once, at ERROR by ``memmesh.mcp``,
    under a new incident id, and the internal error naming that id (the session goes on)."""
    incident = secrets.token_hex(4)
    log.error("MCP %s %r failed with an unexpected error (incident %s)", kind, name[:200], incident, exc_info=exc)
    return internal_error(f"incident {incident}")


current_argument_error: ContextVar[MemmeshError | None] = ContextVar("memmesh_mcp_argument_error", default=None)
"""Why this ``tools/call``'s arguments were refused before the SDK could see them
(:func:`_object_arguments`): the call answers it as a tool error once the tool is known."""


async def _object_arguments(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """A ``tools/call`` or ``prompts/get`` whose ``arguments`` is not a JSON object (a list, a
    string, a number): the SDK refused it before any handler ran, with a bare -32602 "Invalid
    request parameters". A tool call goes on with no arguments and answers the tool's
    ``invalid_input`` error (:data:`current_argument_error`); a prompt answers -32602 with
    memmesh's message and error body, as its other errors."""
    params = getattr(ctx, "params", None)
    if getattr(ctx, "method", None) not in ("tools/call", "prompts/get") or not isinstance(params, Mapping):
        return await call_next(ctx)
    arguments, name = params.get("arguments"), params.get("name")
    if arguments is None or isinstance(arguments, dict) or not isinstance(name, str):
        return await call_next(ctx)
    problem = InvalidInputError(
        f"{name[:100]}: arguments must be a JSON object of argument names and values ({{}} for none), not {_json_kind(arguments)}"
    )
    if ctx.method == "prompts/get":
        raise MCPError(code=INVALID_PARAMS, message=f"error: {problem.message}", data=problem.to_dict()["error"])
    token = current_argument_error.set(problem)
    try:
        return await call_next(dataclasses.replace(ctx, params={**params, "arguments": {}}))
    finally:
        current_argument_error.reset(token)


def _json_kind(value: Any) -> str:
    """What a JSON value is, in words: ``a list``, ``a string``, ``a number``, ``a boolean``."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


def not_enabled(tool: str) -> InvalidInputError:
    """A memmesh tool this server's profile leaves out: which family has it and how to turn it on."""
    family = family_of(tool)
    return InvalidInputError(
        f"{tool} is not enabled on this server: it is in the {family!r} family, which the profile leaves out; "
        f"start the server with --profile {family} (or MEMMESH_MCP_PROFILE, [mcp] profile; `full` enables every tool)"
    )


def _guarded(method: Callable[..., Any], *, waits: bool = False) -> Callable[..., Any]:
    """The tool as the SDK calls it: the method's signature, its result rendered, and the one
    translation of memmesh errors into MCP tool errors (any other exception is a crash, answered
    by ``_MemmeshServer.call_tool``).

    The SDK runs a plain function on a worker thread and, when the client cancels, still
    waits for that thread: a long-poll would hold its slot and thread until its timeout. A
    tool that ``waits`` is therefore run here on the thread, with an :class:`Abandoned` flag
    in :data:`current_abandoned`, set the moment the request is cancelled (the service then
    ends the wait at once, as for an HTTP client that disconnects)."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return ok(method(*args, **kwargs))
        except MemmeshError as exc:
            return error_result(exc)

    if not waits:
        return call

    @functools.wraps(method)
    async def call_until_cancelled(*args: Any, **kwargs: Any) -> CallToolResult:
        abandoned = Abandoned()

        def run() -> CallToolResult:
            current_abandoned.set(abandoned)  # (the thread runs in a copy of the request's context)
            return call(*args, **kwargs)

        async def until_cancelled() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                abandoned.set()  # the request was cancelled (or the call is over: then nobody waits on it)

        # Not abandon_on_cancel: an abandoned thread no longer counts against the worker-thread
        # limit, so a client cancelling calls whose threads are blocked (on a lock, a busy
        # pool) could pile up threads without bound. The thread ends within a scheduling step
        # of the flag being set; the cancellation is raised once it has.
        failed: Exception | None = None
        async with anyio.create_task_group() as watch:
            watch.start_soon(until_cancelled)
            try:
                result = await anyio.to_thread.run_sync(run)
            except Exception as exc:  # raised below, outside the group (which would wrap it in an ExceptionGroup)
                failed = exc
            finally:
                watch.cancel_scope.cancel()
        if failed is not None:
            raise failed
        return result

    return call_until_cancelled


def _add_resources(server: MCPServer, tools: MemoryTools) -> None:
    service = tools.service

    @server.resource(
        "memory://{id}", name="memory", title="A memory", description="One memory in full, as JSON.", mime_type="application/json"
    )
    def read_memory(id: str) -> str:
        with _resource_errors():
            return to_text(memory_view(service.get(id, principal=tools.who()), full=True))

    @server.resource(
        "memory://namespace/{+namespace}",
        name="namespace",
        title="Recent memories of a namespace",
        description=f"The {NAMESPACE_RESOURCE_LIMIT} newest memories in a namespace (and below it), as JSON.",
        mime_type="application/json",
    )
    def read_namespace(namespace: str) -> str:
        with _resource_errors():
            page = service.list(limit=NAMESPACE_RESOURCE_LIMIT, namespace=namespace, principal=tools.who())
            return to_text({"namespace": namespace, "items": [memory_view(m) for m in page.items], "next_cursor": page.next_cursor})


@contextmanager
def _resource_errors() -> Iterator[None]:
    """memmesh errors in a resource read become the SDK's resource errors (not-found is -32602)."""
    try:
        yield
    except NotFoundError as exc:
        raise ResourceNotFoundError(f"error: {exc.message}") from exc
    except MemmeshError as exc:
        raise ResourceError(f"error: {exc.message}") from exc


def _add_prompt(server: MCPServer, tools: MemoryTools) -> None:
    service = tools.service

    @server.prompt(
        name="memory_context",
        title="Load relevant memories",
        description="Start a task with what memmesh already knows about it: the most relevant and the newest memories, ready to read.",
    )
    def memory_context(task: str, namespace: str | None = None) -> str:
        try:
            brief = service.survey.session_start(task=task, namespace=namespace, recent=5, relevant=10, principal=tools.who())
        except MemmeshError as exc:  # an MCPError passes the SDK unchanged; anything else becomes "Error rendering prompt"
            raise MCPError(code=INVALID_PARAMS, message=f"error: {exc.message}", data=exc.to_dict()["error"]) from exc
        except Exception as exc:
            bug = crashed("prompt", "memory_context", exc)
            raise MCPError(code=INTERNAL_ERROR, message=f"error: {bug.message}", data=bug.to_dict()["error"]) from exc
        lines = [f"Task: {task}", "", "What memmesh remembers that may matter (most relevant first):"]
        lines += [f"- [{h.memory.id}] ({h.memory.namespace}) {truncate(h.memory.content, 400)}" for h in brief.relevant]
        if not brief.relevant:
            lines.append("- (nothing relevant found)")
        lines += ["", "Newest memories:"]
        lines += [f"- [{m.id}] ({m.namespace}) {truncate(m.content, 200)}" for m in brief.recent] or ["- (none)"]
        lines += ["", "Use memory_get for a memory's full text; store new lasting facts with memory_store."]
        return "\n".join(lines)


CAUSALITY_STATE_KEY = "memmesh_causality_error"
"""Where the HTTP face's causality middleware leaves a refused token of a /mcp request
(the same name as ``interfaces.http.causality.STATE_KEY``; faces do not import each other)."""
current_causality_error: ContextVar[MemmeshError | None] = ContextVar("memmesh_mcp_causality_error", default=None)
"""Why this request's causality token was refused (not_yet, or malformed): every tool call
of the request answers it as an MCP tool error instead of running."""


async def _principal_middleware(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Hand the HTTP request's caller (set by :class:`McpHttpApp`) to the tools."""
    request = getattr(ctx, "request", None)
    state = getattr(request, "state", None)
    principal = getattr(state, "memmesh_principal", None)
    refused = current_causality_error.set(getattr(state, CAUSALITY_STATE_KEY, None))
    try:
        if principal is None:
            return await call_next(ctx)
        token = current_principal.set(principal)
        try:
            return await call_next(ctx)
        finally:
            current_principal.reset(token)
    finally:
        current_causality_error.reset(refused)


class McpHttpApp:
    """MCP over streamable HTTP as a plain ASGI app, to be mounted at ``/mcp``.

    ``lifespan()`` must run around the app's lifetime (it owns the MCP session tasks).
    Each request is first resolved to a Principal; a refused one gets the memmesh error
    body and status (401, 403, 429 …) without reaching MCP.
    """

    def __init__(
        self,
        service: Service,
        settings: Settings | None,
        resolve: PrincipalResolver,
        *,
        profile: str | None = None,
        host: str = "127.0.0.1",
        stateless: bool = False,
        json_response: bool = False,
    ) -> None:
        self.server = create_server(service, settings, None, profile=profile, allow_paths=False)
        self.resolve = resolve
        loopback = host in ("127.0.0.1", "localhost", "::1")
        security = None if loopback else TransportSecuritySettings(enable_dns_rebinding_protection=False)
        self.server.streamable_http_app(stateless_http=stateless, json_response=json_response, transport_security=security, host=host)
        self.manager: StreamableHTTPSessionManager = self.server.session_manager

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Run the MCP session manager; enter it in the host app's lifespan."""
        return self.manager.run()

    async def _resolve(self, request: Request) -> Principal:
        """The request's caller; a plain (blocking) resolver runs on a worker thread, since
        authenticating a key queries the store and must not stall the event loop."""
        if inspect.iscoroutinefunction(self.resolve):
            return await self.resolve(request)  # type: ignore[no-any-return]
        found = await anyio.to_thread.run_sync(self.resolve, request)
        return await found if inspect.isawaitable(found) else found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                principal = await self._resolve(Request(scope, receive))
            except MemmeshError as exc:
                await _send_error(send, exc)
                return
            scope.setdefault("state", {})["memmesh_principal"] = principal
            scope["user"] = session_owner(principal)
        await self.manager.handle_request(scope, receive, send)


def session_owner(principal: Principal) -> AuthenticatedUser:
    """Who an MCP session belongs to: the caller that opened it, by its API key, agent, role and
    namespaces (on a server that needs no key, the local caller; in a host app, whoever its
    resolver returns). The SDK's session manager answers a request that names a session opened
    by another caller as it answers an unknown session (404 "Session not found"), so a session
    id seen in a log or a proxy is no handle on another key's session (its calls, its DELETE)."""
    owner = json.dumps([principal.key_id, principal.agent_id, principal.role, principal.namespaces])
    return AuthenticatedUser(AccessToken(token="", client_id=owner, scopes=[]))


async def _send_error(send: Send, exc: MemmeshError) -> None:
    body = json.dumps(exc.to_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.http_status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    retry = exc.details.get("retry_after")
    if retry is not None:
        headers.append((b"retry-after", str(retry).encode()))
    await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def http_app(service: Service, settings: Settings | None, resolve: PrincipalResolver, **options: Any) -> McpHttpApp:
    """The ASGI app for ``/mcp`` (see :class:`McpHttpApp`); mount it and run its ``lifespan()``."""
    return McpHttpApp(service, settings, resolve, **options)


DRAIN_TIMEOUT_S = 30.0
"""How long, after stdin closes, the stdio server waits for the answers still owed."""


def run_stdio(server: MCPServer, *, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Serve ``server`` on stdin/stdout until stdin closes, then answer what was read, then exit.

    The SDK's stdio loop ends the session as soon as stdin reaches EOF, cancelling the
    handlers still running, so a client that writes its last request and closes stdin
    (a script, ``echo … | memmesh mcp``) sometimes never gets that reply. Here the read
    side reports EOF to the SDK only once every request read has been answered (or
    ``drain_timeout_s`` passed, for a request that never answers, e.g. one the client
    cancelled).
    """
    anyio.run(_run_stdio_async, server, drain_timeout_s)


async def _run_stdio_async(server: MCPServer, drain_timeout_s: float) -> None:
    from mcp.server.stdio import stdio_server

    lowlevel = server._lowlevel_server  # the SDK's own run_stdio_async uses it the same way
    async with stdio_server() as (read_stream, write_stream):
        owed = _OwedReplies(drain_timeout_s)
        await lowlevel.run(owed.reader(read_stream), owed.writer(write_stream), lowlevel.create_initialization_options())


class _OwedReplies:
    """Request ids read from the client and not answered yet, shared by the two stream wrappers."""

    def __init__(self, drain_timeout_s: float) -> None:
        self.pending: set[Any] = set()
        self.changed = anyio.Event()
        self.drain_timeout_s = drain_timeout_s
        self.out: Any = None
        """stdout's message stream, for the errors answering lines the SDK could not read."""

    def reader(self, inner: Any) -> _DrainingReader:
        return _DrainingReader(inner, self)

    def writer(self, inner: Any) -> _AnsweringWriter:
        self.out = inner
        return _AnsweringWriter(inner, self)

    def read(self, item: Any) -> None:
        message: Any = getattr(item, "message", None)
        if getattr(message, "method", None) is not None and getattr(message, "id", None) is not None:
            self.pending.add(message.id)

    def answered(self, item: Any) -> None:
        message: Any = getattr(item, "message", None)
        if getattr(message, "method", None) is None and getattr(message, "id", None) is not None:
            self.pending.discard(message.id)
            self.changed.set()

    async def drained(self) -> None:
        """Wait until nothing is owed, at most ``drain_timeout_s``."""
        with anyio.move_on_after(self.drain_timeout_s if self.drain_timeout_s > 0 else math.inf):
            while self.pending:
                self.changed = anyio.Event()
                await self.changed.wait()


def unreadable_line_reply(exc: ValidationError) -> JSONRPCError | None:
    """The JSON-RPC error answering a stdin line the SDK refused (``exc``), or None for a
    notification (nothing answers those). Python's JSON reader still reads a line whose only
    fault is a lone UTF-16 surrogate escape, which gives the request's id; a line it cannot
    read either is a parse error with id null, as JSON-RPC says."""
    line = next((e.get("input") for e in exc.errors() if isinstance(e.get("input"), str | bytes)), None)
    try:
        message = json.loads(line) if line is not None else None
    except ValueError as bad:
        return JSONRPCError(
            jsonrpc="2.0",
            id=None,
            error=ErrorData(code=PARSE_ERROR, message=f"the line is not valid JSON ({bad}): send one JSON-RPC message per line"),
        )
    if not isinstance(message, dict) or "id" not in message:
        return None if isinstance(message, dict) and "method" in message else _invalid_request()
    call_id = message["id"] if isinstance(message["id"], int | str) and not isinstance(message["id"], bool) else None
    problem = text_problem(message)
    if problem is not None:
        text = f"the request {NOT_UNICODE}: {problem}"
        return JSONRPCError(jsonrpc="2.0", id=call_id, error=ErrorData(code=PARSE_ERROR, message=text))
    return _invalid_request(call_id)


def _invalid_request(call_id: int | str | None = None) -> JSONRPCError:
    text = "the line is JSON but not a JSON-RPC 2.0 message: give jsonrpc, id, method and params"
    return JSONRPCError(jsonrpc="2.0", id=call_id, error=ErrorData(code=INVALID_REQUEST, message=text))


class _DrainingReader:
    """The stdin message stream, holding back end-of-stream until every request is answered."""

    def __init__(self, inner: Any, owed: _OwedReplies) -> None:
        self.inner = inner
        self.owed = owed

    @property
    def last_context(self) -> Any:
        return getattr(self.inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            try:
                item: SessionMessage | Exception = await self.inner.receive()
            except anyio.EndOfStream:
                await self.owed.drained()
                raise
            if isinstance(item, ValidationError) and self.owed.out is not None:
                # a line the SDK could not read: it would only log it, and the client would
                # wait for an answer that never comes
                reply = unreadable_line_reply(item)
                if reply is not None:
                    await self.owed.out.send(SessionMessage(reply))
                continue
            self.owed.read(item)
            return item

    def __aiter__(self) -> _DrainingReader:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> _DrainingReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _AnsweringWriter:
    """The stdout message stream, noting each answer so the reader knows what is still owed."""

    def __init__(self, inner: Any, owed: _OwedReplies) -> None:
        self.inner = inner
        self.owed = owed

    async def send(self, item: SessionMessage) -> None:
        await self.inner.send(item)
        self.owed.answered(item)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> _AnsweringWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
