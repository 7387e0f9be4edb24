"""Links between memories."""

from __future__ import annotations

from fastapi import APIRouter, Response

from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import LinkRequest
from memmesh.model import Link

router = APIRouter(prefix="/api/v1", tags=["links"], responses=ERRORS)


@router.post("/links", status_code=201, response_model=Link, summary="Link two memories")
def create_link(body: LinkRequest, service: Svc, who: Caller) -> Response:
    """A typed, directed link; linking the same pair with the same relation again refreshes it."""
    created = service.link(
        body.source_id, body.target_id, body.relation, valid_from=body.valid_from, valid_until=body.valid_until, principal=who
    )
    return json_response(created, 201)
