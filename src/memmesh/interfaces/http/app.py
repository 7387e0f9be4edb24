"""``create_app(service, settings)``: memmesh over HTTP, a thin face on the service.

Each route parses its input (pydantic bodies with ``extra="forbid"``, typed query
parameters), makes one service call as the caller's Principal and renders the model the
service returned. Errors are translated once, in :mod:`.handlers`; the request middleware
adds request ids, the body limit, metrics and the access log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request

from memmesh.config import Settings
from memmesh.governance.recovery import StartupRedrive
from memmesh.housekeeping import GcSchedule, ServingMark
from memmesh.interfaces.http import handlers
from memmesh.interfaces.http.causality import CausalityMiddleware
from memmesh.interfaces.http.deps import ServerContext, caller, key_refusal, refuse_unknown_query
from memmesh.interfaces.http.metrics import Metrics
from memmesh.interfaces.http.middleware import RequestMiddleware
from memmesh.interfaces.http.routes import admin, audit, health, links, memories, recall, sync, transfer
from memmesh.interfaces.http.routes import bus as bus_routes
from memmesh.interfaces.http.routes import curator as curator_routes
from memmesh.interfaces.http.routes import extraction as extraction_routes
from memmesh.interfaces.http.routes import governance as governance_routes
from memmesh.interfaces.http.routes import sessions as session_routes
from memmesh.interfaces.http.routes import subscriptions as subscription_routes
from memmesh.interfaces.http.schemas import document_limits
from memmesh.interfaces.http.stopping import LIFESPAN_KEY
from memmesh.interfaces.mcp.mount import McpMount
from memmesh.interfaces.web import create_web_app
from memmesh.interfaces.web.samples import Sampler
from memmesh.limits import RateLimiter
from memmesh.service import Service
from memmesh.wording import count

DESCRIPTION = """Long-term memory for AI agents over HTTP.

Authenticate with `Authorization: Bearer <key>` (keys come from `memmesh keys create`). A server
bound to loopback whose store never had a key is open; once any key was created (even if every
key is revoked since), on any other bind, or with `--require-auth`, every `/api/v1` and `/mcp`
request needs one. Every error is `{"error": {"code", "message", "details"}}`.
"""

TAGS = [
    {"name": "memories", "description": "Store, read, change and delete memories"},
    {"name": "recall", "description": "Find memories by meaning and keywords"},
    {"name": "links", "description": "Typed links between memories"},
    {"name": "admin", "description": "Statistics and namespaces"},
    {"name": "agents", "description": "Registered agent identities (admin)"},
    {"name": "keys", "description": "API keys (admin)"},
    {"name": "health", "description": "Liveness, readiness, metrics"},
    {"name": "sync", "description": "Replication between peer nodes (peer keys)"},
    {"name": "bus", "description": "Message bus between agents: conversations, unread/ack, task leases"},
    {"name": "sessions", "description": "Session turns as memories; rehydration within a token budget"},
    {"name": "audit", "description": "The tamper-evident audit log (store-wide admin keys)"},
    {"name": "governance", "description": "Namespace standards and pending actions awaiting approval"},
    {"name": "subscriptions", "description": "Webhook subscriptions to namespace changes; agent inboxes (notify)"},
    {"name": "curator", "description": "Reversible housekeeping runs: duplicates, contradictions, tags, forgetting, priority"},
]


def keys_required(settings: Settings) -> bool:
    """Whether this server needs a key on every /api/v1 and /mcp request from the start.

    ``--require-auth``, or any bind but loopback (unless ``--insecure`` explicitly opens one
    to the network). Independently, the service closes any server for good once a key was
    ever created in its store, so revoking the last key never opens it (issue 12).
    """
    from memmesh.interfaces.http.server import is_loopback

    return settings.auth.require_auth or not (is_loopback(settings.server.host) or settings.auth.insecure)


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """Serve an OpenAPI document that carries this server's configured limits (see schemas.py)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            limits = settings.limits
            app.openapi_schema = document_limits(build(), max_page_size=limits.max_page_size, max_content_bytes=limits.max_content_bytes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(service: Service, settings: Settings, *, open_metrics: bool | None = None, owns_service: bool = False) -> FastAPI:
    """The FastAPI app serving ``service``.

    ``open_metrics`` leaves /metrics without auth (default: only on a loopback bind);
    ``owns_service`` closes the store when the app shuts down (for app factories that built it).
    """
    from memmesh import __version__
    from memmesh.interfaces.http.server import is_loopback

    # /mcp: same auth; SDK loaded on first use. Stateless with several workers: an MCP session
    # kept in one worker's memory is unknown to the others (404 "Session not found").
    mcp = McpMount(service, settings, caller, host=settings.server.host, stateless=settings.server.workers > 1)
    metrics = Metrics()
    sampler = Sampler(service, metrics.registry)  # the web inspector's metrics charts (/ui/metrics)

    gc_schedule = GcSchedule(service, settings.gc.interval_secs)
    serving = ServingMark(service.store)
    redrive = StartupRedrive(service.governance.redrive_at_start, log=logging.getLogger("memmesh.governance"))

    def stopping() -> None:
        """uvicorn began its graceful shutdown (stopping.py): long-polls answer now, writes finish."""
        ended = service.end_waits()
        if ended is not None:  # once per shutdown, however many connections pass it on
            polls = count(ended, "waiting long-poll")
            logging.getLogger("memmesh.serve").info(
                f"stopping: answered {polls} at once, as empty polls; requests in flight finish first, then the store closes"
            )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        serving.start()  # `cluster resync` refuses to run beside a server of this store
        if service.mesh is not None:
            service.mesh.start()  # pushers and catch-up run while the server serves
        service.audit.start()  # signed checkpoints every second while serving, and at shutdown
        service.subscriptions.start()  # webhook deliveries from the durable queue
        service.curator.start()  # [curator] interval_secs: scheduled runs, one at a time per store
        gc_schedule.start()  # [gc] interval_secs: scheduled gc, servers on one store take turns
        redrive.start()  # approved actions a crash left unapplied (governance/recovery.py)
        service.engine.warm_up()  # the vector index loads now, not in the first recall
        service.extraction.start()  # fail the extraction jobs a crashed server left running
        sampler.start()
        try:
            async with mcp.lifespan():
                yield {LIFESPAN_KEY: stopping}  # the lifespan state every connection's protocol sees
        finally:
            if service.mesh is not None:
                service.mesh.stop()
            service.subscriptions.stop()
            service.audit.stop()
            service.curator.stop()
            gc_schedule.stop()
            redrive.stop()
            service.extraction.close()  # running extractions finish while the store is still open
            sampler.stop()
            serving.stop()
        if owns_service:
            service.close()  # queued embeddings first, then the store

    app = FastAPI(title="memmesh", version=__version__, description=DESCRIPTION, openapi_tags=TAGS, lifespan=lifespan)
    app.state.memmesh = ServerContext(
        service=service,
        settings=settings,
        metrics=metrics,
        limiter=RateLimiter(settings.limits.rate_limit_per_minute),
        require_auth=keys_required(settings),
        open_metrics=is_loopback(settings.server.host) if open_metrics is None else open_metrics,
    )
    handlers.install(app)
    _document_limits(app, settings)
    lenient = (health, sync)  # probes may add a cache-buster; peers of another version their own parameters
    api = [memories, recall, links, admin, health, sync, transfer, bus_routes, session_routes, audit]
    for module in [*api, governance_routes, subscription_routes, curator_routes, extraction_routes]:
        strict = [] if module in lenient else [Depends(refuse_unknown_query)]  # a misspelt filter is an error
        app.include_router(module.router, dependencies=strict)
    # An ASGI app as a route endpoint (Starlette serves it as is); the stubs type only request handlers.
    app.add_route("/mcp", mcp, include_in_schema=False)  # type: ignore[arg-type]
    secure = settings.tls.cert_file is not None
    web = create_web_app(
        service, settings, require_auth=keys_required(settings), secure=secure, sampler=sampler, limiter=app.state.memmesh.limiter
    )
    app.mount("/ui", web)
    app.add_middleware(CausalityMiddleware, service=service, metrics=metrics)  # inside RequestMiddleware: after the body limit and guard
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        max_body_bytes=settings.limits.max_body_bytes,
        loopback=is_loopback(settings.server.host),
        allowed_hosts=settings.server.allowed_hosts,
        allowed_origins=settings.server.allowed_origins,
        key_refusal=lambda scope: key_refusal(Request(scope)),
    )
    return app
