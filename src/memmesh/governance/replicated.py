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
    return pending


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
