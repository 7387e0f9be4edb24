"""``create_web_app(service, settings, ...)``: the inspector's routes, sessions and rendering.

Each page handler is a small sync function run on the thread pool (service calls query the
store and must not block the event loop). The wrapper around them does what every page
shares, once: read the session cookie, check the CSRF token of a POST before anything runs,
find the caller with the service's own authentication, render a :class:`MemmeshError` as a
page with the same status code the API answers, and redirect after a successful POST.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from memmesh.config import Settings
from memmesh.errors import (
    AuthError,
    ForbiddenError,
    InvalidInputError,
    MemmeshError,
    PendingApprovalError,
    RateLimitedError,
    python_option,
)
from memmesh.interfaces.web.auth import COOKIE, SESSIONS_FILE, Session, Sessions, check_key, csrf_ok, principal_for
from memmesh.interfaces.web.samples import Sampler
from memmesh.limits import RateLimiter
from memmesh.model import NamespaceCount, Principal
from memmesh.service import Service

HERE = Path(__file__).resolve().parent
PREFIX = "/ui"
NAV = [
    ("memories", "Memories"),
    ("namespaces", "Namespaces"),
    ("pending", "Pending"),
    ("audit", "Audit"),
    ("curator", "Curator"),
    ("cluster", "Cluster"),
    ("bus", "Bus"),
    ("metrics", "Metrics"),
]
MAX_FORM_FIELDS = 50
COUNTS_TTL_S = 5.0
"""How long the namespace tree's counts are reused (see :meth:`WebApp.namespace_counts`)."""
CSRF_MESSAGE = "this form's CSRF token is missing or stale: reload the page and submit it again"

WEB_OPERATIONS: dict[str, str | None] = {
    "session_append": None,
    "session_list": None,
    "pending_all": f"the Pending page with status all ({PREFIX}/pending?status=all)",
    "standards_list": f"the Namespaces page ({PREFIX}/namespaces)",
    "keys_list": None,
    "peer_key_create": None,
    "curator_runs": f"the Curator page ({PREFIX}/curator)",
    "subscriptions_list": None,
}
"""The page of each operation an error may point to (:data:`memmesh.errors.OPERATIONS`), so an
error page names a page, not a Python call (``None``: the inspector has none; the hint is left out)."""


def web_operation(operation: str) -> str | None:
    """How an error page names an operation that helps: the inspector page that does it."""
    return WEB_OPERATIONS[operation]


@dataclass
class Page:
    """What a handler gets: the caller, the query string, the form (POST) and the path values."""

    principal: Principal
    query: dict[str, str]
    form: dict[str, str]
    params: dict[str, str]
    session: Session


@dataclass
class Rendered:
    """A template to render with its values and status (handlers return this or a Response)."""

    template: str
    values: dict[str, Any] = field(default_factory=dict)
    status: int = 200


Handler = Callable[["WebApp", Page], "Rendered | Response"]


def _flat(pairs: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in list(pairs.items())[:MAX_FORM_FIELDS]}


def _parse(raw: bytes | str, what: str) -> dict[str, str]:
    """A form body or query string as fields, refusing bytes that are not UTF-8.

    Why strict: decoding with replacement would save U+FFFD in place of what was sent (a
    silent change of the user's text); browsers always send this page's forms as UTF-8, so
    only a hand-made request gets this 422, with a message that says what to fix.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return _flat(parse_qs(text, keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError:
        raise InvalidInputError(f"the {what} is not valid UTF-8: send text as UTF-8 (percent-encoded UTF-8 in URLs and forms)") from None


class WebApp:
    """The inspector of one server: its service, its session map and its templates."""

    def __init__(
        self,
        service: Service,
        settings: Settings,
        *,
        require_auth: bool,
        secure: bool,
        sampler: Sampler | None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.service = service
        self.limiter = limiter
        self.settings = settings
        self.require_auth = require_auth
        self.secure = secure
        self.sessions = Sessions(settings.data_dir / SESSIONS_FILE)
        self.sampler = sampler
        self._templates: Any = None
        self._counts: dict[tuple[str, ...], tuple[float, list[NamespaceCount]]] = {}
        self._counts_lock = threading.Lock()

    def namespace_counts(self, who: Principal) -> list[NamespaceCount]:
        """The caller's namespaces with counts, reused for ``COUNTS_TTL_S`` per scope.

        Why a short cache: counting every namespace is a pass over the memories (about 70 ms
        at 10k on a busy 2-core machine), and the tree is on every list page; the counts a
        scope may see depend only on its namespace patterns, so callers with the same
        patterns share them. The service still decides what the scope may see.
        """
        scope = tuple(sorted(who.namespaces))
        now = time.monotonic()
        with self._counts_lock:
            cached = self._counts.get(scope)
            if cached is not None and now - cached[0] < COUNTS_TTL_S:
                return cached[1]
        counts = self.service.namespaces(principal=who)
        with self._counts_lock:
            if len(self._counts) >= 1000:
                self._counts.clear()
            self._counts[scope] = (now, counts)
        return counts

    # -- rendering ------------------------------------------------------------------------

    @property
    def templates(self) -> Any:
        """The Jinja2 environment, made at the first page: importing jinja2 is not paid by
        every server (or worker) start, only by one that serves the inspector."""
        if self._templates is None:
            import jinja2

            made = jinja2.Environment(
                loader=jinja2.FileSystemLoader(HERE / "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,  # a template typo fails the tests, not silently renders nothing
            )
            made.globals.update(nav=NAV, prefix=PREFIX, quote=quote, urlencode=urlencode)
            self._templates = made
        return self._templates

    def html(self, template: str, values: dict[str, Any], *, status: int = 200, session: Session | None = None) -> HTMLResponse:
        body = self.templates.get_template(template).render(csrf=session.csrf if session else "", **values)
        response = HTMLResponse(body, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        # form-action and base-uri do not fall back to default-src: without them a page could be
        # made to post its CSRF token to another site, or resolve its relative links elsewhere.
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def error(self, error: MemmeshError, session: Session | None, principal: Principal | None, section: str) -> HTMLResponse:
        """A refused or failed request as a page, with the status code the API gives it."""
        values = {
            "error": error,
            "message": error.message_for(python_option, web_operation),
            "principal": principal,
            "section": section,
            "title": error.code.replace("_", " "),
        }
        return self.html("error.html", values, status=error.http_status, session=session)

    async def session_of(self, request: Request) -> Session | None:
        """The request's session (read from the shared file on a worker thread: it may wait
        for another worker's write, which must not stall this worker's event loop)."""
        return await run_in_threadpool(self.sessions.get, request.cookies.get(COOKIE))

    def set_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", secure=self.secure, path=PREFIX)

    # -- the wrapper every page goes through ---------------------------------------------------

    def route(self, path: str, handler: Handler, *, methods: tuple[str, ...] = ("GET",), section: str = "") -> Route:
        async def endpoint(request: Request) -> Response:
            session = await self.session_of(request)
            form: dict[str, str] = {}
            try:
                if request.method == "POST":
                    form = _parse(await request.body(), "form")
                query = _parse(request.url.query, "query string")
            except InvalidInputError as bad:
                return self.error(bad, session, None, section)
            if request.method == "POST" and not csrf_ok(session, form.get("csrf")):
                return self.error(ForbiddenError(CSRF_MESSAGE), session, None, section)
            params = {k: str(v) for k, v in request.path_params.items()}
            return await run_in_threadpool(self._serve, request, handler, session, query, form, params, section)

        return Route(path, endpoint, methods=list(methods))

    def _serve(
        self,
        request: Request,
        handler: Handler,
        session: Session | None,
        query: dict[str, str],
        form: dict[str, str],
        params: dict[str, str],
        section: str,
    ) -> Response:
        fresh = session is None
        if session is None:
            session = self.sessions.create(None)  # holds the CSRF token, even on an open server
        try:
            principal = principal_for(self.service, session, require=self.require_auth)
        except AuthError as refusal:
            response: Response
            if request.method == "GET":
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
            else:
                response = self.error(refusal, session, None, section)
            if session.key_id is not None:
                self.sessions.drop(session.id)  # a revoked or stale key: this session is over
            elif fresh:
                self.set_cookie(response, session)
            return response
        page = Page(principal=principal, query=query, form=form, params=params, session=session)
        try:
            result = handler(self, page)
        except PendingApprovalError as queued:
            values = {"principal": principal, "section": section, "title": "queued for approval", "queued": queued}
            result = Rendered("queued.html", values, status=queued.http_status)
        except MemmeshError as error:
            result = self.error(error, session, principal, section)
        if isinstance(result, Rendered):
            values = {"principal": principal, "section": section, "title": section.title(), **result.values}
            result = self.html(result.template, values, status=result.status, session=session)
        if fresh:
            self.set_cookie(result, session)
        return result

    # -- login / logout (outside the wrapper: they make and end sessions) -------------------------

    async def login(self, request: Request) -> Response:
        session = await self.session_of(request)
        fresh = session is None
        if session is None:
            session = await run_in_threadpool(self.sessions.create, None)
        target = request.query_params.get("next") or f"{PREFIX}/memories"
        if not target.startswith(PREFIX + "/") or ".." in target or "\\" in target or "//" in target:
            target = f"{PREFIX}/memories"  # never redirect off this app after a login
        values: dict[str, Any] = {"principal": None, "section": "login", "title": "Log in", "next": target, "message": None}
        status = 200
        if request.method == "POST":
            try:
                form = _parse(await request.body(), "form")
            except InvalidInputError as bad:
                values["message"] = bad.message
                return self.html("login.html", values, status=bad.http_status, session=session)
            if not csrf_ok(session, form.get("csrf")):
                values["message"] = CSRF_MESSAGE
                return self.html("login.html", values, status=403, session=session)
            try:
                self._charge_login(request)
                who = await run_in_threadpool(check_key, self.service, form.get("key", ""))
            except (AuthError, RateLimitedError) as refused:
                values["message"] = refused.message
                status = refused.http_status
            else:
                made = await run_in_threadpool(self._logged_in, session, who)
                redirect = RedirectResponse(target, status_code=303)
                self.set_cookie(redirect, made)
                return redirect
        response = self.html("login.html", values, status=status, session=session)
        if fresh:
            self.set_cookie(response, session)
        return response

    def _charge_login(self, request: Request) -> None:
        """Login attempts count against the client address's request rate, like API requests
        without a valid key (``limits.rate_limit_per_minute``): guessing keys through the
        form is no faster than through the API."""
        if self.limiter is None:
            return
        wait = self.limiter.check("addr:" + (request.client.host if request.client else "-"), time.monotonic())
        if wait > 0:
            raise RateLimitedError(
                f"too many login attempts from this address; wait {int(wait) + 1} s (limits.rate_limit_per_minute)",
                details={"retry_after": int(wait) + 1},
            )

    def _logged_in(self, anonymous: Session, who: Principal) -> Session:
        """The session of a login: a new id (a planted id never becomes a logged-in one)."""
        self.sessions.drop(anonymous.id)
        return self.sessions.create(who.key_id)

    async def logout(self, request: Request) -> Response:
        session = await self.session_of(request)
        try:
            form = _parse(await request.body(), "form")
        except InvalidInputError as bad:
            return self.error(bad, session, None, "login")
        if not csrf_ok(session, form.get("csrf")):
            return self.error(ForbiddenError(CSRF_MESSAGE), session, None, "login")
        await run_in_threadpool(self.sessions.drop, session.id if session else None)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response
