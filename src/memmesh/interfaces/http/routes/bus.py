"""The message bus over HTTP: conversations, messages, unread/ack (long-poll) and task leases.

The conversation token travels in the ``X-Bus-Token`` header, never in the URL, so access
logs and proxies that log paths never see it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field

from memmesh.bus.core import MAX_BATCH
from memmesh.bus.model import (
    AckResult,
    BusMessage,
    Completed,
    CompletedBatch,
    Conversation,
    Delivery,
    OpenedConversation,
    Task,
    Transcript,
    Unread,
)
from memmesh.interfaces.http.deps import Caller, Svc, json_response, while_connected
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import Body
from memmesh.model import JsonNumber
from memmesh.waits import Abandoned

router = APIRouter(prefix="/api/v1/bus", tags=["bus"], responses=ERRORS)

Token = Annotated[str, Header(alias="X-Bus-Token", description="the conversation token (64 hex) `open` returned")]
Wait = Annotated[float | None, Field(ge=0, description="long-poll: wait up to this many seconds when nothing is there")]


class OpenRequest(Body):
    participants: list[str] = Field(min_length=1, description="agent names taking part")
    kind: Literal["chat", "queue"] = "chat"
    topic: str | None = None
    timeout_s: float | None = Field(None, gt=0, description="archive after this many idle seconds (default bus.conversation_timeout_s)")
    created_by: str | None = None


class SendRequest(Body):
    sender: str = Field(alias="from", description="the sending participant")
    body: str
    to: str | None = Field(None, description="only this participant receives it (chat only: a task queue refuses a recipient)")


class SendBatchRequest(Body):
    """Several messages (in a queue: tasks) posted in one write, all or nothing, numbered consecutively."""

    sender: str = Field(alias="from", description="the sending participant")
    bodies: list[str] = Field(min_length=1, max_length=MAX_BATCH, description=f"the messages, in order (1-{MAX_BATCH})")
    to: str | None = Field(None, description="only this participant receives them (chat only: a task queue refuses a recipient)")


class AckRequest(Body):
    agent: str
    ids: list[str] = Field(default_factory=list, description="ack these messages and everything before them")
    all: bool = Field(False, description="ack every message unread has returned")


class ClaimRequest(Body):
    worker: str
    lease_s: float | None = Field(None, gt=0)
    wait_s: Wait = None
    limit: Annotated[int, Field(ge=1, le=MAX_BATCH), JsonNumber] = Field(
        1, description=f"lease up to this many ready tasks in one write (1-{MAX_BATCH})"
    )


class AttemptRequest(Body):
    worker: str
    attempt_token: str


class HeartbeatRequest(AttemptRequest):
    lease_s: float | None = Field(None, gt=0)


class CompleteRequest(AttemptRequest):
    result: str | None = None
    claim_next: bool = Field(False, description="Also lease this worker the next ready task (answered as `next`), in the same write.")
    lease_s: float | None = Field(None, gt=0, description="The next task's lease (with claim_next; default bus.lease_s).")


class ResultEntry(Body):
    attempt_token: str = Field(description="the attempt token the claim returned")
    result: str | None = None


class CompleteBatchRequest(Body):
    worker: str
    results: list[ResultEntry] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"the finished attempts and their results (1-{MAX_BATCH})"
    )


class FailRequest(AttemptRequest):
    reason: str = "worker reported failure"


class ConversationList(BaseModel):
    conversations: list[Conversation]


class TaskList(BaseModel):
    tasks: list[Task]


class MessageList(BaseModel):
    messages: list[BusMessage]


class ClaimResult(BaseModel):
    delivery: Delivery | None = Field(description="the first task leased (null when none was ready)")
    deliveries: list[Delivery] = Field(description="every task leased, oldest first (at most `limit`)")


@router.post("/conversations", status_code=201, response_model=OpenedConversation, summary="Open a conversation")
def open_conversation(body: OpenRequest, service: Svc, who: Caller) -> Response:
    """A new conversation and its token (returned once: only its hash is stored)."""
    opened = service.bus.open(
        body.participants, kind=body.kind, topic=body.topic, timeout_s=body.timeout_s, created_by=body.created_by, principal=who
    )
    return json_response(opened, 201)


@router.get("/conversations", response_model=ConversationList, summary="List conversations")
def list_conversations(
    service: Svc,
    who: Caller,
    archived: Annotated[bool, Query(description="archived conversations instead of open ones")] = False,
    agent: Annotated[str | None, Query(description="only those this agent takes part in")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    found = service.bus.list(archived=archived, agent=agent, limit=limit, principal=who)
    return json_response(ConversationList(conversations=found))


@router.post("/conversations/{conversation_id}/messages", status_code=201, response_model=BusMessage, summary="Send a message")
def send(conversation_id: str, body: SendRequest, token: Token, service: Svc, who: Caller) -> Response:
    message = service.bus.send(conversation_id, body.body, sender=body.sender, to=body.to, token=token, principal=who)
    return json_response(message, 201)


@router.post(
    "/conversations/{conversation_id}/messages/batch", status_code=201, response_model=MessageList, summary="Send several messages"
)
def send_batch(conversation_id: str, body: SendBatchRequest, token: Token, service: Svc, who: Caller) -> Response:
    """Post up to 100 messages (in a queue: tasks) in one write: all or nothing, numbered consecutively."""
    sent = service.bus.send_many(conversation_id, body.bodies, sender=body.sender, to=body.to, token=token, principal=who)
    return json_response(MessageList(messages=sent), 201)


@router.get("/conversations/{conversation_id}/messages", response_model=Transcript, summary="A conversation's messages in mesh order")
def transcript(
    conversation_id: str,
    token: Token,
    service: Svc,
    who: Caller,
    after: Annotated[str | None, Query(description="continue after this message id (the last one of the previous page)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Every message, ordered by (hlc, node, id): the same order on every mesh node. Moves no cursor."""
    return json_response(service.bus.transcript(conversation_id, token=token, after=after, limit=limit, principal=who))


@router.get("/conversations/{conversation_id}/unread", response_model=Unread, summary="Unread messages (long-poll)")
async def unread(
    request: Request,
    conversation_id: str,
    token: Token,
    service: Svc,
    who: Caller,
    agent: Annotated[str, Query(description="the reading participant")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait: Annotated[float, Query(ge=0, allow_inf_nan=False, description="long-poll seconds (≤ bus.max_wait_s)")] = 0.0,
) -> Response:
    """The agent's unacked messages, oldest first; with ``wait``, an empty answer waits for one
    (and stops waiting when the client disconnects)."""
    found = await while_connected(
        request,
        lambda gone: service.bus.unread(conversation_id, agent=agent, token=token, limit=limit, wait_s=wait, principal=who, abandoned=gone),
        waits=wait > 0,
    )
    return json_response(found)


@router.post("/conversations/{conversation_id}/ack", response_model=AckResult, summary="Acknowledge messages")
def ack(conversation_id: str, body: AckRequest, token: Token, service: Svc, who: Caller) -> Response:
    done = service.bus.ack(conversation_id, agent=body.agent, token=token, ids=body.ids, all=body.all, principal=who)
    return json_response(done)


@router.post("/conversations/{conversation_id}/claim", response_model=ClaimResult, summary="Lease the next tasks of a queue")
async def claim(request: Request, conversation_id: str, body: ClaimRequest, token: Token, service: Svc, who: Caller) -> Response:
    """The oldest ready task (up to ``limit`` of them, in one write, each with its own attempt
    token), leased to the worker; with ``wait_s``, waits for one (and stops waiting, taking
    nothing, when the client disconnects)."""

    def take(gone: Abandoned | None) -> list[Delivery]:
        return service.bus.claim_many(
            conversation_id,
            worker=body.worker,
            token=token,
            limit=body.limit,
            lease_s=body.lease_s,
            wait_s=body.wait_s,
            principal=who,
            abandoned=gone,
        )

    got = await while_connected(request, take, waits=bool(body.wait_s))
    return json_response(ClaimResult(delivery=got[0] if got else None, deliveries=got))


@router.post("/conversations/{conversation_id}/heartbeat", response_model=Delivery, summary="Extend a task lease")
def heartbeat(conversation_id: str, body: HeartbeatRequest, token: Token, service: Svc, who: Caller) -> Response:
    got = service.bus.heartbeat(conversation_id, body.attempt_token, worker=body.worker, token=token, lease_s=body.lease_s, principal=who)
    return json_response(got)


@router.post("/conversations/{conversation_id}/complete", response_model=Completed, summary="Complete a leased task")
def complete(conversation_id: str, body: CompleteRequest, token: Token, service: Svc, who: Caller) -> Response:
    task = service.bus.complete(
        conversation_id,
        body.attempt_token,
        worker=body.worker,
        token=token,
        result=body.result,
        principal=who,
        claim_next=body.claim_next,
        lease_s=body.lease_s,
    )
    return json_response(task)


@router.post("/conversations/{conversation_id}/complete/batch", response_model=CompletedBatch, summary="Complete several leased tasks")
def complete_batch(conversation_id: str, body: CompleteBatchRequest, token: Token, service: Svc, who: Caller) -> Response:
    """Up to 100 tasks completed in one durable write. Each entry is fenced alone: an attempt
    whose lease was lost is refused in its ``outcomes`` entry (with the error the single
    complete would answer) and changes nothing, while the others complete; the call is still
    200. Malformed input refuses the whole call, and nothing is written."""
    results = [entry.model_dump() for entry in body.results]
    done = service.bus.complete_many(conversation_id, results, worker=body.worker, token=token, principal=who)
    return json_response(done)


@router.post("/conversations/{conversation_id}/fail", response_model=Task, summary="Give a leased task back")
def fail(conversation_id: str, body: FailRequest, token: Token, service: Svc, who: Caller) -> Response:
    task = service.bus.fail(conversation_id, body.attempt_token, worker=body.worker, token=token, reason=body.reason, principal=who)
    return json_response(task)


@router.get("/conversations/{conversation_id}/tasks", response_model=TaskList, summary="A queue's tasks (and dead letters)")
def tasks(
    conversation_id: str,
    token: Token,
    service: Svc,
    who: Caller,
    state: Annotated[Literal["ready", "leased", "done", "dead"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    found = service.bus.tasks(conversation_id, token=token, state=state, limit=limit, principal=who)
    return json_response(TaskList(tasks=found))
