"""The write kernel and the rules every core module shares.

The service and the core modules beside it (lifecycle, graph, survey, entities) all write
through :class:`Kernel` and check through its rules, so a rule (who may write where, what
content is valid, when a write conflicts, what a history record holds, which version a
change gets, what counts against the quota) is written once. New cross-cutting work
(governance checks, audit records, replication) hooks in here rather than in each caller.

Every ``WriteTx`` method here runs inside the caller's transaction: the caller opens
``kernel.store.write()`` and decides what one transaction covers.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from memmesh.audit.capture import current_caller
from memmesh.clock import Clock, HybridLogicalClock, new_id
from memmesh.errors import (
    ConflictError,
    ContentTooLargeError,
    EmbedderError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
)
from memmesh.limits import quota_namespace, quota_retry_after, utc_day
from memmesh.model import (
    DEFAULT_NAMESPACE,
    HistoryEntry,
    HistoryEvent,
    Kind,
    Link,
    Memory,
    MemoryPatch,
    NewMemory,
    Page,
    Principal,
    RecallResult,
    Relation,
    Role,
    Stats,
    Tier,
    Tombstone,
    Version,
    check_text,
    normalize_namespace,
    normalize_tags,
)
from memmesh.recall.embedders import Embedder
from memmesh.store.base import Filter, Store, WriteTx
from memmesh.values import enum_value, parse_time
from memmesh.versions import next_version

DELETE_BATCH = 500
"""Deletions (or archivals) per transaction in bulk work: keeps each transaction (and lock) short."""


@dataclass(frozen=True)
class Policy:
    """The service rules that come from configuration (see config.py for their meaning)."""

    max_content_bytes: int = 65_536
    max_page_size: int = 1000
    default_top_k: int = 10
    ttl_short_seconds: int = 6 * 3600
    ttl_mid_seconds: int = 7 * 86400
    promote_after_accesses: int = 5
    tombstone_retention_days: float = 30.0
    expiring_soon_hours: float = 24.0
    daily_write_quota: int = 0
    min_free_bytes: int = 32 * 1024 * 1024
    backup_dir: Path | None = None
    governance_mode: str = "enforce"
    governance_admins: tuple[str, ...] = ()

    def ttl(self, tier: Tier) -> timedelta | None:
        """How long a memory of ``tier`` lives without access (None: forever)."""
        seconds = {Tier.short: self.ttl_short_seconds, Tier.mid: self.ttl_mid_seconds}.get(tier)
        return timedelta(seconds=seconds) if seconds else None


# -- pure rules ----------------------------------------------------------------------------


def content_hash(namespace: str, content: str) -> str:
    """sha256 of namespace, a newline and content: equal content in one namespace is one memory."""
    return hashlib.sha256(f"{namespace}\n{content}".encode()).hexdigest()


def embed_text(title: str | None, content: str) -> str:
    """What gets embedded for a memory: its title (when any) and its content."""
    return f"{title}\n{content}" if title else content


def snapshot(memory: Memory) -> dict[str, Any]:
    """The memory as history records it: every field but the access counters and version
    (those change on reads and replication, not by a caller's edit)."""
    return memory.model_dump(mode="json", exclude={"access_count", "last_accessed_at", "version"})


def outside_message(principal: Principal, namespace: str) -> str:
    """Why ``namespace`` is refused to a key limited to others. The namespace a call without
    one uses (``default``) is named as such, with one the key may use, since a key limited to
    some namespaces that leaves the namespace out meets it without having asked for it."""
    message = f"namespace {namespace!r} is outside this key's namespaces ({', '.join(principal.namespaces)})"
    roots = principal.prefixes()
    if namespace == DEFAULT_NAMESPACE and roots:
        message += f"; {namespace!r} is what a call without a namespace uses: give one inside them, e.g. {roots[0]!r}"
    return message


def authorize(principal: Principal, role: Role, namespace: str | None = None) -> Principal:
    """The caller, checked for ``role`` (and ``namespace``).

    The caller is never implicit: a missing Principal is a programming error, not the
    local admin, so a face that forgets to pass its caller fails loudly instead of
    silently acting with every right (issue 12).
    """
    if not isinstance(principal, Principal):
        raise TypeError("every service call needs the caller's Principal (memmesh.model.LOCAL_PRINCIPAL for local use)")
    if not principal.has_role(role):
        raise ForbiddenError(f"role {principal.role!r} may not do this; it needs {role!r}")
    if namespace is not None and not principal.covers(namespace):
        raise ForbiddenError(outside_message(principal, namespace))
    current_caller.set(principal)  # the actor of the audit entries this call writes
    return principal


def authorize_store_wide(principal: Principal, what: str) -> Principal:
    """An admin for every namespace: for work that reads or changes the whole store."""
    who = authorize(principal, "admin")
    if who.prefixes() is not None:
        raise ForbiddenError(f"{what} covers every namespace; it needs an admin key not limited to some namespaces")
    return who


def is_store_admin(who: Principal) -> bool:
    """True for an admin not limited to some namespaces."""
    return who.role == "admin" and who.prefixes() is None


def check_query_size(text: str, limit: int, what: str = "query") -> None:
    """A text recalled by (a query, a session's task) is at most as long as the longest memory
    (``limits.max_content_bytes``): each request's tokenizing, keyword and date scans grow with
    it, and no stored text is longer. ``what`` names the field in the error, so the caller
    knows which of its inputs to shorten."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidInputError(f"{what} is {size} bytes; the limit is {limit} (limits.max_content_bytes): use fewer words")


def check_agent(who: Principal, agent_id: str | None) -> None:
    """A keyed caller writes as its own agent; only an admin for every namespace may attribute
    a memory to another agent (e.g. when replaying a migration)."""
    if agent_id is None or who.agent_id is None or agent_id == who.agent_id:
        return
    if is_store_admin(who):
        return
    raise ForbiddenError(f"agent_id {agent_id!r} is not this key's agent ({who.agent_id!r}): leave agent_id out, the key's agent is used")


def hidden_id(memory_id: str) -> str:
    """The answer for an id held in a namespace the caller cannot see: the same words as for
    an id nobody holds, so the error tells nothing about other namespaces."""
    return f"no memory with id {memory_id} is visible to this key; leave id out or choose another"


def check_valid_span(valid_from: datetime | None, valid_to: datetime | None) -> None:
    """A validity span must not end before it starts."""
    if valid_from and valid_to and valid_to <= valid_from:
        raise InvalidInputError("valid_to must be later than valid_from", field="valid_to")


def live_in(tx: WriteTx, memory_id: str, who: Principal, now: datetime) -> Memory:
    """The live (unexpired) memory ``who`` can see, read inside the write transaction."""
    current = tx.get(memory_id)
    if current is None or not who.covers(current.namespace) or (current.expires_at is not None and current.expires_at <= now):
        raise NotFoundError(f"no memory with id {memory_id}")
    return current


def visible_history(who: Principal, entries: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    """The entries written while the memory was in a namespace ``who`` covers.

    The namespace is replayed entry by entry (an update names it only when it changed), so a
    memory moved out of a namespace shows nothing written after the move to callers of the old
    one, and a memory moved in does not reveal what it held elsewhere (issue 12, finding 3): the
    entry of the move itself keeps only the side the caller may see.
    """
    if who.prefixes() is None:
        return list(entries)
    visible: list[HistoryEntry] = []
    namespace: str | None = None
    for entry in entries:
        before = (entry.old or {}).get("namespace") or namespace
        after = (entry.new or {}).get("namespace") or before
        before_seen, after_seen = (ns is not None and who.covers(ns) for ns in (before, after))
        if before_seen or after_seen:
            visible.append(_hide_sides(entry, old=not before_seen, new=not after_seen))
        namespace = after
    if namespace is None or not who.covers(namespace):
        return []
    return visible


def _hide_sides(entry: HistoryEntry, *, old: bool, new: bool) -> HistoryEntry:
    """The entry of a move across the caller's scope, without the side written in the
    namespace it may not see (only that side's namespace change is kept as ``None``: the
    move is visible, what the memory held there is not)."""
    if not (old or new):
        return entry
    return entry.model_copy(update={"old": None if old else entry.old, "new": None if new else entry.new})


class TitleReader(Protocol):
    """What :func:`update_target` reads: a store, or a write transaction."""

    def get(self, memory_id: str) -> Memory | None: ...
    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None: ...
    def find_by_title(self, namespace: str, title: str) -> Memory | None: ...


def title_patch(new: NewMemory) -> MemoryPatch:
    """The update a store with ``on_conflict="update"`` makes to the memory holding its title."""
    return MemoryPatch.model_validate(
        {"content": new.content, "tags": new.tags or None, "priority": new.priority, "metadata": new.metadata or None}
    )


def update_target(reader: TitleReader, new: NewMemory) -> Memory | None:
    """The stored memory a store of ``new`` would change in place instead of writing a new
    one, or None: the memory with its id or content when the store brings tags it lacks
    (:meth:`Kernel.merge_tags`), else, with ``on_conflict="update"``, the memory holding its
    title. The order :meth:`Kernel.insert_outcome` decides in; governance asks before writing."""
    digest = content_hash(new.namespace, new.content)
    same = reader.get(new.id) if new.id is not None else None
    same = same or reader.find_by_hash(new.namespace, digest)
    if same is not None:  # a repeat (or a conflict, when the id holds other content)
        return same if same.content_hash == digest and not set(new.tags) <= set(same.tags) else None
    if new.on_conflict != "update" or not new.title:
        return None
    return reader.find_by_title(new.namespace, new.title)


def is_stale(existing: Memory | None, incoming: Memory) -> bool:
    """True when the stored copy is the same or newer, so writing ``incoming`` changes nothing."""
    return existing is not None and (existing == incoming or existing.updated_at >= incoming.updated_at)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- the kernel ----------------------------------------------------------------------------


class Kernel:
    """The one place that writes memories: insert, update, delete, promote, with their
    history records, versions and quota, plus the checks that need configuration."""

    def __init__(
        self, store: Store, *, policy: Policy, embedder: Embedder | None, clock: Clock, node_id: str, hlc: HybridLogicalClock
    ) -> None:
        self.store = store
        self.policy = policy
        self.embedder = embedder
        self.clock = clock
        self.node_id = node_id
        self.hlc = hlc

    # -- checks that need the policy or the store ---------------------------------------

    def check_content(self, content: str) -> None:
        """Content must be non-empty text within ``limits.max_content_bytes``."""
        if not isinstance(content, str) or not content.strip():
            raise InvalidInputError("content is empty: give the text to remember")
        size = len(content.encode("utf-8"))
        if size > self.policy.max_content_bytes:
            raise ContentTooLargeError(f"content is {size} bytes; the limit is {self.policy.max_content_bytes} (limits.max_content_bytes)")

    def check_top_k(self, top_k: int | None, name: str = "top_k") -> int:
        """A page or result size between 1 and ``limits.max_page_size`` (None: the default)."""
        value = self.policy.default_top_k if top_k is None else top_k
        if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value > self.policy.max_page_size:
            raise InvalidInputError(f"{name} must be between 1 and {self.policy.max_page_size} (got {top_k!r})", usage=True, field=name)
        return value

    def filter(
        self,
        principal: Principal,
        *,
        namespace: str | None = None,
        tags: Sequence[str] | str | None = None,
        tier: str | Tier | None = None,
        kind: str | Kind | None = None,
        agent_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        as_of: datetime | str | None = None,
        **unknown: Any,
    ) -> Filter:
        """A store filter from a caller's loose filter values, limited to what it may see.
        Any other keyword is refused as an unknown field, as an unknown field of a memory is
        (a face passes its caller's leftover options here, so ``topk=3`` is named, not a
        ``TypeError`` about this method)."""
        if unknown:
            raise InvalidInputError("; ".join(f"{name}: unknown field" for name in sorted(unknown)))
        ns = normalize_namespace(namespace) if namespace else None
        if ns is not None and not principal.covers(ns):
            raise ForbiddenError(outside_message(principal, ns))
        return Filter(
            now=self.clock(),
            namespace=ns,
            scopes=None if ns else principal.prefixes(),
            tags=tuple(normalize_tags(list(tags) if not isinstance(tags, str) else [tags])) if tags else (),
            tier=enum_value(Tier, tier, "tier"),
            kind=enum_value(Kind, kind, "kind"),
            agent_id=check_text(agent_id, "agent_id") or None,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            as_of=parse_time(as_of, "as_of"),
        )

    def next_version(self, previous: Version | None) -> Version:
        """The version stamp of this node's next change after ``previous``."""
        return next_version(previous, self.node_id, self.hlc)

    def change_counter(self) -> int:
        """The store's count of committed changes (what the change feed orders by)."""
        return self.store.change_counter()

    def embed(self, texts: list[str]) -> tuple[np.ndarray | None, list[str]]:
        """Vectors for texts, or (None, notices) when the embedder fails: such writes are
        stored keyword-only and ``memmesh reindex`` embeds them later."""
        if self.embedder is None or not texts:
            return None, []
        try:
            return self.embedder.embed(texts), []
        except EmbedderError as exc:
            return None, [f"stored keyword-only, run `memmesh reindex` later: {exc.message}"]

    def embed_one(self, title: str | None, content: str) -> np.ndarray | None:
        """The vector of one memory's text, or None when there is no working embedder."""
        vectors, _ = self.embed([embed_text(title, content)])
        return vectors[0] if vectors is not None else None

    def charge_quota(self, tx: WriteTx, namespaces: Sequence[str], now: datetime) -> None:
        """Count writes that changed something against the daily quota inside the write
        transaction; over the quota the whole write rolls back (count included) with a 429.

        The quota belongs to the top-level namespace of each write (:func:`quota_namespace`):
        ``q/a`` and ``q/b/c`` share ``q``'s, so a key scoped to ``q/*`` cannot escape it by
        writing to ever new sub-namespaces."""
        quota = self.policy.daily_write_quota
        if quota <= 0 or not namespaces:
            return
        day = utc_day(now)
        for namespace, n in Counter(quota_namespace(ns) for ns in namespaces).items():
            wait = quota_retry_after(tx.count_writes(namespace, day, n), quota, now)
            if wait is not None:
                raise RateLimitedError(
                    f"namespace {namespace!r} (with everything below it) used its {quota} writes for {day} (limits.daily_write_quota)",
                    details={"retry_after": int(wait) + 1, "namespace": namespace, "quota": quota},
                )

    # -- ids of other namespaces ----------------------------------------------------------

    def former_namespaces(self, tx: WriteTx | None, memory_id: str) -> set[str]:
        """Namespaces an id not live now was ever held in: its tombstone, the archive, history."""
        found: set[str] = set()
        tombstone = tx.tombstone(memory_id) if tx is not None else None
        if tombstone is not None:
            found.add(tombstone.namespace)
        found.update(a.memory.namespace for a in self.store.archived(Filter(now=self.clock(), ids=(memory_id,), include_expired=True), 1))
        for entry in self.store.history(memory_id):
            found.update(snap["namespace"] for snap in (entry.old, entry.new) if isinstance(snap, dict) and "namespace" in snap)
        return found

    def check_former_id(self, tx: WriteTx, who: Principal, memory_id: str, namespace: str) -> None:
        """A client-chosen id of a deleted or archived memory: hidden unless every namespace it
        was held in is visible (same answer as a live hidden id), and never re-used in another
        namespace (that would graft the old memory's history onto a new one; restore brings it back)."""
        former = self.former_namespaces(tx, memory_id)
        if not former:
            return
        if not all(who.covers(ns) for ns in former):
            raise NotFoundError(hidden_id(memory_id))
        others = sorted(ns for ns in former if ns != namespace)
        if others:
            raise ConflictError(
                f"id {memory_id} belonged to a deleted or archived memory in namespace {others[0]!r}; "
                "bring it back with restore (the MCP tool memory_restore, or lifecycle.restore) instead, or leave id out",
                details={"namespace": others[0]},
            )

    def check_exact_target(self, who: Principal, memory_id: str) -> None:
        """An exact write may replace only a memory the caller can see; an id held in another
        namespace gets the not-found-shaped answer (no 409 that would confirm it exists).
        The same holds for an id that a deleted or archived memory, or history, holds in a
        namespace the caller cannot see: writing it would take over that memory's history."""
        if who.prefixes() is None:
            return  # every namespace is visible: nothing to hide, no lookups (importers call this per record)
        existing = self.store.get(memory_id)
        if existing is not None and not who.covers(existing.namespace):
            raise NotFoundError(hidden_id(memory_id))
        if existing is None and not all(who.covers(ns) for ns in self.former_namespaces(None, memory_id)):
            raise NotFoundError(hidden_id(memory_id))

    # -- writes (inside the caller's transaction) -------------------------------------------

    def put_vector(self, tx: WriteTx, memory_id: str, vector: np.ndarray | None, seq: int) -> None:
        """Store a memory's vector under the current model (nothing without one)."""
        if vector is not None and self.embedder is not None:
            tx.put_vector(memory_id, self.embedder.model_id, vector, seq)

    def insert(self, tx: WriteTx, new: NewMemory, who: Principal, now: datetime, vector: np.ndarray | None) -> tuple[Memory, bool]:
        """Store a new memory: the stored memory, and whether anything was written (see :meth:`insert_outcome`)."""
        memory, wrote, _ = self.insert_outcome(tx, new, who, now, vector)
        return memory, wrote

    def merge_tags(self, tx: WriteTx, existing: Memory, tags: Sequence[str], who: Principal, now: datetime) -> tuple[Memory, bool]:
        """A store of content that is already stored writes no second copy, but does not drop
        the caller's tags either: those the stored memory lacks are added to it (an update,
        with history). The memory, and whether anything was written."""
        extra = [tag for tag in tags if tag not in existing.tags]
        if not extra:
            return existing, False
        # Built without re-validation: the caller's tags were checked as the write was parsed,
        # and the stored ones were accepted when written (a rule added since, such as the tag
        # character rule, must not make an old memory refuse every new tag).
        patch = MemoryPatch()
        patch.tags = [*existing.tags, *extra]  # assignment is not validated (no validate_assignment)
        updated = self.update(tx, existing, patch, who, now, None)
        return updated, updated is not existing

    def insert_outcome(
        self, tx: WriteTx, new: NewMemory, who: Principal, now: datetime, vector: np.ndarray | None
    ) -> tuple[Memory, bool, bool]:
        """Store a new memory: the stored memory, whether anything was written (False for an
        idempotent retry, a de-duplicated write or an update to the same values), and
        whether a new memory was created (False when the content was already stored: then
        only the tags it lacked were added, :meth:`merge_tags`).

        Same id with other content, or (with ``on_conflict="error"``) the same title in the
        namespace, is a conflict; ``on_conflict="update"`` updates the titled memory and
        ``"version"`` stores a new one that supersedes it."""
        digest = content_hash(new.namespace, new.content)
        if new.id is not None:
            existing = tx.get(new.id)
            if existing is not None and not who.covers(existing.namespace):
                raise NotFoundError(hidden_id(new.id))
            if existing is not None:
                if existing.content_hash == digest:
                    return (*self.merge_tags(tx, existing, new.tags, who, now), False)
                raise ConflictError(f"id {new.id} already names a memory with other content; use update to change it")
            self.check_former_id(tx, who, new.id, new.namespace)
        duplicate = tx.find_by_hash(new.namespace, digest)
        if duplicate is not None:
            return (*self.merge_tags(tx, duplicate, new.tags, who, now), False)
        superseded = None
        if new.title:
            same_title = tx.find_by_title(new.namespace, new.title)
            if same_title is not None:
                if new.on_conflict == "error":
                    raise ConflictError(
                        f"namespace {new.namespace!r} already has a memory titled {new.title!r} ({same_title.id})",
                        details={"existing_id": same_title.id},
                        retry_with={"on_conflict": ["update", "version"]},
                    )
                if new.on_conflict == "update":
                    updated = self.update(tx, same_title, title_patch(new), who, now, vector)
                    return updated, updated is not same_title, False
                superseded = same_title
        tier = new.tier or Tier.mid
        ttl = timedelta(seconds=new.ttl_seconds) if new.ttl_seconds else self.policy.ttl(tier)
        memory = Memory(
            id=new.id or new_id(),
            namespace=new.namespace,
            title=new.title,
            content=new.content,
            tier=tier,
            kind=new.kind,
            tags=new.tags,
            priority=new.priority,
            confidence=new.confidence,
            source=new.source,
            agent_id=new.agent_id or who.agent_id,
            metadata=new.metadata,
            created_at=now,
            updated_at=now,
            expires_at=now + ttl if ttl else None,
            valid_from=new.valid_from,
            valid_to=new.valid_to,
            content_hash=digest,
            version=self.next_version(None),
        )
        seq = tx.next_seq()
        tx.insert_memory(memory, seq)
        self.put_vector(tx, memory.id, vector, seq)
        tx.add_history(HistoryEntry(memory_id=memory.id, event=HistoryEvent.add, new=snapshot(memory), actor=who.agent_id, at=now))
        if superseded is not None:
            tx.put_link(Link(source_id=memory.id, target_id=superseded.id, relation=Relation.supersedes, created_at=now), seq)
        return memory, True, True

    def update(self, tx: WriteTx, current: Memory, patch: MemoryPatch, who: Principal, now: datetime, vector: np.ndarray | None) -> Memory:
        """Apply ``patch`` to ``current``; returns ``current`` itself when nothing changes
        (no history, no version), else the updated memory with its old/new values in history."""
        changes = patch.model_dump(exclude_none=True)
        if patch.tier is not None and "expires_at" not in changes:
            ttl = self.policy.ttl(patch.tier)
            changes["expires_at"] = now + ttl if ttl else None
        updated = current.model_copy(update=changes)
        check_valid_span(updated.valid_from, updated.valid_to)
        updated.content_hash = content_hash(updated.namespace, updated.content)
        if updated.content_hash != current.content_hash:
            clash = tx.find_by_hash(updated.namespace, updated.content_hash)
            if clash is not None and clash.id != current.id:
                raise ConflictError(
                    f"memory {clash.id} in {updated.namespace!r} already has this content", details={"existing_id": clash.id}
                )
        old = {k: v for k, v in snapshot(current).items() if k in changes}
        new = {k: v for k, v in snapshot(updated).items() if k in changes}
        if old == new:
            return current
        updated.updated_at = now
        updated.version = self.next_version(current.version)
        seq = tx.next_seq()
        tx.update_memory(updated, seq)
        self.put_vector(tx, updated.id, vector, seq)
        tx.add_history(HistoryEntry(memory_id=updated.id, event=HistoryEvent.update, old=old, new=new, actor=who.agent_id, at=now))
        return updated

    def delete(self, tx: WriteTx, current: Memory, who: Principal, now: datetime) -> Tombstone:
        """Delete a memory and its links, leaving a tombstone and a history entry that keeps
        the whole record (restore brings it back from there)."""
        tombstone = Tombstone(
            id=current.id, namespace=current.namespace, deleted_at=now, actor=who.agent_id, version=self.next_version(current.version)
        )
        seq = tx.next_seq()
        # its links stay stored, hidden by the tombstone (store.base.VISIBLE_LINK): a concurrent
        # update that wins the merge revives the memory with its links on every node
        tx.delete_memory(tombstone, seq)
        tx.add_history(HistoryEntry(memory_id=current.id, event=HistoryEvent.delete, old=snapshot(current), actor=who.agent_id, at=now))
        return tombstone

    def delete_ids(self, who: Principal, ids: Sequence[str], now: datetime) -> list[str]:
        """Delete each live memory of ``ids`` that ``who`` can see, in transactions of
        :data:`DELETE_BATCH`; returns the ids deleted (ids gone meanwhile are skipped)."""
        deleted: list[str] = []
        for start in range(0, len(ids), DELETE_BATCH):
            with self.store.write() as tx:
                for memory_id in ids[start : start + DELETE_BATCH]:
                    current = tx.get(memory_id)
                    if current is not None and who.covers(current.namespace):
                        self.delete(tx, current, who, now)
                        deleted.append(memory_id)
        return deleted

    def promote(self, tx: WriteTx, current: Memory, actor: str | None, now: datetime) -> Memory:
        """Make a memory permanent (tier ``long``, no expiry), by a caller or by the access
        rule (actor ``memmesh``); one history shape for both: the old and new tier and expiry."""
        promoted = current.model_copy(
            update={"tier": Tier.long, "expires_at": None, "updated_at": now, "version": self.next_version(current.version)}
        )
        tx.update_memory(promoted, tx.next_seq())
        tx.add_history(
            HistoryEntry(
                memory_id=current.id,
                event=HistoryEvent.promote,
                actor=actor,
                at=now,
                old={"tier": current.tier.value, "expires_at": _iso(current.expires_at)},
                new={"tier": Tier.long.value, "expires_at": None},
            )
        )
        return promoted

    def record_access(self, memories: Sequence[Memory]) -> None:
        """Count an access: extend short/mid TTLs, promote mid → long after enough accesses."""
        now = self.clock()
        with self.store.write() as tx:
            for memory in memories:
                ttl = self.policy.ttl(memory.tier)
                expires = memory.expires_at
                if ttl is not None and expires is not None:
                    expires = max(expires, now + ttl)
                tx.record_access(memory.id, now, expires)
                if memory.tier == Tier.mid and memory.access_count + 1 >= self.policy.promote_after_accesses:
                    current = tx.get(memory.id)
                    if current is not None and current.tier == Tier.mid:
                        self.promote(tx, current, "memmesh", now)

    def put_exact(self, tx: WriteTx, memory: Memory, history: Sequence[HistoryEntry], who: Principal, vector: np.ndarray | None) -> bool:
        """Write a memory exactly as given (import, restore, migration): True if anything was
        written. The same or newer stored copy, or the same content under another id in its
        namespace, is left as is; an absent memory comes with its history, and one brought
        back after a delete (or replaced) gets a ``restore`` record so history never ends in
        ``delete`` while it is live."""
        existing = tx.get(memory.id)
        if existing is not None and not who.covers(existing.namespace):
            raise NotFoundError(hidden_id(memory.id))
        if is_stale(existing, memory):
            return False
        clash = tx.find_by_hash(memory.namespace, memory.content_hash)
        if clash is not None and clash.id != memory.id:
            return False
        seq = tx.next_seq()
        if existing is None:
            deleted = tx.tombstone(memory.id) is not None
            tx.insert_memory(memory, seq)
            known = self.store.history(memory.id) if deleted else []
            for entry in history:
                if entry not in known:
                    tx.add_history(entry)
            if deleted:
                tx.add_history(
                    HistoryEntry(memory_id=memory.id, event=HistoryEvent.restore, new=snapshot(memory), actor=who.agent_id, at=self.clock())
                )
        else:
            tx.update_memory(memory, seq)
            tx.add_history(
                HistoryEntry(
                    memory_id=memory.id,
                    event=HistoryEvent.restore,
                    old=snapshot(existing),
                    new=snapshot(memory),
                    actor=who.agent_id,
                    at=self.clock(),
                )
            )
        self.put_vector(tx, memory.id, vector, seq)
        return True

    def archive_expired(self, now: datetime) -> int:
        """Move every memory expired at ``now`` to the archive (history keeps the whole record,
        actor ``gc``), :data:`DELETE_BATCH` per transaction; returns how many."""
        archived = 0
        while True:
            with self.store.write() as tx:
                batch = tx.expired(now, DELETE_BATCH)
                for memory in batch:
                    tx.archive(memory, now, "expired")
                    tx.add_history(HistoryEntry(memory_id=memory.id, event=HistoryEvent.archive, old=snapshot(memory), actor="gc", at=now))
            archived += len(batch)
            if len(batch) < DELETE_BATCH:
                return archived

    def history(self, memory_id: str, who: Principal) -> list[HistoryEntry]:
        """The history entries of a memory that ``who`` may see, oldest first."""
        return visible_history(who, self.store.history(memory_id))


class CoreCalls(Protocol):
    """The service's public calls that the core modules beside it compose (lifecycle, graph,
    survey and entities read and write through these, never through the service's insides;
    the service hands itself in, so they need not import it)."""

    @property
    def governance(self) -> Any:
        """Namespace standards: the one check every write path makes (:mod:`memmesh.governance`)."""

    def get(self, memory_id: str, *, principal: Principal, touch: bool = False) -> Memory: ...

    def add(self, data: NewMemory | Mapping[str, Any], *, principal: Principal) -> Memory: ...

    def update(self, memory_id: str, changes: MemoryPatch | Mapping[str, Any], *, principal: Principal) -> Memory: ...

    def list(self, *, limit: int = 50, cursor: str | None = None, principal: Principal, **filters: Any) -> Page: ...

    def stats(self, *, principal: Principal) -> Stats: ...

    def recall(
        self,
        query: str,
        *,
        top_k: int | None = None,
        mode: str | None = None,
        explain: bool = False,
        budget_tokens: int | None = None,
        touch: bool = True,
        principal: Principal,
        **filters: Any,
    ) -> RecallResult: ...


__all__ = [
    "DELETE_BATCH",
    "CoreCalls",
    "Kernel",
    "Policy",
    "authorize",
    "authorize_store_wide",
    "check_agent",
    "check_valid_span",
    "content_hash",
    "embed_text",
    "hidden_id",
    "is_stale",
    "is_store_admin",
    "live_in",
    "snapshot",
    "visible_history",
]
