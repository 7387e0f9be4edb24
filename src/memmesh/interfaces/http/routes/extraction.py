"""Remembering conversations over HTTP: store the turns now, extract the facts in the background."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field

from memmesh.extraction.core import ExtractionJob, RememberResult
from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import Body

router = APIRouter(prefix="/api/v1/remember", tags=["sessions"], responses=ERRORS)


class RememberRequest(Body):
    messages: list[dict[str, Any]] = Field(description='the conversation: [{"role": "user", "content": "...", "name": "Ana"}, ...]')
    session_id: str | None = Field(None, description="session to append the turns to (default: a new session)")
    namespace: str | None = Field(None, description="root the session and its facts live under (default sessions.namespace)")
    infer: bool = Field(True, description="extract facts after the turns are stored (false: store the turns only)")
    agent_id: str | None = None


@router.post("", status_code=201, response_model=RememberResult, summary="Remember a conversation")
def remember(body: RememberRequest, service: Svc, who: Caller) -> Response:
    """Store the messages as session turns (one atomic batch, committed before the answer:
    201), then extract facts in the background: ``status`` is ``queued`` with a ``job_id``
    to poll at ``GET /api/v1/remember/jobs/{job_id}`` (``stored`` and no job when ``infer``
    is false). 202 stays what it is on every route: a write queued for approval."""
    result = service.extraction.remember(
        body.messages,
        session_id=body.session_id,
        namespace=body.namespace,
        infer=body.infer,
        agent_id=body.agent_id,
        background=True,
        principal=who,
    )
    return json_response(result, 201)


@router.get("/jobs/{job_id}", response_model=ExtractionJob, summary="Status of a background extraction")
def job(job_id: str, service: Svc, who: Caller) -> Response:
    """queued, running, done (with the report: extracted, merged, fallback, failed with reasons) or failed."""
    return json_response(service.extraction.job(job_id, principal=who))
