"""MCP tools for webhook subscriptions (family ``subscriptions``) and agent inboxes (family
``inbox``), named as in the seeds: ``memory_subscribe``, ``memory_unsubscribe``,
``memory_list_subscriptions``, ``memory_inbox``, ``memory_notify``. Each is one call of
``service.subscriptions`` / ``service.inbox``, attached to :class:`MemoryTools` so it is
registered, filtered by profile and guarded like every other tool.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from memmesh.interfaces.mcp.tools import MemoryTools, tool

Event = Literal["memory.created", "memory.updated", "memory.deleted"]


@tool("subscriptions", "Subscribe a webhook to a namespace")
def memory_subscribe(
    self: MemoryTools,
    namespace: Annotated[str, Field(description="Namespace to watch, e.g. 'team/project' (everything below it too).")],
    url: Annotated[str, Field(description="The http(s) URL that receives a signed POST per change.")],
    events: Annotated[list[Event] | None, Field(description="Which changes (default: all three).")] = None,
    secret: Annotated[str | None, Field(description="HMAC secret, 16-256 chars; left out, one is made and returned once.")] = None,
) -> Any:
    """Have memmesh POST every change in a namespace to a URL, signed with HMAC-SHA256
    (X-Memmesh-Signature over '<X-Memmesh-Timestamp>.<body>') and retried with backoff.
    The answer holds the secret, shown only this once. Private and loopback URLs are refused."""
    return self.service.subscriptions.subscribe(namespace, url, events=events, secret=secret, principal=self.who())


@tool("subscriptions", "Remove a webhook subscription", destructive=True)
def memory_unsubscribe(
    self: MemoryTools, id: Annotated[str, Field(description="The subscription's id (from memory_list_subscriptions).")]
) -> Any:
    """Stop a subscription; its queued deliveries are dropped."""
    return self.service.subscriptions.unsubscribe(id, principal=self.who())


@tool("subscriptions", "List webhook subscriptions", read_only=True, idempotent=True)
def memory_list_subscriptions(self: MemoryTools) -> Any:
    """Subscriptions on namespaces you may read: namespace, URL, events, owner and state
    (secrets are never shown again)."""
    return self.service.subscriptions.list(principal=self.who())


@tool("inbox", "Notify another agent")
def memory_notify(
    self: MemoryTools,
    to: Annotated[str, Field(description="The agent id to notify.")],
    body: Annotated[str, Field(description="What you want them to know.")],
    subject: Annotated[str | None, Field(description="A short subject line.")] = None,
    namespace: Annotated[
        str | None, Field(description="A namespace the note is about; only readers of it see the note (default: your key's one namespace).")
    ] = None,
    memory_id: Annotated[str | None, Field(description="A memory the note is about.")] = None,
) -> Any:
    """Leave a notification in another agent's inbox (it reads it with memory_inbox)."""
    return self.service.inbox.notify(to, body, subject=subject, namespace=namespace, memory_id=memory_id, principal=self.who())


@tool("inbox", "Read your inbox")
def memory_inbox(
    self: MemoryTools,
    include_read: Annotated[bool, Field(description="Also show notifications already read.")] = False,
    peek: Annotated[bool, Field(description="Leave them unread.")] = False,
    limit: Annotated[int, Field(description="At most this many, oldest first.")] = 50,
    agent: Annotated[str | None, Field(description="Whose inbox; default: your own agent's.")] = None,
) -> Any:
    """Notifications other agents sent you with memory_notify, oldest first; unread ones are
    marked read as they are returned (unless peek)."""
    return self.service.inbox.read(agent=agent, unread_only=not include_read, mark_read=not peek, limit=limit, principal=self.who())


for _fn in (memory_subscribe, memory_unsubscribe, memory_list_subscriptions, memory_notify, memory_inbox):
    setattr(MemoryTools, _fn.__name__, _fn)
