"""Browser sessions for the web inspector: who a page request is, and its CSRF token.

Why a server-side table: the session cookie must never carry the API key, and a revoked key
must stop working at the next request. The cookie holds a random 256-bit session id; the
table holds the id of the key it logged in with, which is checked again with
:meth:`Service.authenticate_key_id` on every request, so revocation is immediate and the
rules for open servers, scopes and revoked keys are the service's, not the UI's.

Why a file (``web_sessions.db`` in the data dir, mode 0600) and not this process's memory:
``memmesh serve --workers N`` runs N processes, and uvicorn gives each new connection to
whichever takes it first; a session only one worker knew was lost on the others (the login
form's CSRF check failed, a logged-in page asked to log in again). Every worker of a server
reads the same file. It holds no key and no usable cookie: the session id is kept as its
SHA-256, the key as its id.

An open server (loopback, auth off, no key ever created) still gets a session: it carries
the CSRF token, because any web page the user visits may POST a form to 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from memmesh.errors import AuthError, StorageError
from memmesh.model import Principal
from memmesh.service import Service

COOKIE = "memmesh_ui"
SESSIONS_FILE = "web_sessions.db"
"""The session table's file in the data dir, shared by every worker of one server."""
IDLE_SECONDS = 8 * 3600
"""A session unused this long is forgotten (the user logs in again)."""
TOUCH_SECONDS = 60.0
"""A session's last use is written at most this often (a page view is not a write each time)."""
MAX_SESSIONS = 10_000
"""Bound on the table: the oldest idle session goes first when it is full."""
BUSY_TIMEOUT_MS = 10_000
"""How long a worker waits for another's write to the file before it gives up."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash TEXT PRIMARY KEY,
    key_id TEXT,
    csrf TEXT NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_seen ON web_sessions (last_seen);
"""


@dataclass
class Session:
    """One browser's login: the id of the key it logged in with (None: not logged in)."""

    id: str
    key_id: str | None
    csrf: str
    last_seen: float


def _hashed(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """The session table of one server (all its workers): a SQLite file, opened at first use."""

    def __init__(self, path: Path, *, idle_seconds: float = IDLE_SECONDS, limit: int = MAX_SESSIONS) -> None:
        self.path = path
        self.idle_seconds = idle_seconds
        self.limit = limit
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        """The connection (under ``_lock``); the file is made 0600 before SQLite writes to it.

        A data dir the server cannot write is a 503 naming the file, not a bare 500."""
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
                os.chmod(self.path, 0o600)  # O_CREAT's mode is masked by the umask; this is not
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise StorageError(
                    f"the web inspector cannot open its session file {self.path} ({exc}): "
                    "make the data dir writable by the server, or choose another (MEMMESH_DATA_DIR, data_dir in the config)"
                ) from exc
            self._db = db
        return self._db

    def create(self, key_id: str | None) -> Session:
        """A new session with a fresh id and CSRF token (a login never reuses an old id)."""
        now = time.time()
        session = Session(id=secrets.token_urlsafe(32), key_id=key_id, csrf=secrets.token_urlsafe(32), last_seen=now)
        with self._lock:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM web_sessions WHERE last_seen < ?", (now - self.idle_seconds,))
                (count,) = db.execute("SELECT count(*) FROM web_sessions").fetchone()
                if count >= self.limit:
                    # Anonymous sessions (a login form's CSRF holder) go first: a flood of them
                    # from one client must not log everyone else out.
                    db.execute(
                        "DELETE FROM web_sessions WHERE id_hash IN (SELECT id_hash FROM web_sessions"
                        " ORDER BY key_id IS NOT NULL, last_seen LIMIT ?)",
                        (count - self.limit + 1,),
                    )
                db.execute("INSERT INTO web_sessions VALUES (?, ?, ?, ?)", (_hashed(session.id), key_id, session.csrf, now))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value, or None (unknown, expired or malformed)."""
        if not session_id or len(session_id) > 100:
            return None
        now = time.time()
        with self._lock:
            db = self._open()
            row = db.execute("SELECT key_id, csrf, last_seen FROM web_sessions WHERE id_hash = ?", (_hashed(session_id),)).fetchone()
            if row is None:
                return None
            key_id, csrf, last_seen = row
            if now - last_seen > self.idle_seconds:
                db.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_hashed(session_id),))
                return None
            if now - last_seen > TOUCH_SECONDS:
                db.execute("UPDATE web_sessions SET last_seen = ? WHERE id_hash = ?", (now, _hashed(session_id)))
                last_seen = now
        return Session(id=session_id, key_id=key_id, csrf=csrf, last_seen=last_seen)

    def drop(self, session_id: str | None) -> None:
        """End a session (logout, a revoked key, a login replacing it): on every worker at once."""
        if not session_id:
            return
        with self._lock:
            self._open().execute("DELETE FROM web_sessions WHERE id_hash = ?", (_hashed(session_id),))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    """True when the form's token is this session's (constant-time comparison)."""
    if session is None or not sent:
        return False
    return hmac.compare_digest(session.csrf.encode(), sent.encode())


def principal_for(service: Service, session: Session | None, *, require: bool) -> Principal:
    """The caller a page request acts as, or an AuthError (the page then asks to log in).

    With a session that logged in with a key: that key, checked again now (revoked →
    AuthError). Without one: whatever the service grants a request without a key (the
    local principal on an open server, an AuthError otherwise).
    """
    if session is not None and session.key_id is not None:
        return service.authenticate_key_id(session.key_id)
    return service.authenticate(None, require=require)


def check_key(service: Service, key: str) -> Principal:
    """A login attempt: the key must be valid now (not malformed, unknown or revoked)."""
    key = key.strip()
    if not key:
        raise AuthError("enter an API key (memmesh keys create makes one)")
    return service.authenticate(key, require=True)
