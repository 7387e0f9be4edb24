"""MCP tools for namespace standards and pending actions (family ``governance``).

Names follow the ai-memory server's (seeds 000/001): ``memory_namespace_set_standard``,
``memory_namespace_get_standard``, ``memory_namespace_clear_standard``,
``memory_pending_list``, ``memory_pending_approve``, ``memory_pending_reject``. Each is one
``service.governance`` call; the methods are attached to :class:`MemoryTools` so they are
registered, filtered by profile and guarded exactly like every other tool.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from memmesh.interfaces.mcp.tools import MemoryTools, tool

StandardNamespace = Annotated[str, Field(description="The namespace, e.g. 'org/legal'; a standard applies below it too.")]
PendingId = Annotated[str, Field(description="The pending action's id (from memory_pending_list or a queued write).")]
Reason = Annotated[str | None, Field(description="Why you decided so; recorded with the decision.")]


@tool("governance", "Set a namespace standard", idempotent=True)
def memory_namespace_set_standard(
    self: MemoryTools,
    namespace: StandardNamespace,
    governance: Annotated[
        dict[str, str] | None,
        Field(description='Per action (write, update, delete, promote, link): allow, approve or deny, e.g. {"write": "approve"}.'),
    ] = None,
    default_tier: Annotated[Literal["short", "mid", "long"] | None, Field(description="Tier for memories stored without one.")] = None,
    ttl_seconds: Annotated[int | None, Field(description="TTL for memories stored without their own (not long ones).")] = None,
    retention_days: Annotated[int | None, Field(description="Days to keep: gc forgets memories older than that.")] = None,
    required_tags: Annotated[list[str] | None, Field(description="Tags every new memory in the namespace must carry.")] = None,
) -> Any:
    """Set (replace) a namespace's standard: who may write, update, delete, promote or link
    there without approval, plus defaults. Needs an admin key for that namespace."""
    return self.service.governance.set_standard(
        namespace,
        governance=governance,
        default_tier=default_tier,
        ttl_seconds=ttl_seconds,
        retention_days=retention_days,
        required_tags=required_tags,
        principal=self.who(),
    )


@tool("governance", "Get a namespace standard", read_only=True, idempotent=True)
def memory_namespace_get_standard(self: MemoryTools, namespace: StandardNamespace) -> Any:
    """The rules that apply in a namespace: for each action allow/approve/deny and which
    namespace set it (standards are inherited from parent namespaces)."""
    return self.service.governance.get_standard(namespace, principal=self.who())


@tool("governance", "Clear a namespace standard", destructive=True)
def memory_namespace_clear_standard(self: MemoryTools, namespace: StandardNamespace) -> Any:
    """Remove a namespace's own standard (standards of parent namespaces still apply)."""
    return self.service.governance.clear_standard(namespace, principal=self.who())


@tool("governance", "List pending actions", read_only=True, idempotent=True)
def memory_pending_list(
    self: MemoryTools,
    status: Annotated[
        Literal["pending", "approved", "applied", "rejected", "failed", "advisory", "all"],
        Field(description="Which: pending (awaiting a decision, default), a decided state, or all."),
    ] = "pending",
    limit: Annotated[int, Field(description="At most this many, oldest first.")] = 100,
) -> Any:
    """Actions a namespace standard queued for approval (what, where, who asked, status)."""
    return self.service.governance.pending(status=status, limit=limit, principal=self.who())


@tool("governance", "Approve a pending action")
def memory_pending_approve(self: MemoryTools, id: PendingId, reason: Reason = None) -> Any:
    """Approve a queued action: it is applied at once, exactly once, as the agent that asked.
    Needs an admin or approver key for its namespace; you may not approve your own request,
    nor with a key minted from one of yours."""
    return self.service.governance.approve(id, reason=reason, principal=self.who())


@tool("governance", "Reject a pending action", destructive=True)
def memory_pending_reject(self: MemoryTools, id: PendingId, reason: Reason = None) -> Any:
    """Reject a queued action: nothing is written; the decision and reason are recorded."""
    return self.service.governance.reject(id, reason=reason, principal=self.who())


for _fn in (
    memory_namespace_set_standard,
    memory_namespace_get_standard,
    memory_namespace_clear_standard,
    memory_pending_list,
    memory_pending_approve,
    memory_pending_reject,
):
    setattr(MemoryTools, _fn.__name__, _fn)
