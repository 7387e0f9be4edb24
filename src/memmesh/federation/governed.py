"""Namespace standards, pending-action decisions and link removals in the change feed.

They ride the same feed as memories (schema 20 gives each a change number), so pushes,
catch-up pages and full resyncs carry them with no path of their own; this module turns
their rows into :class:`SyncItem` s and applies incoming ones inside a batch's transaction.
The merge rules are the governance core's (memmesh.governance.replicated) and, for link
removals, :mod:`memmesh.store.link_removals`: the later ``created_at``/``removed_at`` wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memmesh.federation.changes import MAX_BATCH_ITEMS, LinkRemoval, PendingState, StandardState, SyncItem
from memmesh.federation.digest import PENDING_KEY, STANDARD_KEY
from memmesh.model import Link
from memmesh.store import link_removals
from memmesh.store.base import WriteTx

if TYPE_CHECKING:
    from memmesh.service import Service


def governed_items(service: Service, since: int, upto: int) -> list[SyncItem]:
    """The standards, pending actions and link removals changed in ``(since, upto]``, as
    feed items (after the memories of the page, so a removal never precedes its link)."""
    if upto <= since:
        return []
    db = service.governance.db
    item = SyncItem.model_construct
    with service.store.reading() as conn:
        standards = db.standards_changed(conn, since, upto)
        pending = db.pending_changed(conn, since, upto)
        removals = link_removals.changed(conn, since, upto)
    items = [
        item(seq=seq, standard=StandardState(**s.model_dump(mode="json"), cleared=cleared, hlc=hlc, node=node))
        for seq, s, cleared, hlc, node in standards
        if hlc
    ]
    items += [item(seq=seq, pending=PendingState(action=pending_dump(p), hlc=hlc, node=node)) for seq, p, hlc, node in pending if hlc]
    items += [item(seq=seq, link_removal=_wire_removal(r)) for seq, r in removals]
    return items


def named_items(service: Service, ids: list[str]) -> list[SyncItem]:
    """The current state of the standards and pending actions named in ``ids`` (by
    :data:`STANDARD_KEY` / :data:`PENDING_KEY`), stamped, as items outside the feed."""
    spaces = [i.removeprefix(STANDARD_KEY) for i in ids if i.startswith(STANDARD_KEY)]
    pending_ids = [i.removeprefix(PENDING_KEY) for i in ids if i.startswith(PENDING_KEY)]
    if not spaces and not pending_ids:
        return []
    db = service.governance.db
    with service.store.reading() as conn:
        standards = db.standards_named(conn, spaces)
        pending = db.pending_named(conn, pending_ids)
    items = [
        SyncItem(seq=0, standard=StandardState(**s.model_dump(mode="json"), cleared=cleared, hlc=hlc, node=node))
        for _, s, cleared, hlc, node in standards
        if hlc
    ]
    items += [SyncItem(seq=0, pending=PendingState(action=pending_dump(p), hlc=hlc, node=node)) for _, p, hlc, node in pending if hlc]
    return items


def pending_dump(pending: Any) -> dict[str, Any]:
    """A pending action's fields as they travel (its requester too: the action is applied as
    that caller wherever it is approved)."""
    data: dict[str, Any] = pending.model_dump(mode="json")
    data["requester"] = pending.requester.model_dump(mode="json")
    return data


def page_limit(service: Service, since: int, limit: int, skip_node: str | None) -> tuple[Any, list[SyncItem]]:
    """A feed page of at most :data:`MAX_BATCH_ITEMS` items in all: the store's page of
    memories (and the rest of its tables), then the governed items of the same range. When
    both together would overflow a batch, the store page is read again, shorter."""
    changes = service.store.changes_since(since, limit, skip_node=skip_node)
    extra = governed_items(service, since, changes.upto)
    while len(changes) + len(extra) > MAX_BATCH_ITEMS and limit > 1:
        limit = max(1, min(limit, MAX_BATCH_ITEMS) - len(extra))
        changes = service.store.changes_since(since, limit, skip_node=skip_node)
        extra = governed_items(service, since, changes.upto)
    return changes, extra


def check_item(service: Service, item: SyncItem) -> None:
    """Refuse a malformed standard or pending action before anything of the batch is written
    (InvalidInputError: 422), and fold their stamps into the clock (too far ahead: refused)."""
    if item.standard is not None:
        service.hlc.observe(item.standard.hlc)
        service.governance.check_replicated(standard=_standard_data(item.standard))
    if item.pending is not None:
        service.hlc.observe(item.pending.hlc)
        service.governance.check_replicated(pending=item.pending.action)


def _standard_data(state: StandardState) -> dict[str, Any]:
    return state.model_dump(mode="json", exclude={"cleared", "hlc", "node"})


def apply_item(service: Service, tx: WriteTx, item: SyncItem) -> bool | None:
    """Merge one governed item (None when the item is of another kind); True when it changed
    something on this node, False for a duplicate or an older state."""
    if item.standard is not None:
        s = item.standard
        return service.governance.merge_replicated_standard(tx, _standard_data(s), cleared=s.cleared, hlc=s.hlc, node=s.node)
    if item.pending is not None:
        p = item.pending
        return service.governance.merge_replicated_pending(tx, p.action, hlc=p.hlc, node=p.node)
    if item.link_removal is not None:
        r = item.link_removal
        held = link_removals.removed_at(tx, r.source_id, r.target_id, r.relation.value)
        if held is not None and held >= r.removed_at:
            return False
        removal = link_removals.Removal(r.source_id, r.target_id, r.relation.value, r.removed_at, r.removed_by)
        link_removals.record(tx, removal, tx.next_seq())
        return True
    return None


def link_removed(tx: WriteTx, link: Link) -> bool:
    """An incoming link this node removed later (or at the same moment): it stays removed."""
    held = link_removals.removed_at(tx, link.source_id, link.target_id, link.relation.value)
    return held is not None and held >= link.created_at


def removal_items(service: Service, memory_ids: list[str]) -> list[SyncItem]:
    """The link removals touching these memories (anti-entropy ships them with the memories)."""
    with service.store.reading() as conn:
        found = link_removals.of_memories(conn, memory_ids)
    return [SyncItem(seq=0, link_removal=_wire_removal(r)) for r in found]


def _wire_removal(r: link_removals.Removal) -> LinkRemoval:
    return LinkRemoval(source_id=r.source_id, target_id=r.target_id, relation=r.relation, removed_at=r.removed_at, removed_by=r.removed_by)
