"""What every /api/v1 route depends on: the server context and the calling Principal.

Authentication itself is a service call (:meth:`Service.authenticate`), so the rules for
open servers, revoked keys and required keys are the same for every face; this module
only reads the header and applies the per-key request rate.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from memmesh.access import split_key
from memmesh.config import Settings
from memmesh.errors import AuthError, RateLimitedError
from memmesh.interfaces.http.metrics import Metrics
from memmesh.limits import RateLimiter, retry_after_header
from memmesh.model import Principal
from memmesh.service import Service


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


def rate_key(token: str | None, request: Request) -> str:
    """Requests are counted per API key, or per client address when no key is sent."""
    if token is None:
        return "addr:" + (request.client.host if request.client else "-")
    parts = split_key(token)
    return "key:" + (parts[0] if parts else hashlib.sha256(token.encode()).hexdigest()[:16])


async def caller(request: Request) -> Principal:
    """Rate-limit, then authenticate: the Principal every service call is made as."""
    ctx = server(request)
    token = bearer_token(request.headers.get("authorization"))
    wait = ctx.limiter.check(rate_key(token, request), time.monotonic())
    if wait > 0:
        raise RateLimitedError(
            f"more than {ctx.limiter.per_minute} requests a minute for this key (limits.rate_limit_per_minute)",
            details={"retry_after": int(retry_after_header(wait))},
        )
    return ctx.service.authenticate(token, require=ctx.require_auth)


async def service(request: Request) -> Service:
    return server(request).service


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
