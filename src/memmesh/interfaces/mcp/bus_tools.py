"""MCP tools of the ``bus`` and ``session`` families: each one service call and a rendering.

Mixed into :class:`memmesh.interfaces.mcp.tools.MemoryTools`; the bus's rules (tokens,
cursors, leases) live in :mod:`memmesh.bus.core`, the session rules in
:mod:`memmesh.sessions.core`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from memmesh.interfaces.mcp.tools import MemoryTools, current_abandoned, tool

if TYPE_CHECKING:
    from memmesh.model import Principal

ConvId = Annotated[str, Field(description="The conversation id bus_open_conversation returned.")]
Token = Annotated[str, Field(description="The conversation token (64 hex characters) bus_open_conversation returned.")]
Agent = Annotated[str, Field(description="Your agent name (a participant of the conversation).")]
Wait = Annotated[
    float, Field(description="Long-poll: wait up to this many seconds for a message when none is unread (0 = answer at once).")
]
SessionId = Annotated[str, Field(description="The session's id, e.g. 'shard-1' (letters, digits, _ . : -).")]


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


class BusTools:
    """The bus and session tools, beside the MemoryTools they share a service and caller with."""

    def __init__(self, tools: MemoryTools) -> None:
        self.tools = tools
        self.service = tools.service

    def who(self) -> Principal:
        return self.tools.who()

    @tool("bus", "Open a conversation")
    def bus_open_conversation(
        self,
        participants: Annotated[list[str], Field(description="Agent names taking part, e.g. ['coordinator', 'shard-1'].")],
        kind: Annotated[
            Literal["chat", "queue"], Field(description="chat: everyone reads every message; queue: tasks for workers.")
        ] = "chat",
        topic: Annotated[str | None, Field(description="What the conversation is about.")] = None,
    ) -> Any:
        """Open a conversation between agents. Returns conversation_id and token: give both to
        every participant; the token is shown only now and is needed to read or post."""
        opened = self.service.bus.open(participants, kind=kind, topic=topic, principal=self.who())
        return _dump(opened)

    @tool("bus", "Send a message")
    def bus_send_message(
        self,
        conversation_id: ConvId,
        token: Token,
        sender: Annotated[str, Field(description="Your agent name (a participant).")],
        body: Annotated[str, Field(description="The message text (or, in a queue, the task).")],
        to: Annotated[str | None, Field(description="Only this participant receives it (default: all others; a queue refuses it).")] = None,
    ) -> Any:
        """Post a message; every participant sees messages in the same order."""
        return _dump(self.service.bus.send(conversation_id, body, sender=sender, to=to, token=token, principal=self.who()))

    @tool("bus", "Get unread messages", read_only=True, waits=True)
    def bus_get_unread_messages(self, conversation_id: ConvId, token: Token, agent: Agent, wait_seconds: Wait = 0.0) -> Any:
        """Your unacknowledged messages, oldest first. They come back until you bus_ack them,
        so nothing is lost if you stop midway."""
        found = self.service.bus.unread(
            conversation_id, agent=agent, token=token, wait_s=wait_seconds, principal=self.who(), abandoned=current_abandoned.get()
        )
        return {"messages": [_dump(m) for m in found.messages], "acked_seq": found.acked_seq, "more": found.more}

    @tool("bus", "Get a conversation's transcript", read_only=True)
    def bus_get_transcript(
        self,
        conversation_id: ConvId,
        token: Token,
        after: Annotated[str | None, Field(description="Continue after this message id (the last of the previous page).")] = None,
        limit: Annotated[int, Field(description="At most this many messages (1-1000).")] = 100,
    ) -> Any:
        """Every message of the conversation in the order every mesh node shows it (hlc,
        node, id), each with the node it was sent on. Marks nothing read."""
        found = self.service.bus.transcript(conversation_id, token=token, after=after, limit=limit, principal=self.who())
        return {"messages": [_dump(m) for m in found.messages], "more": found.more}

    @tool("bus", "Acknowledge messages", idempotent=True)
    def bus_ack(
        self,
        conversation_id: ConvId,
        token: Token,
        agent: Agent,
        ids: Annotated[list[str] | None, Field(description="Message ids to ack (each with everything before it).")] = None,
        all: Annotated[bool, Field(description="Ack every message bus_get_unread_messages returned.")] = False,
    ) -> Any:
        """Mark your messages read; your cursor only moves forward."""
        return _dump(self.service.bus.ack(conversation_id, agent=agent, token=token, ids=ids or [], all=all, principal=self.who()))

    @tool("bus", "List conversations", read_only=True, idempotent=True)
    def bus_list_conversations(
        self,
        agent: Annotated[str | None, Field(description="Only conversations this agent takes part in.")] = None,
        archived: Annotated[bool, Field(description="List archived (timed-out) conversations instead.")] = False,
    ) -> Any:
        """Open conversations, most recently active first (tokens are never listed)."""
        return {"conversations": [_dump(c) for c in self.service.bus.list(agent=agent, archived=archived, principal=self.who())]}

    @tool("bus", "Claim a task", waits=True)
    def bus_claim_task(
        self,
        conversation_id: ConvId,
        token: Token,
        worker: Annotated[str, Field(description="Your worker name (a participant of the queue).")],
        lease_seconds: Annotated[float | None, Field(description="Lease length; heartbeat before it ends.")] = None,
        limit: Annotated[
            int, Field(description="Lease up to this many ready tasks at once (1-100); above 1 the answer is a deliveries list.")
        ] = 1,
        wait_seconds: Annotated[
            float, Field(description="Long-poll: wait up to this many seconds for a task when none is ready (0 = answer at once).")
        ] = 0.0,
    ) -> Any:
        """Lease the oldest ready task of a queue (or, with limit, up to that many in one
        write: answered as deliveries, each with its own attempt_token). Keep each
        attempt_token: heartbeat, complete and fail need it, and are refused once its lease
        is lost."""
        found = self.service.bus.claim_many(
            conversation_id,
            worker=worker,
            token=token,
            limit=limit,
            lease_s=lease_seconds,
            wait_s=wait_seconds,
            principal=self.who(),
            abandoned=current_abandoned.get(),
        )
        if limit == 1:  # the answer of a one-task claim, as it always was
            return {"delivery": _dump(found[0]) if found else None}
        return {"deliveries": [_dump(d) for d in found]}

    @tool("bus", "Complete a task")
    def bus_complete_task(
        self,
        conversation_id: ConvId,
        token: Token,
        worker: Annotated[str, Field(description="Your worker name.")],
        attempt_token: Annotated[str, Field(description="The attempt_token bus_claim_task returned.")],
        result: Annotated[str | None, Field(description="The task's result.")] = None,
        claim_next: Annotated[bool, Field(description="Also lease you the next ready task (returned as next), in the same write.")] = False,
        lease_seconds: Annotated[float | None, Field(description="The next task's lease (with claim_next).")] = None,
    ) -> Any:
        """Mark a leased task done with its result (refused if your lease was lost). With
        claim_next, ``next`` holds your next task (or null when none is ready)."""
        task = self.service.bus.complete(
            conversation_id,
            attempt_token,
            worker=worker,
            token=token,
            result=result,
            principal=self.who(),
            claim_next=claim_next,
            lease_s=lease_seconds,
        )
        return _dump(task)

    @tool("bus", "Complete several tasks")
    def bus_complete_tasks(
        self,
        conversation_id: ConvId,
        token: Token,
        worker: Annotated[str, Field(description="Your worker name.")],
        results: Annotated[
            list[dict[str, Any]],
            Field(description="1-100 entries {attempt_token, result?}: each attempt_token as bus_claim_task returned it."),
        ],
    ) -> Any:
        """Mark several leased tasks done in one write. Each entry stands alone: one whose
        lease was lost is refused in outcomes (with error code and message) and changes
        nothing, while the others complete."""
        return _dump(self.service.bus.complete_many(conversation_id, results, worker=worker, token=token, principal=self.who()))

    @tool("session", "Append a session turn")
    def session_append(
        self,
        session_id: SessionId,
        content: Annotated[str, Field(description="The turn's text.")],
        role: Annotated[str, Field(description="user, assistant, system or tool.")] = "user",
        namespace: Annotated[
            str | None, Field(description="Root the session lives under, e.g. 'team/project' (default: the server's sessions root).")
        ] = None,
    ) -> Any:
        """Store one turn at the end of a session (as a kind=message memory)."""
        return _dump(self.service.sessions.append(session_id, role=role, content=content, namespace=namespace, principal=self.who()))

    @tool("session", "Rehydrate a session", read_only=True)
    def session_rehydrate(
        self,
        session_id: SessionId,
        budget_tokens: Annotated[int, Field(description="Most tokens the returned context may use.")] = 4000,
        query: Annotated[str | None, Field(description="What you are about to do: relevant memories are included.")] = None,
        namespace: Annotated[str | None, Field(description="The session's root, when the id is used under several.")] = None,
    ) -> Any:
        """Pick a long session back up: a summary of older turns, relevant memories and the
        latest turns, within the budget, with the tokens used."""
        sessions = self.service.sessions
        return _dump(sessions.rehydrate(session_id, budget_tokens=budget_tokens, query=query, namespace=namespace, principal=self.who()))

    @tool("session", "List sessions", read_only=True, idempotent=True)
    def session_list(self) -> Any:
        """Sessions, most recently active first, with their turn counts."""
        return {"sessions": [_dump(s) for s in self.service.sessions.list(principal=self.who())]}

    @tool("session", "Status of a fact extraction", read_only=True, idempotent=True)
    def memory_extraction_status(
        self, job_id: Annotated[str, Field(description="The job_id memory_store returned for messages (ext-…).")]
    ) -> Any:
        """Whether the facts of a remembered conversation are extracted yet: queued, running,
        done (with the report: extracted, merged, fallback, failed with reasons) or failed."""
        return _dump(self.service.extraction.job(job_id, principal=self.who()))
