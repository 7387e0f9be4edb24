"""HTTP routes, one module per concern; each route makes one service call as the caller."""

from __future__ import annotations

from typing import Any

from memmesh.interfaces.http.schemas import ErrorBody

_DESCRIPTIONS = {
    400: "Malformed request (e.g. the body is not JSON)",
    401: "Missing, wrong or revoked API key",
    403: "The key's role or namespaces do not allow this",
    404: "No such memory (or not visible to this key)",
    409: "Conflicts with stored state (same title, same id with other content)",
    413: "Request body or content over the configured limit",
    422: "A field is invalid or unknown",
    429: "Rate limit or daily write quota exceeded; see Retry-After",
    503: "Store or dependency unavailable; retry later",
}

ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody, "description": text} for status, text in _DESCRIPTIONS.items()}
"""Error responses documented on every /api/v1 route, all in the one error shape (docs/http.md, "Errors")."""
