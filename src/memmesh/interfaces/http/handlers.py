"""The one place HTTP turns errors into responses, all in the one error body
``{"error": {"code", "message", "details"}}``.

MemmeshError subclasses carry their own status; request validation becomes 422 (400 for a
body that is not JSON at all); unknown routes and methods keep their 404/405 (and the
``Allow`` header). Anything else is a bug: it is logged and answered with a 500 in the
same shape, then re-raised by Starlette so tests see it.
"""

from __future__ import annotations

import json
import logging
import typing
from types import UnionType
from typing import Any, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memmesh.errors import MemmeshError, first_listed, internal_error
from memmesh.interfaces.http.deps import key_refusal
from memmesh.limits import retry_after_header
from memmesh.model import error_words

log = logging.getLogger("memmesh.http")

_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}


def error_response(
    request: Request, status: int, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error answer in the one error shape, counted in the app's metrics by its code."""
    counted(request, code, status)
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def counted(request: Request, code: str, status: int) -> None:
    """Count one error answer (``memmesh_http_errors_total``) where the app keeps metrics."""
    context = getattr(request.app.state, "memmesh", None)
    if context is not None:
        context.metrics.count_error(code, status)


def json_option(name: str, value: str | bool) -> str:
    """How a fix reads to an HTTP client: the request body field, ``"on_conflict": "update"``."""
    return f'"{name}": {json.dumps(value)}'


HTTP_OPERATIONS = {
    "session_append": "POST /api/v1/sessions/{session_id}/turns",
    "session_list": "GET /api/v1/sessions",
    "pending_all": "GET /api/v1/pending?status=all",
    "standards_list": "GET /api/v1/namespaces/standards",
    "keys_list": "GET /api/v1/keys",
    "peer_key_create": 'POST /api/v1/keys with "role": "peer"',
    "curator_runs": "GET /api/v1/curator/runs",
    "subscriptions_list": "GET /api/v1/subscriptions",
}
"""The route of each operation an error may point to (:data:`memmesh.errors.OPERATIONS`)."""


def http_operation(operation: str) -> str:
    """How a fix names an operation to an HTTP client: its route."""
    return HTTP_OPERATIONS[operation]


async def memmesh_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MemmeshError)
    counted(request, exc.code, exc.http_status)
    if exc.http_status >= 500:  # the server's own trouble (a full disk, a lost peer): the operator's log says why
        log.warning("%s %s answered %d %s: %s", request.method, request.url.path, exc.http_status, exc.code, exc.message)
    headers = {}
    retry_after = exc.details.get("retry_after")
    if isinstance(retry_after, int | float) and exc.http_status in (429, 503):
        headers["Retry-After"] = retry_after_header(retry_after)
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="memmesh"'
    body = exc.to_dict(json_option, http_operation)
    if exc.http_status == 422 and "errors" not in body["error"]["details"]:
        # Every 422 lists its errors (docs/http.md), whether FastAPI or the core found them:
        # a client handles one shape. The core's message already names the field.
        body["error"]["details"] = {**body["error"]["details"], "errors": [{"loc": [], "message": exc.message, "type": exc.code}]}
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        # FastAPI reads the body before it resolves the caller: a key is checked here first
        refused = await _unauthenticated(request)
        if refused is not None:
            return await memmesh_error(request, refused)
        reason = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "malformed")
        return error_response(request, 400, "invalid_input", f"request body is not valid JSON: {reason}")
    # the handler runs on the event loop: it describes the first few errors and counts the rest
    shown, more = first_listed(errors)
    listed = []
    for err in shown:
        loc = [str(p) for p in err.get("loc", ())]
        message = error_words(err)
        if err.get("type") == "extra_forbidden":
            place = belongs_in(request, loc)
            if place is not None:
                message = f"unknown field here: it belongs in {'.'.join(place)} ({_skeleton(place)})"
        listed.append({"loc": loc, "message": message, "type": err.get("type")})
    summary = "; ".join(f"{'.'.join(e['loc']) or 'request'}: {e['message']}" for e in listed)
    details: dict[str, Any] = {"errors": listed}
    if more:
        summary += f"; and {more} more errors"
        details["more_errors"] = more
    return error_response(request, 422, "invalid_input", summary or "invalid request", details)


def belongs_in(request: Request, loc: list[str]) -> list[str] | None:
    """Where in the request body a field refused as unknown at ``loc`` is accepted, when an
    object beside it takes a field of that name (a recall's top-level ``namespace`` belongs
    in ``filters.namespace``) or an object around it does (``filters.top_k`` belongs in
    ``top_k``). Read off the route's body model, so every route gets it; the work is a walk
    down ``loc`` and one look at each model's fields, whatever the body holds."""
    if len(loc) < 2 or loc[0] != "body":
        return None
    *path, name = loc[1:]
    body = getattr(request.scope.get("route"), "body_field", None)
    model = _model_of(body.field_info.annotation) if body is not None else None
    around: list[type[BaseModel]] = []
    for part in path:
        if model is None:
            return None
        around.append(model)
        field = _fields(model).get(part)
        model = _model_of(field.annotation) if field is not None else None
    if model is None:
        return None
    for field_name, field in _fields(model).items():
        inner = _model_of(field.annotation)
        if inner is not None and name in _fields(inner):
            return [*path, field_name, name]
    for depth in range(len(around) - 1, -1, -1):  # the nearest object around it first
        if name in _fields(around[depth]):
            return [*path[:depth], name]
    return None


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields by the name a request body uses (the alias, if any)."""
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: ``Model`` or ``Model | None`` (not a list of them)."""
    found = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, UnionType) else (annotation,)
    models = [a for a in found if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 and all(a in (models[0], type(None)) for a in found) else None


def _skeleton(place: list[str]) -> str:
    """The JSON shape that puts a field at ``place``: ``{"filters": {"namespace": …}}``."""
    shape = "…"
    for key in reversed(place):
        shape = f"{{{json.dumps(key)}: {shape}}}"
    return shape


UNPARSED_BODY = "There was an error parsing the body"
"""FastAPI's detail for a body json.loads refused without a syntax error (nesting past the
recursion limit, bytes that are not UTF-8): it says nothing about what to fix."""


async def _unauthenticated(request: Request) -> MemmeshError | None:
    """The 401 an API request without a valid key gets before any other answer (deps.key_refusal)."""
    return await key_refusal(request) if request.url.path.startswith("/api/v1") else None


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    refused = await _unauthenticated(request)  # an unknown route or an unreadable body: the key first
    if refused is not None:
        return await memmesh_error(request, refused)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = {404: f"no route {request.url.path}", 405: f"method {request.method} is not allowed on {request.url.path}"}.get(
        exc.status_code, str(exc.detail)
    )
    if exc.status_code == 400 and message == UNPARSED_BODY:  # FastAPI's words when json.loads fails other than on syntax
        message = "the request body could not be read as JSON: send UTF-8 text, nested less than 1000 levels deep"
    return error_response(request, exc.status_code, code, message, headers=dict(exc.headers or {}))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    answer = internal_error("this request's X-Request-ID")
    return error_response(request, answer.http_status, answer.code, answer.message)


class UnexpectedErrors:
    """Answers an unexpected exception with the 500 body *inside* the app's middleware.

    Starlette sends an ``Exception`` handler's answer from its outermost layer and then
    re-raises, so uvicorn closed the client's keep-alive connection after every 500 (and
    the request middleware never saw the answer). Added first, this layer is the innermost
    middleware: the 500 goes out like any other answer and the connection stays usable."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:  # half an answer is out: nothing sound can follow on this connection
                raise
            response = await unexpected_error(Request(scope), exc)
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_middleware(UnexpectedErrors)  # first added = innermost (see the class)
    app.add_exception_handler(MemmeshError, memmesh_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
