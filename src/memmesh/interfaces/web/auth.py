"""Browser sessions for the web inspector: who a page request is, and its CSRF token.

Why a server-side map: the session cookie must never carry the API key, and a revoked key
must stop working at the next request. The cookie holds a random 256-bit session id; the
map (in this process only, bounded, idle sessions expire) holds the key, which is checked
again with :meth:`Service.authenticate` on every request, so revocation is immediate and
the rules for open servers, scopes and revoked keys are the service's, not the UI's.

An open server (loopback, auth off, no key ever created) still gets a session: it carries
the CSRF token, because any web page the user visits may POST a form to 127.0.0.1.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from memmesh.errors import AuthError
from memmesh.model import Principal
from memmesh.service import Service

COOKIE = "memmesh_ui"
IDLE_SECONDS = 8 * 3600
"""A session unused this long is forgotten (the user logs in again)."""
MAX_SESSIONS = 10_000
"""Bound on the map: the oldest idle session goes first when it is full."""


@dataclass
class Session:
    """One browser's login: the key it authenticated with (None on an open server)."""

    id: str
    key: str | None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_seen: float = field(default_factory=time.monotonic)


class Sessions:
    """The session map of one web app (one server process)."""

    def __init__(self, *, idle_seconds: float = IDLE_SECONDS, limit: int = MAX_SESSIONS) -> None:
        self._items: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.idle_seconds = idle_seconds
        self.limit = limit

    def create(self, key: str | None) -> Session:
        """A new session with a fresh id and CSRF token (a login never reuses an old id)."""
        session = Session(id=secrets.token_urlsafe(32), key=key)
        with self._lock:
            self._expire(time.monotonic())
            if len(self._items) >= self.limit:
                # Anonymous sessions (a login form's CSRF holder) go first: a flood of them
                # from one client must not log everyone else out.
                oldest = min(self._items.values(), key=lambda s: (s.key is not None, s.last_seen))
                del self._items[oldest.id]
            self._items[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value, or None (unknown, expired or malformed)."""
        if not session_id or len(session_id) > 100:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._items.get(session_id)
            if session is None or now - session.last_seen > self.idle_seconds:
                self._items.pop(session_id, None)
                return None
            session.last_seen = now
            return session

    def drop(self, session_id: str | None) -> None:
        with self._lock:
            self._items.pop(session_id or "", None)

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._items.items() if now - s.last_seen > self.idle_seconds]:
            del self._items[sid]


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    """True when the form's token is this session's (constant-time comparison)."""
    if session is None or not sent:
        return False
    return hmac.compare_digest(session.csrf.encode(), sent.encode())


def principal_for(service: Service, session: Session | None, *, require: bool) -> Principal:
    """The caller a page request acts as, or an AuthError (the page then asks to log in).

    With a session that holds a key: that key, checked again now (revoked → AuthError).
    Without one: whatever the service grants a request without a key (the local principal
    on an open server, an AuthError otherwise).
    """
    key = session.key if session is not None else None
    return service.authenticate(key, require=require)


def check_key(service: Service, key: str) -> Principal:
    """A login attempt: the key must be valid now (not malformed, unknown or revoked)."""
    key = key.strip()
    if not key:
        raise AuthError("enter an API key (memmesh keys create makes one)")
    return service.authenticate(key, require=True)
