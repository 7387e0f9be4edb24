"""Sessions over HTTP: append turns, rehydrate within a token budget, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import Body
from memmesh.sessions.core import Rehydrated, SessionInfo, Turn

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], responses=ERRORS)


class TurnRequest(Body):
    role: str = Field(
        "user", pattern=r"^\s*[A-Za-z][A-Za-z0-9_-]{0,31}\s*$", description="user, assistant, system, tool … (taken lower-cased)"
    )
    content: str
    agent_id: str | None = None
    namespace: str | None = Field(
        None, description="root the session lives under (default sessions.namespace; needed when you can see the id under several roots)"
    )


class SessionList(BaseModel):
    sessions: list[SessionInfo]


@router.post("/{session_id}/turns", status_code=201, response_model=Turn, summary="Append a turn")
def append(session_id: str, body: TurnRequest, service: Svc, who: Caller) -> Response:
    """Store one turn (a kind=message memory) at the end of the session."""
    turn = service.sessions.append(
        session_id, role=body.role, content=body.content, agent_id=body.agent_id, namespace=body.namespace, principal=who
    )
    return json_response(turn, 201)


@router.get("/{session_id}/rehydrate", response_model=Rehydrated, summary="Context to continue a session")
def rehydrate(
    session_id: str,
    service: Svc,
    who: Caller,
    budget_tokens: Annotated[int, Query(ge=50, le=1_000_000)] = 4000,
    query: Annotated[str | None, Query(description="what comes next: relevant memories are included")] = None,
    namespace: Annotated[str | None, Query(description="the session's root, when you can see the id under several")] = None,
) -> Response:
    found = service.sessions.rehydrate(session_id, budget_tokens=budget_tokens, query=query, namespace=namespace, principal=who)
    return json_response(found)


@router.get("", response_model=SessionList, summary="List sessions")
def list_sessions(service: Svc, who: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    return json_response(SessionList(sessions=service.sessions.list(limit=limit, principal=who)))
