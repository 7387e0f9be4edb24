"""``create_web_app``: the inspector's Starlette app, its routes assembled from :mod:`.pages`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from memmesh.config import Settings
from memmesh.errors import MemmeshError, NotFoundError
from memmesh.interfaces.web.app import HERE, PREFIX, WebApp
from memmesh.interfaces.web.pages import routes as page_routes
from memmesh.interfaces.web.samples import Sampler
from memmesh.limits import RateLimiter
from memmesh.service import Service


def create_web_app(
    service: Service,
    settings: Settings,
    *,
    require_auth: bool,
    secure: bool = False,
    sampler: Sampler | None = None,
    limiter: RateLimiter | None = None,
) -> Starlette:
    """The ASGI app the HTTP face mounts at ``/ui``.

    ``require_auth`` is the server's own rule (``--require-auth`` or a non-loopback bind); the
    service adds "a key was ever created". ``secure`` marks the cookie ``Secure`` (TLS).
    ``sampler`` keeps the metrics page's time series (started with the server); ``limiter``
    is the server's request rate, which login attempts count against.
    """
    web = WebApp(service, settings, require_auth=require_auth, secure=secure, sampler=sampler, limiter=limiter)
    routes = [
        Route("/", lambda request: RedirectResponse(f"{PREFIX}/memories", status_code=303)),
        Route("/login", web.login, methods=["GET", "POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        *page_routes(web),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def not_found(request: Request, _exc: Exception) -> Response:
        """An unknown /ui address gets the inspector's page with a way back, not a bare
        "Not Found" (a mistyped or stale link is the usual cause)."""
        missing = NotFoundError(f"no inspector page at {request.url.path}: the pages are listed at the top, or start at {PREFIX}/memories")
        return web.error(missing, None, None, "")

    async def failed(_request: Request, exc: Exception) -> Response:
        """A memmesh error raised before a page's own handling (the session file cannot be
        opened): the error page with the API's status, not a bare 500."""
        assert isinstance(exc, MemmeshError)
        return web.error(exc, None, None, "")

    return Starlette(routes=routes, exception_handlers={404: not_found, MemmeshError: failed})
