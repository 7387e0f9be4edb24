"""What every /api/v1 route depends on: the server context and the calling Principal.

Authentication itself is a service call (:meth:`Service.authenticate`), so the rules for
open servers, revoked keys and required keys are the same for every face; this module
only reads the header and applies the request rate (per key, or per client address for
requests without a valid key).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from starlette.types import Receive

from memmesh.config import Settings
from memmesh.errors import AuthError, MemmeshError, RateLimitedError
from memmesh.interfaces.http.metrics import Metrics
from memmesh.limits import RateLimiter, retry_after_header
from memmesh.model import Principal
from memmesh.service import Service
from memmesh.waits import Abandoned


@dataclass
class ServerContext:
    """Everything a request handler may use, built once per app by ``create_app``."""

    service: Service
    settings: Settings
    metrics: Metrics
    limiter: RateLimiter
    require_auth: bool
    open_metrics: bool = True


def server(request: Request) -> ServerContext:
    return request.app.state.memmesh  # type: ignore[no-any-return]


def bearer_token(header: str | None) -> str | None:
    """The key from ``Authorization: Bearer <key>``; any other scheme is a 401."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("the Authorization header must be 'Bearer <key>'")
    return value.strip()


def client_address(request: Request) -> str:
    return "addr:" + (request.client.host if request.client else "-")


def charge(ctx: ServerContext, bucket: str) -> None:
    """Take one request from ``bucket``'s rate; over it, a 429 with Retry-After."""
    wait = ctx.limiter.check(bucket, time.monotonic())
    if wait > 0:
        raise RateLimitedError(
            f"more than {ctx.limiter.per_minute} requests a minute for this key or address (limits.rate_limit_per_minute)",
            details={"retry_after": int(retry_after_header(wait))},
        )


def caller(request: Request) -> Principal:
    """Authenticate, then rate-limit: the Principal every service call is made as.

    A plain ``def`` so FastAPI runs it on the thread pool: checking a key queries the store,
    which must never block the event loop. Requests are counted per valid key; requests
    without a key, or with a malformed, wrong or revoked one, are counted per client address,
    so a flood of made-up keys is limited like any other flood from that address (issue 12).
    """
    ctx = server(request)
    try:
        token = bearer_token(request.headers.get("authorization"))
        principal = ctx.service.authenticate(token, require=ctx.require_auth)
    except AuthError:
        charge(ctx, client_address(request))
        raise
    charge(ctx, f"key:{principal.key_id}" if principal.key_id else client_address(request))
    return principal


def refused_caller(request: Request) -> MemmeshError | None:
    """The 401 (or 429) the request's key gets, or None when it is accepted (see :func:`caller`)."""
    try:
        caller(request)
    except (AuthError, RateLimitedError) as exc:
        return exc
    return None


async def key_refusal(request: Request) -> MemmeshError | None:
    """:func:`refused_caller` on the thread pool (it queries the store), for the places that
    answer before any route runs: the request middleware's checks (content type, body size,
    Origin, Host) and the handlers of bodies FastAPI could not parse and of unknown routes.
    They ask it only when they are about to refuse, so a request without a valid key on a
    server that needs one is told 401 first, whatever else is wrong with it, and the
    answers of accepted requests cost nothing more."""
    return await anyio.to_thread.run_sync(refused_caller, request)


async def service(request: Request) -> Service:
    return server(request).service


T = TypeVar("T")


async def while_connected(request: Request, call: Callable[[Abandoned | None], T], waits: bool) -> T:
    """Run a core call that may wait (a long-poll) on the thread pool, telling the core when
    the client goes away: its ``Abandoned`` flag is set the moment the connection closes,
    so the wait ends and frees its slot and thread instead of serving nobody until its
    timeout. What a gone caller means (no task taken, nothing delivered) is the core's rule.

    The watch is one task parked on the connection's next ASGI message (the server sends
    ``http.disconnect`` when the socket closes): no polling, and none at all for a call
    that does not wait."""
    if not waits:
        return await anyio.to_thread.run_sync(call, None)
    abandoned = Abandoned()
    watch = asyncio.ensure_future(_until_disconnect(request.receive, abandoned))
    try:
        return await anyio.to_thread.run_sync(call, abandoned)
    finally:
        watch.cancel()


async def _until_disconnect(receive: Receive, abandoned: Abandoned) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # the request body (already read by the route) or an empty wake-up
    abandoned.set()


def _query_names(dependant: Dependant) -> set[str]:
    """Every query parameter a route reads, its own and its dependencies' (``Filters``)."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def refuse_unknown_query(request: Request) -> None:
    """A query parameter the route does not read is an error, as an unknown body field is.
    FastAPI ignores it: ``DELETE /api/v1/memories?namespace=team&tgs=old`` (for ``tags``)
    deleted every memory of ``team``, and a misspelt ``namspace`` listed the whole store.
    Raised as FastAPI's own validation error, so the 422 reads like a body's (``query.tgs:
    unknown field``); the route's names are read off its dependant, only when the request has
    query parameters (most have none)."""
    if not request.query_params:
        return
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in known]
    if unknown:
        refused = await key_refusal(request)  # no valid key: 401 first, as for every other refusal
        if refused is not None:
            raise refused
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", name), "msg": "unknown field"} for name in unknown])


Caller = Annotated[Principal, Depends(caller)]
Svc = Annotated[Service, Depends(service)]


def json_response(value: Any, status_code: int = 200) -> Response:
    """Serialise a model (or a list of them) once, straight to bytes.

    Routes still declare ``response_model`` for the OpenAPI document; returning a ready
    Response skips FastAPI's second validation pass over a value the service just built.
    """
    if isinstance(value, list):
        body = b"[" + b",".join(item.model_dump_json().encode() for item in value) + b"]"
    else:
        body = value.model_dump_json().encode()
    return Response(content=body, status_code=status_code, media_type="application/json")
