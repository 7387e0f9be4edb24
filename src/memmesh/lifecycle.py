"""A memory's life after it is stored: promote, forget, restore, consolidate, the archive.

These rules sit next to the service (``service.lifecycle``) rather than in it so each
stays small; they write through the shared :class:`~memmesh.kernel.Kernel` and its rules
(role, namespace scope, content limits, versions, quotas, history records) so every face
that reaches them gets the same behaviour. Each change
is one store transaction and leaves a history entry, like every other write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from memmesh.errors import ConflictError, InvalidInputError, NotFoundError
from memmesh.kernel import CoreCalls, Kernel, authorize, live_in, snapshot
from memmesh.model import (
    ArchivedMemory,
    ArchiveStats,
    HistoryEntry,
    HistoryEvent,
    Kind,
    Link,
    Memory,
    NewMemory,
    Principal,
    Relation,
    Tier,
    parse_model,
)
from memmesh.store.base import Filter
from memmesh.values import enum_member, parse_time

MAX_REPORTED_IDS = 100
MAX_CONSOLIDATE = 100


MAX_AGE_DAYS = 100_000
"""Longest age a selector may name (about 270 years); more would overflow date arithmetic."""


class ForgetReport(BaseModel):
    """What a bulk forget matched and deleted; ``ids`` lists at most 100 of them."""

    matched: int
    deleted: int
    dry_run: bool
    ids: list[str] = Field(default_factory=list)
    ids_truncated: bool = False


class Lifecycle:
    """Lifecycle operations over one service (``service.lifecycle``)."""

    def __init__(self, kernel: Kernel, core: CoreCalls) -> None:
        self.kernel = kernel
        self.core = core

    # -- promote -------------------------------------------------------------------------

    def promote(self, memory_id: str, *, principal: Principal) -> Memory:
        """Make a memory permanent: tier ``long``, no expiry. Promoting a long memory changes nothing."""
        k = self.kernel
        who = authorize(principal, "writer")
        self.core.get(memory_id, principal=who)
        self.core.governance.check(who, "promote", ids=[memory_id], payload={"memory_id": memory_id})
        now = k.clock()
        with k.store.write() as tx:
            current = live_in(tx, memory_id, who, now)
            authorize(who, "writer", current.namespace)
            if current.tier == Tier.long and current.expires_at is None:
                return current
            return k.promote(tx, current, who.agent_id, now)

    # -- forget (bulk delete by filter) ---------------------------------------------------

    def forget(self, *, dry_run: bool = False, principal: Principal, **filters: Any) -> ForgetReport:
        """Delete every live memory matching the filters (at least one is required).

        ``dry_run`` reports what would go and deletes nothing. Each deletion leaves a
        tombstone and a history entry, so :meth:`restore` can bring a memory back.
        """
        if not any(v for v in filters.values()):
            raise InvalidInputError("forget needs at least one filter: namespace, tags, tier, kind, agent_id, since or until")
        who = authorize(principal, "writer")
        ids = sorted(self.kernel.store.matching_ids(self.kernel.filter(who, **filters)))
        if dry_run:
            return _forget_report(len(ids), [], ids, dry_run=True)
        self.core.governance.check(who, "delete", ids=ids)
        deleted = self.kernel.delete_ids(who, ids, self.kernel.clock())
        return _forget_report(len(ids), deleted, deleted, dry_run=False)

    # -- restore (undelete) -----------------------------------------------------------------

    def restore(self, memory_id: str, *, principal: Principal) -> Memory:
        """Bring back a deleted (or archived) memory from its last history snapshot.

        The memory keeps its id, content and fields and gets a fresh TTL for its tier; its
        old links are not restored (link it again). Refused when the id is live, or when
        its namespace now holds the same content under another id.
        """
        who = authorize(principal, "writer")
        live = self.kernel.store.get(memory_id)
        if live is not None and who.covers(live.namespace):
            raise ConflictError(f"memory {memory_id} is not deleted; nothing to restore")
        last = _last_snapshot(self.kernel.store.history(memory_id))
        # A live or deleted memory of a namespace the caller cannot see gets the same words
        # as an id that never existed: no answer may confirm another namespace's ids.
        if live is not None or last is None or not who.covers(last.get("namespace", "")):
            raise NotFoundError(f"no deleted memory with id {memory_id} (nothing in its history to restore from)")
        memory = Memory.model_validate(last)
        return self._reinsert(memory, who, HistoryEvent.restore)

    def _reinsert(self, memory: Memory, who: Principal, event: HistoryEvent) -> Memory:
        k = self.kernel
        authorize(who, "writer", memory.namespace)
        self.core.governance.admit_import(who, [memory.namespace], what="restore")
        k.check_content(memory.content)
        vector = k.embed_one(memory.title, memory.content)
        now = k.clock()
        ttl = k.policy.ttl(memory.tier)
        with k.store.write() as tx:
            if tx.get(memory.id) is not None:
                raise ConflictError(f"memory {memory.id} is live already; nothing to restore")
            clash = tx.find_by_hash(memory.namespace, memory.content_hash)
            if clash is not None:
                raise ConflictError(
                    f"memory {clash.id} in {memory.namespace!r} already has this content; nothing restored",
                    details={"existing_id": clash.id},
                )
            k.charge_quota(tx, [memory.namespace], now)
            tombstone = tx.tombstone(memory.id)
            restored = memory.model_copy(
                update={
                    "updated_at": now,
                    "expires_at": now + ttl if ttl else None,
                    "version": k.next_version(tombstone.version if tombstone else memory.version),
                }
            )
            seq = tx.next_seq()
            tx.insert_memory(restored, seq)
            tx.take_archived(memory.id)
            k.put_vector(tx, restored.id, vector, seq)
            tx.add_history(HistoryEntry(memory_id=restored.id, event=event, new=snapshot(restored), actor=who.agent_id, at=now))
        return restored

    # -- consolidate ------------------------------------------------------------------------

    def consolidate(
        self,
        memory_ids: Sequence[str],
        content: str,
        *,
        namespace: str | None = None,
        title: str | None = None,
        tags: Sequence[str] | None = None,
        keep_sources: bool = False,
        principal: Principal,
    ) -> Memory:
        """Replace several memories by one summary the caller wrote (no LLM is involved).

        The summary (kind ``summary``, tier ``long``) records its sources in
        ``metadata.consolidated_from``; sources are deleted, or kept and linked
        ``summary --supersedes--> source`` with ``keep_sources``. All in one transaction.
        """
        ids = list(dict.fromkeys(memory_ids))
        if len(ids) < 2:
            raise InvalidInputError("consolidate needs at least two distinct memory ids")
        if len(ids) > MAX_CONSOLIDATE:
            raise InvalidInputError(f"consolidate takes at most {MAX_CONSOLIDATE} memories at once (got {len(ids)})")
        k = self.kernel
        who = authorize(principal, "writer")
        sources = [self.core.get(memory_id, principal=who) for memory_id in ids]
        for source in sources:
            authorize(who, "writer", source.namespace)
        merged_tags = list(dict.fromkeys([t for s in sources for t in s.tags] + list(tags or [])))[:32]
        new = parse_model(
            NewMemory,
            {
                "content": content,
                "namespace": namespace or sources[0].namespace,
                "title": title,
                "tier": Tier.long,
                "kind": Kind.summary,
                "tags": merged_tags,
                "source": "curator" if who.agent_id is None else "agent",
                "priority": max(s.priority for s in sources),
                "metadata": {"consolidated_from": ids},
            },
        )
        authorize(who, "writer", new.namespace)
        k.check_content(new.content)
        self._govern_consolidation(who, new, sources, tags, keep_sources)
        vector = k.embed_one(new.title, new.content)
        now = k.clock()
        with k.store.write() as tx:
            fresh = [live_in(tx, memory_id, who, now) for memory_id in ids]
            k.charge_quota(tx, [new.namespace], now)
            summary, _ = k.insert(tx, new, who, now, vector)
            if summary.id in ids:
                raise ConflictError(f"the summary's content is identical to source {summary.id}; write a new summary")
            tx.add_history(
                HistoryEntry(
                    memory_id=summary.id, event=HistoryEvent.merge, old={"sources": ids}, new=snapshot(summary), actor=who.agent_id, at=now
                )
            )
            for source in fresh:
                if keep_sources:
                    tx.put_link(
                        Link(
                            source_id=summary.id,
                            target_id=source.id,
                            relation=Relation.supersedes,
                            observed_by=who.agent_id,
                            created_at=now,
                        ),
                        tx.next_seq(),
                    )
                else:
                    k.delete(tx, source, who, now)
        return summary

    def _govern_consolidation(
        self, who: Principal, summary: NewMemory, sources: Sequence[Memory], tags: Sequence[str] | None, keep_sources: bool
    ) -> None:
        """A consolidation is a ``write`` of its summary and a ``delete`` of its sources (a
        ``link`` of summary and sources with ``keep_sources``), committed together: each rule
        applies and the strictest decides; approved, the whole consolidation is replayed."""
        spaces = [s.namespace for s in sources]
        wanted = {"write": [summary.namespace]}
        if keep_sources:
            wanted["link"] = [summary.namespace, *spaces]
        else:
            wanted["delete"] = spaces
        asked = {
            "memory_ids": [s.id for s in sources],
            "content": summary.content,
            "namespace": summary.namespace,
            "title": summary.title,
            "tags": list(tags or []),
            "keep_sources": keep_sources,
        }
        self.core.governance.check_actions(who, wanted, payload={"consolidate": asked})

    # -- links ------------------------------------------------------------------------------

    def invalidate_link(
        self,
        source_id: str,
        target_id: str,
        relation: Relation | str = Relation.related_to,
        *,
        at: datetime | str | None = None,
        principal: Principal,
    ) -> Link:
        """End a link's validity (``valid_until``) without deleting it, so the graph can
        still be queried as of earlier times; defaults to now."""
        rel = enum_member(Relation, relation, "relation")
        k = self.kernel
        who = authorize(principal, "writer")
        for memory_id in (source_id, target_id):
            found = self.core.get(memory_id, principal=who)
            authorize(who, "writer", found.namespace)
        until = parse_time(at, "at") or k.clock()
        payload = {"source_id": source_id, "target_id": target_id, "relation": rel.value, "invalidate_at": until.isoformat()}
        self.core.governance.check(who, "link", ids=[source_id, target_id], payload=payload)
        with k.store.write() as tx:
            link = next(
                (lk for lk in k.store.links(source_id) if lk.source_id == source_id and lk.target_id == target_id and lk.relation == rel),
                None,
            )
            if link is None:
                raise NotFoundError(f"no {rel.value} link from {source_id} to {target_id}")
            if link.valid_from is not None and until <= link.valid_from:
                raise InvalidInputError(
                    f"at ({until.isoformat()}) must be later than the link's valid_from ({link.valid_from.isoformat()})"
                )
            ended = link.model_copy(update={"valid_until": until})
            tx.put_link(ended, tx.next_seq())
        return ended

    # -- archive ----------------------------------------------------------------------------

    def archive_list(self, *, namespace: str | None = None, limit: int = 50, principal: Principal) -> list[ArchivedMemory]:
        """Archived memories (expired and moved aside by gc), most recently archived first."""
        who = authorize(principal, "reader")
        limit = self.kernel.check_top_k(limit, "limit")
        return self.kernel.store.archived(self.kernel.filter(who, namespace=namespace), limit)

    def archive_stats(self, *, namespace: str | None = None, principal: Principal) -> ArchiveStats:
        """How many memories the archive holds, per namespace, and when they were archived."""
        who = authorize(principal, "reader")
        return self.kernel.store.archive_stats(self.kernel.filter(who, namespace=namespace))

    def archive_restore(self, memory_id: str, *, principal: Principal) -> Memory:
        """Move an archived memory back among the live ones, with a fresh TTL for its tier."""
        who = authorize(principal, "writer")
        found = self.kernel.store.archived(Filter(now=self.kernel.clock(), scopes=who.prefixes(), ids=(memory_id,)), 1)
        if not found:
            raise NotFoundError(f"no archived memory with id {memory_id} (see memory_archive_list)")
        return self._reinsert(found[0].memory, who, HistoryEvent.restore)

    def archive_purge(
        self,
        *,
        memory_ids: Sequence[str] | None = None,
        namespace: str | None = None,
        older_than_days: float | None = None,
        everything: bool = False,
        principal: Principal,
    ) -> int:
        """Delete archived memories for good; returns how many. Needs ids, a namespace,
        an age or ``everything=True``, so a bare call never empties the archive."""
        if not (memory_ids or namespace or older_than_days is not None or everything):
            raise InvalidInputError("archive purge needs memory_ids, namespace, older_than_days or everything=true")
        if older_than_days is not None and not 0 <= older_than_days <= MAX_AGE_DAYS:
            raise InvalidInputError(f"older_than_days must be between 0 and {MAX_AGE_DAYS} (got {older_than_days})", usage=True)
        k = self.kernel
        who = authorize(principal, "admin")
        flt = k.filter(who, namespace=namespace)
        if flt.scopes is None and who.prefixes() is not None:
            flt = replace(flt, scopes=who.prefixes())
        if memory_ids:
            flt = replace(flt, ids=tuple(memory_ids))
        before = k.clock() - timedelta(days=older_than_days) if older_than_days is not None else None
        with k.store.write() as tx:
            return tx.purge_archive(flt, before)


def _last_snapshot(entries: list[HistoryEntry]) -> dict[str, Any] | None:
    """The memory as it was when last deleted or archived (those events keep the whole record)."""
    for entry in reversed(entries):
        if entry.event in (HistoryEvent.delete, HistoryEvent.archive) and entry.old and "content" in entry.old:
            return entry.old
    return None


def _forget_report(matched: int, deleted: list[str], ids: list[str], *, dry_run: bool) -> ForgetReport:
    return ForgetReport(
        matched=matched, deleted=len(deleted), dry_run=dry_run, ids=ids[:MAX_REPORTED_IDS], ids_truncated=len(ids) > MAX_REPORTED_IDS
    )


__all__ = ["ForgetReport", "Lifecycle"]
