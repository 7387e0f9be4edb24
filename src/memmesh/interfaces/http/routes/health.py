"""Liveness, readiness and Prometheus metrics, outside /api/v1: the first two open on any bind and
revealing nothing about the store; metrics open on loopback only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from memmesh.errors import AuthError, MemmeshError
from memmesh.health import cached_health, public_view, status_view
from memmesh.interfaces.http.bus_metrics import bus_metrics
from memmesh.interfaces.http.deps import Svc, bearer_token, caller, json_response, server
from memmesh.interfaces.http.schemas import ErrorBody, Health, Ready
from memmesh.model import LOCAL_PRINCIPAL, Principal

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Response:
    """The process is up and serving requests."""
    return json_response(Health())


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness",
    responses={503: {"model": Ready, "description": "The store cannot be reached (the report names it)"}},
)
def readyz(request: Request, service: Svc) -> Response:
    """Every component's health (store, writes, vector index, embedder, peers, outbox, workers,
    bus, audit chain): ``ok``, ``degraded`` with the component named and why, or ``down`` when
    the store cannot be reached, the only case answered 503 (a node with a degraded
    embedder, unreachable peers or a full disk still serves reads).

    Open to anyone, so it says only that: never the store's location (it may carry a
    password), no secrets, nor any count of what the store holds. An anonymous caller sees
    statuses only; a store admin's key (or an open loopback server) also gets the reason of each component
    that is not ok.
    The report is probed at most once a second whatever the request rate."""
    report = cached_health(service)
    ready = Ready(**(public_view(report) if _sees_reasons(request) else status_view(report)))
    store = report["components"]["store"]
    if "schema_version" in store:
        ready.schema_version = store["schema_version"]
    if service.mesh is not None and "peers" in report["components"]["peers"]:
        ready.peers, ready.peers_up = report["components"]["peers"]["peers"], report["components"]["peers"]["up"]
    return Response(
        content=ready.model_dump_json(exclude_none=True),  # no mesh: no peer fields
        media_type="application/json",
        status_code=503 if report["status"] == "down" else 200,
    )


def _sees_reasons(request: Request) -> bool:
    """A store admin's key, or a loopback server that needs no key, sees why a component is
    not ok. With the store down no key can be checked: a loopback bind that does not force
    keys still shows the reasons then (only this machine can ask; secrets are scrubbed),
    since that is when an operator needs them most."""
    try:
        who: Principal = caller(request)
    except AuthError:  # no key, a wrong one: the anonymous view
        return False
    except MemmeshError:  # the store is down: keys cannot be checked
        ctx = server(request)
        return bool(ctx.open_metrics and not ctx.require_auth)
    return who.role == "admin" and who.prefixes() is None


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"model": ErrorBody, "description": "API key needed (keys required, or a non-loopback bind)"},
    },
)
def metrics(request: Request, service: Svc) -> Response:
    """Request counts and latencies per route and status, error answers by code (`memmesh_http_errors_total`), recall latency, store size.

    Open on a loopback bind while the store needs no keys; otherwise (any other address, keys
    created, --require-auth) it needs a valid API key like /api/v1, and the memory counts are
    those of the key's namespaces (as ``/api/v1/stats``).
    """
    ctx = server(request)
    token = bearer_token(request.headers.get("authorization"))
    truly_open = ctx.open_metrics and not ctx.require_auth and not service.keys_required()
    # Only a server no key was ever needed for serves it anonymously; once keys are required
    # (created, even if all revoked since, or --require-auth) it needs one like /api/v1.
    who = LOCAL_PRINCIPAL if truly_open and token is None else service.authenticate(token, require=True)
    cluster = None
    if service.mesh is not None and who.role == "admin" and who.prefixes() is None:
        cluster = service.replica.status(principal=who)
    body = ctx.metrics.render(service.stats(principal=who), cluster) + bus_metrics(service, who)
    return Response(content=body, media_type="text/plain; version=0.0.4; charset=utf-8")
