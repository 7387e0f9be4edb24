"""Audit entries for governance decisions, appended in the transaction that makes them.

Every standard set or cleared, every action queued for approval (or let through by advisory
mode), every approval, rejection and apply outcome, and every such change that arrives from a
peer gets one entry in the audit log, committed with the change itself: a change that rolls
back leaves no entry, a refused one (403/409/422) never reaches its transaction at all.

Following the log's rule (docs/audit.md, "No content, digests"), free text a caller wrote — a
decision's reason, an apply error that may quote content — is recorded as its SHA-256 digest;
standards are recorded as the digest of their fields plus the names of the fields set.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from memmesh.audit.capture import AuditedTx, Pending, actor_of, current_caller
from memmesh.governance.model import PendingAction, Standard
from memmesh.model import Principal

STANDARD_FIELDS = ("governance", "default_tier", "ttl_seconds", "retention_days", "required_tags")


def digest(value: Any) -> str:
    """The SHA-256 of ``value`` as compact JSON with sorted keys (text is hashed as its JSON string)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def standard_detail(standard: Standard) -> dict[str, Any]:
    """What an entry says of a standard: the fields it sets and a digest of their values."""
    values = {name: getattr(standard, name) for name in STANDARD_FIELDS}
    return {"fields": [name for name, value in values.items() if value], "digest": digest(values)}


def pending_detail(pending: PendingAction, **extra: Any) -> dict[str, Any]:
    """What an entry says of a pending action: its action, its namespaces and the rule's namespace."""
    return {"action": pending.action, "namespaces": pending.namespaces(), "rule_namespace": pending.rule_namespace, **extra}


def text_digest(text: str | None) -> str | None:
    """A caller's free text (a reason, an error) as its digest: it may quote content."""
    return hashlib.sha256(text.encode()).hexdigest() if text else None


def replica_actor(node: str) -> str:
    """The actor of a change a peer sent: ``system:replica``, the peer's key (the caller that
    pushed or was pulled from, when known) and ``node:<origin>``, the node that made it."""
    return f"{actor_of(current_caller.get(), 'replica')} node:{node}"


def note(
    tx: Any,
    action: str,
    *,
    target: str,
    namespace: str | None,
    detail: dict[str, Any],
    who: Principal | None = None,
    actor: str | None = None,
) -> None:
    """Queue one entry on ``tx``; it is appended just before ``tx`` commits (the service's
    store is the audited one, so every write transaction it opens is an AuditedTx)."""
    if isinstance(tx, AuditedTx):
        clean = {key: value for key, value in detail.items() if value is not None}
        tx.defer(Pending(action, target, namespace, clean, actor if actor is not None else actor_of(who)))
