"""``GET /api/v1/audit``: the audit log, for admin keys that cover every namespace."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from memmesh.audit.log import AuditPage
from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get("/audit", response_model=AuditPage, tags=["audit"], summary="Read the audit log")
def audit_entries(
    service: Svc,
    who: Caller,
    since: Annotated[int, Query(ge=0, description="first entry index to return")] = 0,
    limit: Annotated[int, Query(ge=1, description="most entries to return (at most limits.max_page_size)")] = 100,
) -> Response:
    """Entries oldest first, each with its actor, action, target, detail digest and chain hash;
    ``next_since`` pages on. Store-wide admin keys only (the log names every namespace)."""
    return json_response(service.audit.entries(principal=who, since=since, limit=limit))
