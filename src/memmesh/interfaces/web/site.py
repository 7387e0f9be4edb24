"""``create_web_app``: the inspector's Starlette app, its routes assembled from :mod:`.pages`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from memmesh.config import Settings
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
    return Starlette(routes=routes)
