"""How namespace standards and pending actions merge when they arrive from another node.

Both replicate as whole states with the version stamp ``(hlc, node)`` of the write that made
them (see :meth:`memmesh.governance.core.Governance.stamp`), and merge the same way on every
node, so a mesh that saw the same writes holds the same governance whatever the order:

* a **standard** (set or cleared) — the later stamp wins: last writer on (HLC, node id). A
  clear is a tombstone row (``cleared``), so an older set arriving late never revives it, and
  a set after the clear (a later stamp) brings the standard back;
* a **pending action** — its status ranks first: ``pending`` < a decision (``approved``,
  ``rejected``) < ``failed`` (``advisory`` is final when made) < ``applied``, then the later
  stamp. An action applied on one node therefore wins over a concurrent reject on
  another (its write already happened and replicates), and two concurrent approves settle on
  one decision record. The effects of two concurrent approves converge on their own: a queued
  write carries the memory ids chosen when it was queued, and an update, delete, promote or
  link names its memory, so both nodes' writes are versions of the same memory that the
  memory merge resolves to one (docs/reliability.md).

Pure merge rules plus validation of what a peer sent; the feed and the batch transaction
belong to :mod:`memmesh.federation`, which calls these through ``service.governance``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from memmesh.clock import parse_hlc
from memmesh.errors import InvalidInputError
from memmesh.governance.model import (
    ACTIONS,
    MAX_RETENTION_DAYS,
    MAX_TTL_SECONDS,
    PendingAction,
    Standard,
    parse_count,
    parse_governance,
    parse_required_tags,
    parse_tier,
)
from memmesh.governance.policy import lineage
from memmesh.governance.store import GovernanceStore
from memmesh.model import normalize_namespace
from memmesh.store.base import WriteTx

STATUS_RANK = {"pending": 0, "approved": 1, "rejected": 1, "failed": 2, "advisory": 2, "applied": 3}
"""How far along a pending action is: a later stage always wins a merge. ``applied`` ranks
above ``failed``: when one node's apply failed and another's succeeded, the write exists."""


def stamp_order(hlc: str, node: str) -> tuple[tuple[int, int], str]:
    """A stamp as the total order every node agrees on; rows written before schema 20 carry
    no stamp and sort before every stamped one."""
    return (parse_hlc(hlc) if hlc else (0, 0)), node


def standard_from_wire(data: dict[str, Any]) -> Standard:
    """A replicated standard checked with the very parsers a local ``set`` uses, so a peer
    cannot plant a standard no node would accept from a caller (InvalidInputError, 422)."""
    namespace = data.get("namespace")
    try:
        ns = normalize_namespace(namespace if isinstance(namespace, str) else "")
        if ns != namespace:
            raise InvalidInputError(f"namespace {namespace!r} is not in its normal form ({ns!r})")
        return Standard(
            namespace=ns,
            governance=parse_governance(data.get("governance")),
            default_tier=parse_tier(data.get("default_tier")),
            ttl_seconds=parse_count(data.get("ttl_seconds"), "ttl_seconds", MAX_TTL_SECONDS),
            retention_days=parse_count(data.get("retention_days"), "retention_days", MAX_RETENTION_DAYS),
            required_tags=parse_required_tags(data.get("required_tags")),
            updated_at=data["updated_at"],
            updated_by=data.get("updated_by"),
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"replicated standard of namespace {namespace!r}: {exc.message}") from None
    except (ValidationError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"replicated standard of namespace {namespace!r}: {exc}") from None


def pending_from_wire(data: dict[str, Any]) -> PendingAction:
    """A replicated pending action, validated (its action, status and requester)."""
    ident = data.get("id")
    try:
        pending = PendingAction.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"replicated pending action {ident!r}: {where}: {first['msg']}") from None
    if pending.action not in ACTIONS:
        raise InvalidInputError(f"replicated pending action {ident!r}: unknown action {pending.action!r} (use {', '.join(ACTIONS)})")
    problem = pending_problem(pending)
    if problem:
        raise InvalidInputError(f"replicated pending action {ident!r}: {problem}")
    return pending


PENDING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
DECIDED = ("approved", "rejected", "applied", "failed", "advisory")


def pending_problem(pending: PendingAction) -> str | None:
    """What makes a pending action a state no node could have written, or None.

    A peer is trusted to relay decisions, not to invent them: the record must be one this
    code writes (an undecided action carries no decision; ``applied`` has its result,
    ``failed`` its error), its namespaces normal, the namespace it was queued in among the
    ones it touches, the requester the agent it names, and the payload the shape its action
    replays — a payload that does not fit would fail at approve time only, after the claim,
    and leave the action stuck half-decided."""
    if not PENDING_ID.fullmatch(pending.id):
        return "id must be 1-64 letters, digits or . _ : - (the id a node gave it)"
    spaces = pending.payload.get("namespaces")
    if not isinstance(spaces, list) or not spaces or not all(isinstance(ns, str) for ns in spaces):
        return "payload.namespaces must list the namespaces the action touches"
    for ns in [pending.namespace, pending.rule_namespace, *spaces]:
        if not isinstance(ns, str) or _normal(ns) != ns:
            return f"namespace {ns!r} is not a namespace in its normal form"
    if pending.namespace not in spaces:
        return f"namespace {pending.namespace!r} is not among the namespaces the action touches ({', '.join(spaces)})"
    if pending.rule_namespace not in lineage(pending.namespace):
        return f"rule_namespace {pending.rule_namespace!r} is neither {pending.namespace!r} nor one of its parents"
    if pending.requester.agent_id != pending.requested_by:
        return f"requester {pending.requester.agent_id!r} is not requested_by {pending.requested_by!r}"
    decided = pending.status in DECIDED
    if decided != (pending.decided_at is not None) or (not decided and pending.decided_by is not None):
        return f"status {pending.status!r} does not fit decided_by/decided_at (a decision is recorded with its time, and only then)"
    if (pending.result is not None) != (pending.status == "applied") or (pending.error is not None) != (pending.status == "failed"):
        return f"status {pending.status!r} does not fit result/error (only applied has a result, only failed an error)"
    return None if pending.status == "advisory" else payload_problem(pending.action, pending.payload, spaces)


def payload_problem(action: str, payload: dict[str, Any], spaces: list[str]) -> str | None:
    """What keeps ``payload`` from replaying ``action`` inside ``spaces``, or None (the
    service checks each field's value when the action is applied)."""

    def text(*names: str) -> str | None:
        bad = [n for n in names if not isinstance(payload.get(n), str) or not payload[n]]
        return f"payload of a {action} needs {', '.join(bad)} (text)" if bad else None

    # By shape: a consolidation, an update or a store replays as itself whichever of its
    # rules queued it (a tier raise waits on ``promote``, a move on the target's ``write``).
    if "consolidate" in payload:
        return _consolidation_problem(payload["consolidate"], spaces)
    if "changes" in payload or (action == "update" and "items" not in payload):
        changes_ok = isinstance(payload.get("changes"), dict)
        return text("memory_id") or (None if changes_ok else f"payload of an {action} needs changes (an object)")
    if action == "write" or "items" in payload:
        items = payload.get("items")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            return f"payload of a {action} needs items (a non-empty list of memories)"
        outside = [i.get("namespace") for i in items if i.get("namespace") not in spaces]
        return f"payload items write into {outside[0]!r}, outside the action's namespaces" if outside else None
    if action == "link":
        return text("source_id", "target_id", "relation")
    return text("memory_id")


def _consolidation_problem(asked: Any, spaces: list[str]) -> str | None:
    """What keeps a queued consolidation from replaying inside ``spaces``, or None."""
    if not isinstance(asked, dict) or not isinstance(asked.get("content"), str):
        return "payload of a consolidation needs consolidate with its content (text)"
    ids = asked.get("memory_ids")
    if not isinstance(ids, list) or len(ids) < 2 or not all(isinstance(i, str) and i for i in ids):
        return "payload of a consolidation needs memory_ids (at least two ids)"
    if asked.get("namespace") not in spaces:
        return f"payload of a consolidation writes into {asked.get('namespace')!r}, outside the action's namespaces"
    return None


def _normal(namespace: str) -> str | None:
    try:
        return normalize_namespace(namespace)
    except InvalidInputError:
        return None


def merge_standard(db: GovernanceStore, tx: WriteTx, standard: Standard, cleared: bool, hlc: str, node: str) -> bool:
    """Take a replicated standard (or clear) when its stamp is later than the one held; True
    when it changed this node's standards."""
    held = db.standard_stamp(tx, standard.namespace)
    if held is not None and stamp_order(*held) >= stamp_order(hlc, node):
        return False
    db.put_standard(tx, standard, (hlc, node), cleared=cleared)
    return True


def merge_pending(db: GovernanceStore, tx: WriteTx, pending: PendingAction, hlc: str, node: str) -> bool:
    """Take a replicated pending action when it is further along (or as far, with a later
    stamp) than the one held; True when it changed this node's record."""
    held = db.pending_stamp(tx, pending.id)
    incoming = (STATUS_RANK[pending.status], stamp_order(hlc, node))
    if held is not None and (STATUS_RANK.get(held[0], 0), stamp_order(held[1], held[2])) >= incoming:
        return False
    db.insert_pending(tx, pending, (hlc, node))
    return True
