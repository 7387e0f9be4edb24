"""Hiding secrets in what memmesh prints: URLs with passwords, values read from secret files.

One function per kind of secret, used by every place that shows a URL (doctor, /readyz,
errors, logs), so a password in ``postgresql://user:pw@host/db`` or ``?password=pw`` is
never echoed back, whichever face reports it.
"""

from __future__ import annotations

import re

_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:password|passwd|pwd|sslpassword)=)[^&#]*")


def redact_url(url: str) -> str:
    """``scheme://user:***@host/...``: the password (userinfo or query parameter) replaced by ``***``.

    The authority ends at the first ``/``, ``?`` or ``#`` (which a password must
    percent-encode) and the userinfo at the *last* ``@`` in it, so a password holding an
    unescaped ``@`` is hidden whole rather than half shown.
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if sep:
        hits = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
        end = min(hits) if hits else len(rest)
        userinfo, at, host = rest[:end].rpartition("@")
        if at and ":" in userinfo:
            text = f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}{rest[end:]}"
    return _QUERY_PASSWORD.sub(r"\1***", text)


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with each (non-trivial) secret value replaced by ``***``: for messages that
    quote what a remote server said, which may echo the key it was sent."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


__all__ = ["redact_url", "scrub"]
