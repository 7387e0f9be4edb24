"""Remembering conversations over HTTP: store the turns now, extract the facts in the background."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import Field

from memmesh.extraction.core import JOB_ID_RE, MAX_MESSAGES, MAX_NAME_CHARS, ExtractionJob, RememberResult
from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import Body
from memmesh.model import MAX_AGENT_ID_CHARS, NON_BLANK_PATTERN, NamespaceText
from memmesh.sessions.core import SESSION_ID_RE

router = APIRouter(prefix="/api/v1/remember", tags=["sessions"], responses=ERRORS)


class MessageIn(Body):
    """One message of the conversation (the service checks the same rules for every face)."""

    role: str = Field("user", pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="user, assistant, system, tool …")
    content: str = Field(min_length=1, pattern=NON_BLANK_PATTERN, description="the text of the turn")
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS, pattern=NON_BLANK_PATTERN, description="the speaker")


class RememberRequest(Body):
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_MESSAGES, description="the conversation, in order")
    session_id: str | None = Field(
        None, pattern=rf"^{SESSION_ID_RE.pattern}$", description="session to append the turns to (default: a new session)"
    )
    namespace: NamespaceText | None = Field(None, description="root the session and its facts live under (default sessions.namespace)")
    infer: bool = Field(True, description="extract facts after the turns are stored (false: store the turns only)")
    agent_id: str | None = Field(None, max_length=MAX_AGENT_ID_CHARS)


JobId = Annotated[str, Path(pattern=rf"^{JOB_ID_RE.pattern}$", description="the job_id POST /api/v1/remember returned")]


@router.post("", status_code=201, response_model=RememberResult, summary="Remember a conversation")
def remember(body: RememberRequest, service: Svc, who: Caller) -> Response:
    """Store the messages as session turns (one atomic batch, committed before the answer:
    201), then extract facts in the background: ``status`` is ``queued`` with a ``job_id``
    to poll at ``GET /api/v1/remember/jobs/{job_id}`` (``stored`` and no job when ``infer``
    is false). 202 stays what it is on every route: a write queued for approval."""
    result = service.extraction.remember(
        [m.model_dump(exclude_none=True) for m in body.messages],
        session_id=body.session_id,
        namespace=body.namespace,
        infer=body.infer,
        agent_id=body.agent_id,
        background=True,
        principal=who,
    )
    return json_response(result, 201)


@router.get("/jobs/{job_id}", response_model=ExtractionJob, summary="Status of a background extraction")
def job(job_id: JobId, service: Svc, who: Caller) -> Response:
    """queued, running, done (with the report: extracted, merged, fallback, failed with reasons) or failed."""
    return json_response(service.extraction.job(job_id, principal=who))
