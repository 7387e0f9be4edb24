"""The one way memmesh hides secrets before printing or logging: URLs, and echoed secret values.

Every message, report, ``doctor`` line and readiness answer that shows a URL passes it
through :func:`redact_url`, so there is one rule to get right: the password of the
authority part (``scheme://user:password@host``), secret-named query parameters
(``?password=…``, ``&sslpassword=…``, ``token``, …) and ``password=`` in a libpq
``key=value`` connection string all become ``***``. This module imports nothing of
memmesh, so the stores, the importers and the configuration can all use it.

:func:`scrub` hides known secret values (an API key) in text a remote server sent back.
"""

from __future__ import annotations

import re

REDACTED = "***"
SECRET_PARAMS = frozenset(
    {"password", "sslpassword", "pass", "passwd", "pwd", "secret", "token", "access_token", "api_key", "apikey", "client_secret"}
)
_CONNINFO_SECRET = re.compile(r"(?i)\b(password|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def redact_url(url: str) -> str:
    """``url`` with every password or token in it replaced by ``***``; anything else as is."""
    if not isinstance(url, str):
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _CONNINFO_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", url)
    head, qmark, query = _redact_authority(rest).partition("?")
    return f"{scheme}://{head}{qmark}{_redact_query(query)}"


def _redact_authority(head: str) -> str:
    """``user:secret@host/path`` → ``user:***@host/path``; the last ``@`` ends the user info,
    so a password holding ``@``, ``/`` or ``?`` is hidden whole (when in doubt this hides
    too much, never too little). A path with no authority (``sqlite:///file``) is left alone."""
    if head.startswith("/"):
        return head
    userinfo, at, hostpart = head.rpartition("@")
    if not at or ":" not in userinfo:
        return head
    user = userinfo.split(":", 1)[0]
    return f"{user}:{REDACTED}@{hostpart}"


def _redact_query(query: str) -> str:
    if not query:
        return query
    fragment_sep = "#" if "#" in query else ""
    query, _, fragment = query.partition("#")
    parts = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and name.strip().lower() in SECRET_PARAMS else pair)
    return "&".join(parts) + (fragment_sep + fragment if fragment_sep else "")


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with each (non-trivial) secret value replaced by ``***``: for messages that
    quote what a remote server said, which may echo the key it was sent."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


__all__ = ["redact_url", "scrub"]
