"""Namespace standards and pending actions over HTTP.

``/api/v1/namespaces/{namespace}/standard`` (GET the effective standard, PUT to set,
DELETE to clear; the namespace may hold ``/``), ``/api/v1/namespaces/standards`` (list),
``/api/v1/pending`` and ``/api/v1/pending/{id}/approve|reject``. A write that a standard
queues answers 202 with ``pending_id`` from the write route itself (the error handler
renders :class:`~memmesh.errors.PendingApprovalError`); a ``deny`` answers 403 with the rule.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import Field

from memmesh.governance import EffectiveStandard, PendingAction, Standard
from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import Body

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["governance"])


class StandardRequest(Body):
    """A namespace's standard; fields left out are inherited from the namespaces above it."""

    governance: dict[str, Any] | None = Field(
        default=None, description='action (write, update, delete, promote, link) → allow | approve | deny, e.g. {"write": "approve"}'
    )
    default_tier: str | None = Field(default=None, description="tier for memories stored without one: short, mid or long")
    ttl_seconds: int | None = Field(default=None, description="TTL for memories stored without their own (not long ones)")
    retention_days: int | None = Field(default=None, description="days to keep: gc forgets memories older than that")
    required_tags: list[str] | None = Field(default=None, description="tags every new memory in the namespace must carry")


class DecisionRequest(Body):
    """Why an approver decided as it did (recorded with the decision)."""

    reason: str | None = Field(default=None, max_length=2000)


@router.get("/namespaces/standards", response_model=list[Standard], summary="List namespace standards")
def list_standards(service: Svc, who: Caller) -> Response:
    """Standards set on namespaces this key may read."""
    return json_response(service.governance.list_standards(principal=who))


@router.get("/namespaces/{namespace:path}/standard", response_model=EffectiveStandard, summary="Effective standard of a namespace")
def get_standard(namespace: str, service: Svc, who: Caller) -> Response:
    """The namespace's own standard and every field as inherited (with where it was set)."""
    return json_response(service.governance.get_standard(namespace, principal=who))


@router.put("/namespaces/{namespace:path}/standard", response_model=Standard, summary="Set a namespace standard")
def set_standard(namespace: str, body: StandardRequest, service: Svc, who: Caller) -> Response:
    """Set (replace) the standard of a namespace (an admin key for that namespace)."""
    return json_response(service.governance.set_standard(namespace, **body.model_dump(), principal=who))


@router.delete("/namespaces/{namespace:path}/standard", response_model=Standard, summary="Clear a namespace standard")
def clear_standard(namespace: str, service: Svc, who: Caller) -> Response:
    """Remove the namespace's own standard (those set above it still apply); returns it."""
    return json_response(service.governance.clear_standard(namespace, principal=who))


@router.get("/pending", response_model=list[PendingAction], summary="List pending actions")
def list_pending(
    service: Svc,
    who: Caller,
    status: Annotated[str, Query(description="pending, approved, applied, rejected, failed, advisory or all")] = "pending",
    limit: Annotated[int, Query(description="at most this many, oldest first")] = 100,
) -> Response:
    """Actions a standard queued for approval, whose namespaces all lie inside this key's."""
    return json_response(service.governance.pending(status=status, limit=limit, principal=who))


@router.get("/pending/{pending_id}", response_model=PendingAction, summary="One pending action")
def get_pending(pending_id: str, service: Svc, who: Caller) -> Response:
    return json_response(service.governance.get_pending(pending_id, principal=who))


@router.post("/pending/{pending_id}/approve", response_model=PendingAction, summary="Approve a pending action")
def approve(pending_id: str, service: Svc, who: Caller, body: DecisionRequest | None = None) -> Response:
    """Approve and apply it, exactly once, as its requester (409 once decided). ``status`` is
    ``applied``, or ``failed`` with ``error`` when the write itself was refused."""
    return json_response(service.governance.approve(pending_id, reason=body.reason if body else None, principal=who))


@router.post("/pending/{pending_id}/reject", response_model=PendingAction, summary="Reject a pending action")
def reject(pending_id: str, service: Svc, who: Caller, body: DecisionRequest | None = None) -> Response:
    """Reject it: nothing is written; the decision is recorded (409 once decided)."""
    return json_response(service.governance.reject(pending_id, reason=body.reason if body else None, principal=who))
