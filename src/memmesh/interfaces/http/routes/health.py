"""Liveness, readiness and Prometheus metrics; outside /api/v1 and open on any bind."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from memmesh.interfaces.http.deps import Svc, bearer_token, json_response, server
from memmesh.interfaces.http.schemas import ErrorBody, Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Response:
    """The process is up and serving requests."""
    return json_response(Health())


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness",
    responses={503: {"model": ErrorBody, "description": "The store cannot be reached"}},
)
def readyz(service: Svc) -> Response:
    """The store answers a query (503 otherwise)."""
    return json_response(Ready(status="ok", **service.ready()))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"model": ErrorBody, "description": "API key needed (non-loopback bind)"},
    },
)
def metrics(request: Request, service: Svc) -> Response:
    """Request counts and latencies per route and status, recall latency, store size.

    Open on a loopback bind; on any other address it needs a valid API key like /api/v1.
    """
    ctx = server(request)
    if not ctx.open_metrics:
        service.authenticate(bearer_token(request.headers.get("authorization")), require=True)
    body = ctx.metrics.render(service.stats())
    return Response(content=body, media_type="text/plain; version=0.0.4; charset=utf-8")
