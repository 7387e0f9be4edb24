"""The values the bus returns to every face (pydantic, so each face renders them the same way)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, overload

from pydantic import BaseModel, Field

ConversationKind = Literal["chat", "queue"]
TaskState = Literal["ready", "leased", "done", "dead"]


@overload
def when(seconds: float) -> datetime: ...
@overload
def when(seconds: None) -> None: ...
@overload
def when(seconds: float | None) -> datetime | None: ...


def when(seconds: float | None) -> datetime | None:
    """Unix seconds (how the bus stores time, the same on both backends) as an aware datetime."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class Conversation(BaseModel):
    """A conversation (kind ``chat``: every message goes to every other participant) or a task
    queue (kind ``queue``: each message is one task, leased to one worker at a time)."""

    id: str
    kind: ConversationKind
    topic: str | None = None
    participants: list[str]
    created_by: str | None = None
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    """When it is archived if nothing is sent before then (``bus.conversation_timeout_s``)."""
    archived_at: datetime | None = None
    messages: int = 0


class OpenedConversation(Conversation):
    """A new conversation and its token: shown once, stored only as a hash."""

    conversation_id: str = Field(description="the same as id, under the name every face prints")
    token: str = Field(description="64 hex characters; every participant needs it to read or post")


class BusMessage(BaseModel):
    """One message, numbered ``seq`` in its conversation (the order every reader sees)."""

    id: str
    conversation_id: str
    seq: int
    sender: str
    to: str | None = None
    body: str
    created_at: datetime


class Unread(BaseModel):
    """What an agent has not acknowledged yet, oldest first; ``acked_seq`` is its cursor."""

    conversation_id: str
    agent: str
    messages: list[BusMessage]
    acked_seq: int
    more: bool = False


class AckResult(BaseModel):
    conversation_id: str
    agent: str
    acked_seq: int
    """The agent's cursor after the ack: every message up to it is read (it never moves back)."""
    acked: int
    """How many of the agent's messages this call newly acknowledged."""


class Delivery(BaseModel):
    """A task leased to one worker. ``attempt_token`` fences it: only this attempt may
    heartbeat, complete or fail it, and only while the lease holds."""

    conversation_id: str
    message: BusMessage
    attempt: int
    attempt_token: str
    worker: str
    lease_expires_at: datetime


class Task(BaseModel):
    """A queue message with its delivery state, history and (when done) result."""

    id: str
    conversation_id: str
    seq: int
    body: str
    state: TaskState
    attempts: int
    worker: str | None = None
    lease_expires_at: datetime | None = None
    result: str | None = None
    dead_reason: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)


class Completed(Task):
    """A completed task and, when the worker asked ``claim_next``, the next task leased to it
    in the same write: one commit (one disk flush) per task for a busy worker instead of two
    (complete, then claim). ``next`` is None when nothing was ready (claim with a wait then)
    or when ``claim_next`` was not asked."""

    next: Delivery | None = None


class TaskResult(BaseModel):
    """One entry of a batch complete: the attempt that finished its task, and its result."""

    attempt_token: str = Field(description="the attempt token the claim returned")
    result: str | None = None


class RefusedEntry(BaseModel):
    """Why one entry of a batch was refused: the code and message the single call would raise."""

    code: str
    message: str


class CompleteOutcome(BaseModel):
    """One entry's answer in a batch complete, in the order asked: the completed ``task``, or
    the ``error`` that refused it (e.g. ``lease_lost`` for an attempt whose lease ran out).
    A refused entry changed nothing."""

    attempt_token: str
    task: Task | None = None
    error: RefusedEntry | None = None


class CompletedBatch(BaseModel):
    """A batch complete: every accepted entry committed in one durable write (one disk flush
    for the batch); each refused entry changed nothing and says why, alone."""

    conversation_id: str
    completed: int
    refused: int
    outcomes: list[CompleteOutcome]


class TranscriptMessage(BusMessage):
    """A message with where and when it was written: ``node`` (the node that took the send)
    and ``hlc`` (its hybrid-logical-clock stamp). ``seq`` is this node's arrival number."""

    node: str | None = None
    hlc: str | None = None


class Transcript(BaseModel):
    """A conversation's messages in the order every mesh node shows them: (hlc, node, id)."""

    conversation_id: str
    messages: list[TranscriptMessage]
    more: bool = False
    """More messages follow: ask again with ``after`` = the last message's id."""
