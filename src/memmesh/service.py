"""The core every face calls: validation, rules, history, versions and access counting.

Nothing here knows about HTTP, MCP or the terminal. Each public method takes plain values
(or the pydantic inputs of :mod:`memmesh.model`) and a required :class:`Principal` (the
caller is never implicit: the embedded API and the CLI pass ``LOCAL_PRINCIPAL``), checks
the caller's role and namespaces, does its work in one store transaction and returns
model values. Faces only parse, call one method and render.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from memmesh.access import Access, manages
from memmesh.clock import Clock, HybridLogicalClock, format_ts, new_id, parse_ts
from memmesh.errors import (
    ConfigError,
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
    Agent,
    ApiKey,
    CreatedKey,
    GcReport,
    HistoryEntry,
    HistoryEvent,
    Kind,
    Link,
    Memory,
    MemoryPatch,
    NamespaceCount,
    NewMemory,
    Page,
    Principal,
    RecallResult,
    Relation,
    Role,
    Stats,
    Tier,
    TierCount,
    Tombstone,
    Version,
    check_text,
    normalize_namespace,
    normalize_tags,
    parse_model,
)
from memmesh.recall.embedders import Embedder
from memmesh.recall.engine import RecallEngine
from memmesh.recall.ranking import fill_budget
from memmesh.redact import redact_url
from memmesh.store.base import Filter, Store, WriteTx
from memmesh.versions import next_version

if TYPE_CHECKING:
    from memmesh.entities import Entities
    from memmesh.federation.changes import SyncItem
    from memmesh.federation.replica import Replica
    from memmesh.governance import Governance
    from memmesh.graph import Graph
    from memmesh.lifecycle import Lifecycle
    from memmesh.survey import Survey


class Replicator(Protocol):
    """What the service needs of a running mesh (:class:`memmesh.federation.outbox.Mesh`)."""

    def replicate(self, items: list[SyncItem]) -> None: ...
    def notify(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


Progress = Callable[[int], None]
"""Called with the number of items just finished, for progress bars."""


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
    backup_dir: Path | None = None
    governance_mode: str = "enforce"
    governance_admins: tuple[str, ...] = ()

    def ttl(self, tier: Tier) -> timedelta | None:
        seconds = {Tier.short: self.ttl_short_seconds, Tier.mid: self.ttl_mid_seconds}.get(tier)
        return timedelta(seconds=seconds) if seconds else None


def content_hash(namespace: str, content: str) -> str:
    """sha256 of namespace, a newline and content: equal content in one namespace is one memory."""
    return hashlib.sha256(f"{namespace}\n{content}".encode()).hexdigest()


def embed_text(title: str | None, content: str) -> str:
    """What gets embedded for a memory: its title (when any) and its content."""
    return f"{title}\n{content}" if title else content


class Service:
    """memmesh's behaviour, independent of how it is reached."""

    def __init__(
        self,
        store: Store,
        *,
        policy: Policy | None = None,
        embedder: Embedder | None = None,
        engine: RecallEngine,
        clock: Clock,
        node_id: str | None = None,
        max_ahead_ms: int | None = 500,
    ) -> None:
        self.store = store
        self.policy = policy or Policy()
        self.embedder = embedder
        self.engine = engine
        self.clock = clock
        self.node_id = _own_node_id(store, node_id)
        self.hlc = HybridLogicalClock(clock, max_ahead_ms=max_ahead_ms)
        self._keys_required = False
        self._replica: Replica | None = None
        self.mesh: Replicator | None = None
        """Set when this node replicates to peers: told of every committed write."""
        self._restored_flag: bool | None = None

    # -- helpers ------------------------------------------------------------------------

    def _authorize(self, principal: Principal, role: Role, namespace: str | None = None) -> Principal:
        """The caller, checked for ``role`` (and ``namespace``).

        The caller is never implicit: a missing Principal is a programming error, not the
        local admin, so a face that forgets to pass its caller fails loudly instead of
        silently acting with every right (issue 12).
        """
        if not isinstance(principal, Principal):
            raise TypeError("every service call needs the caller's Principal (memmesh.model.LOCAL_PRINCIPAL for local use)")
        who = principal
        if not who.has_role(role):
            raise ForbiddenError(f"role {who.role!r} may not do this; it needs {role!r}")
        if namespace is not None and not who.covers(namespace):
            raise ForbiddenError(f"namespace {namespace!r} is outside this key's namespaces ({', '.join(who.namespaces)})")
        return who

    def _authorize_store_wide(self, principal: Principal, what: str) -> Principal:
        """An admin for every namespace: for work that reads or changes the whole store."""
        who = self._authorize(principal, "admin")
        if who.prefixes() is not None:
            raise ForbiddenError(f"{what} covers every namespace; it needs an admin key not limited to some namespaces")
        return who

    def _check_content(self, content: str) -> None:
        if not isinstance(content, str) or not content.strip():
            raise InvalidInputError("content is empty: give the text to remember")
        size = len(content.encode("utf-8"))
        if size > self.policy.max_content_bytes:
            raise ContentTooLargeError(f"content is {size} bytes; the limit is {self.policy.max_content_bytes} (limits.max_content_bytes)")

    def _replicate(self, *, memories: Sequence[Memory] = (), tombstones: Sequence[Tombstone] = (), links: Sequence[Link] = ()) -> None:
        """After a local write committed: hand it to the mesh (when this node has peers),
        which ships it and, with a write quorum, raises ``quorum_not_met`` when too few
        nodes hold it. The local commit stays either way and keeps replicating."""
        if self.mesh is None:
            return
        from memmesh.federation.changes import SyncItem

        items = [SyncItem(seq=0, memory=m) for m in memories]
        items += [SyncItem(seq=0, tombstone=t) for t in tombstones]
        items += [SyncItem(seq=0, link=link) for link in links]
        self.mesh.replicate(items)

    @property
    def replica(self) -> Replica:
        """This node's side of replication: its change feed and applying peers' changes."""
        if self._replica is None:
            from memmesh.federation.replica import Replica

            self._replica = Replica(self)
        return self._replica

    def _next_version(self, previous: Version | None) -> Version:
        return next_version(previous, self.node_id, self.hlc)

    def _embed(self, texts: list[str]) -> tuple[np.ndarray | None, list[str]]:
        """Vectors for texts, or (None, notices) when the embedder fails: such writes are
        stored keyword-only and ``memmesh reindex`` embeds them later."""
        if self.embedder is None or not texts:
            return None, []
        try:
            return self.embedder.embed(texts), []
        except EmbedderError as exc:
            return None, [f"stored keyword-only, run `memmesh reindex` later: {exc.message}"]

    def _filter(
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
    ) -> Filter:
        ns = normalize_namespace(namespace) if namespace else None
        if ns is not None and not principal.covers(ns):
            raise ForbiddenError(f"namespace {ns!r} is outside this key's namespaces ({', '.join(principal.namespaces)})")
        return Filter(
            now=self.clock(),
            namespace=ns,
            scopes=None if ns else principal.prefixes(),
            tags=tuple(normalize_tags(list(tags) if not isinstance(tags, str) else [tags])) if tags else (),
            tier=_enum_value(Tier, tier, "tier"),
            kind=_enum_value(Kind, kind, "kind"),
            agent_id=check_text(agent_id, "agent_id") or None,
            since=_time(since, "since"),
            until=_time(until, "until"),
            as_of=_time(as_of, "as_of"),
        )

    def _check_top_k(self, top_k: int | None, name: str = "top_k") -> int:
        value = self.policy.default_top_k if top_k is None else top_k
        if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value > self.policy.max_page_size:
            raise InvalidInputError(f"{name} must be between 1 and {self.policy.max_page_size} (got {top_k!r})")
        return value

    # -- writes ---------------------------------------------------------------------------

    def add(self, data: NewMemory | Mapping[str, Any], *, principal: Principal) -> Memory:
        """Store one memory (de-duplicated by content, idempotent by client id)."""
        return self.add_many([data], principal=principal)[0]

    def add_many(self, items: Iterable[NewMemory | Mapping[str, Any]], *, principal: Principal) -> list[Memory]:
        """Store several memories in one transaction, embedding them in one batch.

        All or nothing: if any item is invalid or conflicts, none is stored.
        """
        who = self._authorize(principal, "writer")
        inputs = [self.check_new(item, principal=who) for item in items]
        inputs = self.governance.admit_writes(who, inputs)
        vectors, _ = self._embed([embed_text(n.title, n.content) for n in inputs])
        now = self.clock()
        stored: list[Memory] = []
        with self.store.write() as tx:
            written: list[str] = []
            for i, new in enumerate(inputs):
                vector = vectors[i] if vectors is not None else None
                memory, wrote = self._insert_new(tx, new, who, now, vector)
                stored.append(memory)
                if wrote:
                    written.append(memory.namespace)
            # Charged after the fact, still inside the transaction (over quota rolls it all
            # back): a retry of a stored id or a de-duplicated write stores nothing, so it
            # costs nothing, and a client that lost its 201 can always confirm its write.
            self._charge_quota(tx, written, now)
        self._replicate(memories=stored)
        return stored

    def check_new(self, data: NewMemory | Mapping[str, Any], *, principal: Principal) -> NewMemory:
        """Validate one memory exactly as :meth:`add` would, writing nothing.

        Dry runs and importers call this to report each bad item with its reason instead of
        failing a whole batch; conflicts that need the write transaction (same title, same id
        with other content) are only found by the write itself.
        """
        new = parse_model(NewMemory, data)
        who = self._authorize(principal, "writer", new.namespace)
        _check_agent(who, new.agent_id)
        self._check_content(new.content)
        if new.valid_from and new.valid_to and new.valid_to <= new.valid_from:
            raise InvalidInputError("valid_to must be later than valid_from")
        return new

    def _insert(self, tx: WriteTx, new: NewMemory, who: Principal, now: datetime, vector: np.ndarray | None) -> Memory:
        return self._insert_new(tx, new, who, now, vector)[0]

    def _insert_new(self, tx: WriteTx, new: NewMemory, who: Principal, now: datetime, vector: np.ndarray | None) -> tuple[Memory, bool]:
        """The stored memory, and whether anything was written (False for an idempotent
        retry, a de-duplicated write or an update to the same values)."""
        digest = content_hash(new.namespace, new.content)
        if new.id is not None:
            existing = tx.get(new.id)
            if existing is not None and not who.covers(existing.namespace):
                raise NotFoundError(_hidden_id(new.id))
            if existing is not None:
                if existing.content_hash == digest:
                    return existing, False
                raise ConflictError(f"id {new.id} already names a memory with other content; use update to change it")
            self._check_former_id(tx, who, new.id, new.namespace)
        duplicate = tx.find_by_hash(new.namespace, digest)
        if duplicate is not None:
            return duplicate, False
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
                    patch = MemoryPatch(content=new.content, tags=new.tags or None, priority=new.priority, metadata=new.metadata or None)
                    updated = self._apply_update(tx, same_title, patch, who, now, vector)
                    return updated, updated is not same_title
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
            version=self._next_version(None),
        )
        seq = tx.next_seq()
        tx.insert_memory(memory, seq)
        if vector is not None and self.embedder is not None:
            tx.put_vector(memory.id, self.embedder.model_id, vector, seq)
        tx.add_history(HistoryEntry(memory_id=memory.id, event=HistoryEvent.add, new=_snapshot(memory), actor=who.agent_id, at=now))
        if superseded is not None:
            tx.put_link(Link(source_id=memory.id, target_id=superseded.id, relation=Relation.supersedes, created_at=now), seq)
        return memory, True

    def update(self, memory_id: str, changes: MemoryPatch | Mapping[str, Any], *, principal: Principal) -> Memory:
        """Change fields of a memory; records the old and new values in its history."""
        patch = parse_model(MemoryPatch, changes)
        if patch.content is not None:
            self._check_content(patch.content)
        who = self._authorize(principal, "writer")
        current = self.get(memory_id, principal=who)
        self._authorize(who, "writer", current.namespace)
        if patch.namespace is not None:
            self._authorize(who, "writer", patch.namespace)
        self.governance.check(
            who,
            "update",
            namespaces=[current.namespace, patch.namespace],
            payload={"memory_id": current.id, "changes": patch.model_dump(mode="json", exclude_none=True)},
        )
        vector = None
        if patch.content is not None or patch.title is not None:
            vectors, _ = self._embed([embed_text(patch.title or current.title, patch.content or current.content)])
            vector = vectors[0] if vectors is not None else None
        with self.store.write() as tx:
            fresh = tx.get(memory_id)
            if fresh is None:
                raise NotFoundError(f"no memory with id {memory_id}")
            updated = self._apply_update(tx, fresh, patch, who, self.clock(), vector)
            if updated is not fresh:  # an update to the same values writes nothing and costs nothing
                self._charge_quota(tx, [updated.namespace], self.clock())
        if updated is not fresh:
            self._replicate(memories=[updated])
        return updated

    def _apply_update(
        self, tx: WriteTx, current: Memory, patch: MemoryPatch, who: Principal, now: datetime, vector: np.ndarray | None
    ) -> Memory:
        changes = patch.model_dump(exclude_none=True)
        if "tier" in changes and "expires_at" not in changes:
            ttl = self.policy.ttl(patch.tier)  # type: ignore[arg-type]
            changes["expires_at"] = now + ttl if ttl else None
        updated = current.model_copy(update=changes)
        if updated.valid_from and updated.valid_to and updated.valid_to <= updated.valid_from:
            raise InvalidInputError("valid_to must be later than valid_from")
        updated.content_hash = content_hash(updated.namespace, updated.content)
        if updated.content_hash != current.content_hash:
            clash = tx.find_by_hash(updated.namespace, updated.content_hash)
            if clash is not None and clash.id != current.id:
                raise ConflictError(
                    f"memory {clash.id} in {updated.namespace!r} already has this content", details={"existing_id": clash.id}
                )
        old = {k: v for k, v in _snapshot(current).items() if k in changes}
        new = {k: v for k, v in _snapshot(updated).items() if k in changes}
        if old == new:
            return current
        updated.updated_at = now
        updated.version = self._next_version(current.version)
        seq = tx.next_seq()
        tx.update_memory(updated, seq)
        if vector is not None and self.embedder is not None:
            tx.put_vector(updated.id, self.embedder.model_id, vector, seq)
        tx.add_history(HistoryEntry(memory_id=updated.id, event=HistoryEvent.update, old=old, new=new, actor=who.agent_id, at=now))
        return updated

    def delete(self, memory_id: str, *, principal: Principal) -> Tombstone:
        """Delete a memory, leaving a tombstone; its links go with it."""
        who = self._authorize(principal, "writer")
        self.governance.check(who, "delete", ids=[memory_id], payload={"memory_id": memory_id})
        with self.store.write() as tx:
            current = tx.get(memory_id)
            if current is None or not who.covers(current.namespace):
                raise NotFoundError(f"no memory with id {memory_id}")
            self._charge_quota(tx, [current.namespace], self.clock())
            tombstone = self._delete(tx, current, who, self.clock())
        self._replicate(tombstones=[tombstone])
        return tombstone

    def _delete(self, tx: WriteTx, current: Memory, who: Principal, now: datetime) -> Tombstone:
        tombstone = Tombstone(
            id=current.id, namespace=current.namespace, deleted_at=now, actor=who.agent_id, version=self._next_version(current.version)
        )
        seq = tx.next_seq()
        tx.delete_links(current.id)
        tx.delete_memory(tombstone, seq)
        tx.add_history(HistoryEntry(memory_id=current.id, event=HistoryEvent.delete, old=_snapshot(current), actor=who.agent_id, at=now))
        return tombstone

    def delete_all(self, *, principal: Principal, everything: bool = False, **filters: Any) -> int:
        """Delete every memory matching the filters (a namespace or another filter is required
        unless ``everything=True``); returns how many were deleted."""
        if not everything and not any(v for v in filters.values()):
            raise InvalidInputError("delete_all needs a namespace or another filter (or everything=True)")
        who = self._authorize(principal, "writer")
        flt = self._filter(who, **filters)
        ids = sorted(self.store.matching_ids(flt))
        self.governance.check(who, "delete", ids=ids)
        deleted = 0
        now = self.clock()
        for start in range(0, len(ids), 500):
            with self.store.write() as tx:
                for memory_id in ids[start : start + 500]:
                    current = tx.get(memory_id)
                    if current is not None:
                        self._delete(tx, current, who, now)
                        deleted += 1
        return deleted

    def link(
        self,
        source_id: str,
        target_id: str,
        relation: Relation | str = Relation.related_to,
        *,
        valid_from: datetime | str | None = None,
        valid_until: datetime | str | None = None,
        principal: Principal,
    ) -> Link:
        """Create (or refresh) a typed link between two live memories."""
        rel = Relation(_enum_value(Relation, relation, "relation"))
        if source_id == target_id:
            raise InvalidInputError("a memory cannot link to itself")
        who = self._authorize(principal, "writer")
        now = self.clock()
        link = Link(
            source_id=source_id,
            target_id=target_id,
            relation=rel,
            valid_from=_time(valid_from, "valid_from"),
            valid_until=_time(valid_until, "valid_until"),
            observed_by=who.agent_id,
            created_at=now,
        )
        self.governance.check(
            who,
            "link",
            ids=[source_id, target_id],
            payload=link.model_dump(mode="json", include={"source_id", "target_id", "relation", "valid_from", "valid_until"}),
        )
        with self.store.write() as tx:
            for memory_id in (source_id, target_id):
                found = tx.get(memory_id)
                if found is None or not who.covers(found.namespace):
                    raise NotFoundError(f"no memory with id {memory_id}")
                if memory_id == source_id:
                    self._charge_quota(tx, [found.namespace], now)
            tx.put_link(link, tx.next_seq())
        self._replicate(links=[link])
        return link

    # -- reads ------------------------------------------------------------------------------

    def get(self, memory_id: str, *, principal: Principal, touch: bool = False) -> Memory:
        """One live memory by id (expired memories are not live)."""
        who = self._authorize(principal, "reader")
        memory = self.store.get(memory_id)
        if memory is None or (memory.expires_at is not None and memory.expires_at <= self.clock()):
            raise NotFoundError(f"no memory with id {memory_id}")
        if not who.covers(memory.namespace):
            raise NotFoundError(f"no memory with id {memory_id}")
        if touch:
            self._record_access([memory])
        return memory

    def list(self, *, limit: int = 50, cursor: str | None = None, principal: Principal, **filters: Any) -> Page:
        """Newest first, with an opaque cursor for the next page."""
        who = self._authorize(principal, "reader")
        limit = self._check_top_k(limit, "limit")
        flt = self._filter(who, **filters)
        items = self.store.list(flt, limit + 1, _decode_cursor(cursor) if cursor else None)
        next_cursor = _encode_cursor(items[limit - 1]) if len(items) > limit else None
        return Page(items=items[:limit], next_cursor=next_cursor)

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
    ) -> RecallResult:
        """Rank memories for a query (hybrid by default); counts as an access unless ``touch=False``."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query is empty: give words or a question to recall by")
        check_text(query, "query")
        if budget_tokens is not None and (not isinstance(budget_tokens, int) or budget_tokens < 1):
            raise InvalidInputError(f"budget_tokens must be a positive integer (got {budget_tokens!r})")
        who = self._authorize(principal, "reader")
        k = self._check_top_k(top_k)
        flt = self._filter(who, **filters)
        used, hits, notices = self.engine.run(query, flt, k, mode, explain, flt.now)
        hits, dropped = fill_budget(hits, budget_tokens)
        if touch and hits:
            self._record_access([h.memory for h in hits])
        return RecallResult(query=query, mode=used, hits=hits, dropped=dropped, notices=notices)

    def search(
        self,
        query: str,
        *,
        top_k: int | None = None,
        explain: bool = False,
        mode: str | None = None,
        touch: bool = False,
        principal: Principal,
        **filters: Any,
    ) -> RecallResult:
        """Keyword (BM25) search: plain ranking by the query's words, never an access.

        ``search`` means this on every face (Python, CLI, HTTP, MCP): it inspects what is
        stored without changing TTLs or promotion, and without write-order context. ``mode``
        and ``touch`` are accepted only with the values search already has, so a caller
        expecting meaning or access counting is told to use :meth:`recall`.
        """
        if mode not in (None, "keyword"):
            raise InvalidInputError(f"search is keyword-only (got mode={mode!r}): use recall for hybrid or vector ranking")
        if touch:
            raise InvalidInputError("search never counts as an access (got touch=True): use recall to count one")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query is empty: give words to search for")
        who = self._authorize(principal, "reader")
        k = self._check_top_k(top_k)
        flt = self._filter(who, **filters)
        used, hits, notices = self.engine.run(query, flt, k, "keyword", explain, flt.now, context=False)
        return RecallResult(query=query, mode=used, hits=hits, dropped=0, notices=notices)

    def _record_access(self, memories: list[Memory]) -> None:
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
                        self._promote(tx, current, now)

    def _promote(self, tx: WriteTx, current: Memory, now: datetime) -> None:
        promoted = current.model_copy(
            update={"tier": Tier.long, "expires_at": None, "updated_at": now, "version": self._next_version(current.version)}
        )
        tx.update_memory(promoted, tx.next_seq())
        tx.add_history(
            HistoryEntry(
                memory_id=current.id, event=HistoryEvent.promote, old={"tier": "mid"}, new={"tier": "long"}, actor="memmesh", at=now
            )
        )

    def history(self, memory_id: str, *, principal: Principal) -> list[HistoryEntry]:
        """Every change of a memory, oldest first (also for deleted memories)."""
        who = self._authorize(principal, "reader")
        visible = visible_history(who, self.store.history(memory_id))
        if not visible:
            raise NotFoundError(f"no memory with id {memory_id} (and no history of one)")
        return visible

    def links(self, memory_id: str, *, principal: Principal) -> list[Link]:
        """Links from and to a memory whose other end the caller may also see (a link to a
        hidden namespace would leak that memory's id and relation)."""
        who = self._authorize(principal, "reader")
        self.get(memory_id, principal=who)
        found = self.store.links(memory_id)
        if who.prefixes() is None:
            return found
        ends = self.store.get_many(list({end for link in found for end in (link.source_id, link.target_id)}))
        visible = {memory.id for memory in ends if who.covers(memory.namespace)}
        return [link for link in found if link.source_id in visible and link.target_id in visible]

    def stats(self, *, principal: Principal) -> Stats:
        """Counts by tier and namespace, links, memories expiring within a day, file size.

        A caller limited to some namespaces sees counts for those only (no other
        namespace's name or size leaks): links between its own memories, and a file size
        of 0, since the file holds namespaces it may not see.
        """
        who = self._authorize(principal, "reader")
        now = self.clock()
        soon = now + timedelta(hours=self.policy.expiring_soon_hours)
        full = self.store.stats(now, soon)
        scopes = who.prefixes()
        if scopes is None:
            return full
        live = self.store.matching_ids(Filter(now=now, scopes=scopes))
        by_tier = [
            TierCount(tier=t, count=n) for t in Tier if (n := len(self.store.matching_ids(Filter(now=now, scopes=scopes, tier=t.value))))
        ]
        return full.model_copy(
            update={
                "links_count": sum(1 for link in self.store.iter_links() if link.source_id in live and link.target_id in live),
                "db_size_bytes": 0,
                "total": len(live),
                "by_tier": by_tier,
                "by_namespace": [c for c in full.by_namespace if who.covers(c.namespace)],
                "expiring_soon": len(live - self.store.matching_ids(Filter(now=soon, scopes=scopes))),
            }
        )

    def namespaces(self, *, principal: Principal) -> list[NamespaceCount]:
        """Namespaces holding live memories, with counts, largest first (only the caller's)."""
        return self.stats(principal=principal).by_namespace

    def ready(self) -> dict[str, Any]:
        """Readiness: the store answers a query; raises a StorageError when it cannot.

        The one method without a caller: probes are anonymous by design. Faces show its
        result only through :meth:`readiness` or as the bare schema version (``/readyz``)."""
        return {
            "store": redact_url(self.store.url).split("@")[-1],
            "schema_version": self.store.schema_version,
            "changes": self.store.change_counter(),
        }

    def readiness(self, *, principal: Principal) -> dict[str, Any]:
        """:meth:`ready` as a caller may see it: the store's location and change counter are
        store-wide facts, shown only to an admin for every namespace."""
        who = self._authorize(principal, "reader")
        ready = self.ready()
        if who.role == "admin" and who.prefixes() is None:
            return ready
        return {"schema_version": ready["schema_version"]}

    # -- identity: agents and API keys ----------------------------------------------------

    def _access(self) -> Access:
        return Access(self.store, self.clock)

    def authenticate(self, token: str | None, *, require: bool = False) -> Principal:
        """The caller a bearer token stands for (see :meth:`memmesh.access.Access.authenticate`).

        Keys are required when the server says so (``require``: ``--require-auth`` or a
        non-loopback bind) or once any key was ever created in this store, revoked or not.
        """
        return self._access().authenticate(token, require=require or self.keys_required())

    def keys_required(self) -> bool:
        """True once any API key was ever created in this store (revoked keys included).

        Derived from the persisted key rows (never deleted, only revoked), not from "an
        active key exists": revoking the last key must leave a server closed, not open
        (issue 12). Once true it stays true, so it is cached and costs no query per request.
        """
        if not self._keys_required:
            self._keys_required = bool(self.store.api_keys(include_revoked=True)) or self._restored_with_keys()
        return self._keys_required

    def _restored_with_keys(self) -> bool:
        """True when this store was restored from a snapshot that held API keys (which are not
        copied): it must require keys like its source did. Read once per service (a restore
        writes the flag before any memory), so an open server pays no write per request."""
        if self._restored_flag is None:
            from memmesh.access import KEYS_REQUIRED_META

            with self.store.write() as tx:
                self._restored_flag = bool(tx.get_meta(KEYS_REQUIRED_META))
        return self._restored_flag

    def auth_enabled(self) -> bool:
        """True when at least one active API key exists (a network bind needs one to be usable)."""
        return self.store.has_api_keys()

    def register_agent(
        self,
        agent_id: str,
        *,
        display_name: str | None = None,
        role: str = "writer",
        namespaces: Sequence[str] | str | None = None,
        principal: Principal,
    ) -> Agent:
        """Register (or update) an agent identity; admin only."""
        who = self._authorize(principal, "admin")
        return self._access().register_agent(agent_id, display_name, role, namespaces, who)

    def agents(self, *, principal: Principal) -> list[Agent]:
        """Registered agents; admin only, and a namespace-scoped admin sees only the agents
        whose namespaces all lie inside its own."""
        who = self._authorize(principal, "admin")
        return [agent for agent in self._access().agents() if manages(who, agent.namespaces)]

    def create_key(
        self, agent_id: str, *, role: str = "writer", namespaces: Sequence[str] | str | None = None, principal: Principal
    ) -> CreatedKey:
        """A new API key for an agent; its text is in the result and nowhere else, ever."""
        who = self._authorize(principal, "admin")
        return self._access().create_key(agent_id, role, namespaces, who)

    def keys(self, *, include_revoked: bool = False, principal: Principal) -> list[ApiKey]:
        """API keys (without secrets); admin only, and a namespace-scoped admin sees only the
        keys whose namespaces all lie inside its own (never a global admin's)."""
        who = self._authorize(principal, "admin")
        return [key for key in self._access().keys(include_revoked) if manages(who, key.namespaces)]

    def revoke_key(self, key_id: str, *, principal: Principal) -> ApiKey:
        """Revoke an API key; admin only, and only keys this admin may see (:meth:`keys`):
        another scope's key answers exactly like a key that does not exist."""
        who = self._authorize(principal, "admin")
        return self._access().revoke_key(key_id, who)

    def _charge_quota(self, tx: WriteTx, namespaces: Sequence[str], now: datetime) -> None:
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

    # -- maintenance -----------------------------------------------------------------------

    def gc(self, *, principal: Principal) -> GcReport:
        """Archive expired memories and purge tombstones past the retention.

        Store-wide, so it needs an admin not limited to some namespaces."""
        self._authorize_store_wide(principal, "garbage collection")
        now = self.clock()
        archived = 0
        while True:
            with self.store.write() as tx:
                batch = tx.expired(now, 500)
                for memory in batch:
                    tx.archive(memory, now, "expired")
                    tx.add_history(HistoryEntry(memory_id=memory.id, event=HistoryEvent.archive, old=_snapshot(memory), actor="gc", at=now))
            archived += len(batch)
            if len(batch) < 500:
                break
        with self.store.write() as tx:
            purged = tx.purge_tombstones(now - timedelta(days=self.policy.tombstone_retention_days))
        return GcReport(archived=archived, tombstones_purged=purged)

    def backup_now(self, *, retain: int | None = None, principal: Principal) -> Any:
        """Snapshot the whole store into the configured backup folder (``<data dir>/backups``).

        For the HTTP and MCP faces; the CLI's ``memmesh backup`` may also choose a folder.
        Needs an admin whose keys cover every namespace, since a snapshot holds them all.
        """
        self._authorize_store_wide(principal, "a backup")
        if retain is not None and (not isinstance(retain, int) or isinstance(retain, bool) or retain < 1):
            raise InvalidInputError(f"retain must be a positive integer (got {retain!r})")
        if self.policy.backup_dir is None:
            raise InvalidInputError("no backup folder is configured")
        from memmesh.io.backup import backup

        return backup(self.store, self.policy.backup_dir, node_id=self.node_id, now=self.clock(), retain=retain)

    def reindex_pending(self, *, principal: Principal) -> list[str]:
        """Ids of memories without a vector from the current embedder (store-wide: an admin
        for every namespace)."""
        self._authorize_store_wide(principal, "reindexing")
        if self.embedder is None:
            return []
        return self.store.ids_missing_vectors(self.embedder.model_id)

    def reindex(self, *, batch_size: int = 64, progress: Progress | None = None, principal: Principal) -> int:
        """Embed every memory that lacks a vector from the current model; returns how many."""
        self._authorize_store_wide(principal, "reindexing")
        if self.embedder is None:
            raise InvalidInputError("no embedder is configured (embeddings.provider = none): nothing to reindex")
        pending = self.reindex_pending(principal=principal)
        done = 0
        for start in range(0, len(pending), batch_size):
            memories = self.store.get_many(pending[start : start + batch_size])
            vectors = self.embedder.embed([embed_text(m.title, m.content) for m in memories])
            with self.store.write() as tx:
                seq = tx.next_seq()
                for memory, vector in zip(memories, vectors, strict=True):
                    tx.put_vector(memory.id, self.embedder.model_id, vector, seq)
            done += len(memories)
            if progress:
                progress(len(memories))
        return done

    def put_exact(self, memory: Memory, *, history: Sequence[HistoryEntry] = (), principal: Principal) -> bool:
        """Write a memory exactly as given (import, restore, migration); idempotent.

        Returns True if anything was written: absent → inserted with its history; present
        with the same content hash and update time → skipped; otherwise the newer wins.
        """
        who = self._authorize(principal, "writer", memory.namespace)
        self._check_content(memory.content)
        if memory.content_hash != content_hash(memory.namespace, memory.content):
            raise InvalidInputError(f"memory {memory.id}: content_hash does not match its namespace and content")
        stray = next((e for e in history if e.memory_id != memory.id), None)
        if stray is not None:
            raise InvalidInputError(f"memory {memory.id}: its history holds an entry of another memory ({stray.memory_id})")
        self._check_exact_target(who, memory.id)
        if _is_stale(self.store.get(memory.id), memory):
            return False
        vectors, _ = self._embed([embed_text(memory.title, memory.content)])
        with self.store.write() as tx:
            existing = tx.get(memory.id)
            if existing is not None and not who.covers(existing.namespace):
                raise NotFoundError(_hidden_id(memory.id))
            if _is_stale(existing, memory):
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
                if deleted:  # brought back after a delete: the history must not end in `delete`
                    tx.add_history(
                        HistoryEntry(
                            memory_id=memory.id, event=HistoryEvent.restore, new=_snapshot(memory), actor=who.agent_id, at=self.clock()
                        )
                    )
            else:
                tx.update_memory(memory, seq)
                tx.add_history(
                    HistoryEntry(
                        memory_id=memory.id,
                        event=HistoryEvent.restore,
                        old=_snapshot(existing),
                        new=_snapshot(memory),
                        actor=who.agent_id,
                        at=self.clock(),
                    )
                )
            if vectors is not None and self.embedder is not None:
                tx.put_vector(memory.id, self.embedder.model_id, vectors[0], seq)
        return True

    def check_exact(self, memory: Memory, *, principal: Principal) -> None:
        """Raise what :meth:`put_exact` would refuse for this caller, writing nothing (import
        checks every record before it writes the first)."""
        who = self._authorize(principal, "writer", memory.namespace)
        self._check_exact_target(who, memory.id)

    def _check_exact_target(self, who: Principal, memory_id: str) -> None:
        """An exact write may replace only a memory the caller can see; an id held in another
        namespace gets the not-found-shaped answer (no 409 that would confirm it exists).
        The same holds for an id that a deleted or archived memory, or history, holds in a
        namespace the caller cannot see: writing it would take over that memory's history."""
        existing = self.store.get(memory_id)
        if existing is not None and not who.covers(existing.namespace):
            raise NotFoundError(_hidden_id(memory_id))
        if existing is None and not all(who.covers(ns) for ns in self._former_namespaces(None, memory_id)):
            raise NotFoundError(_hidden_id(memory_id))

    def _former_namespaces(self, tx: WriteTx | None, memory_id: str) -> set[str]:
        """Namespaces an id not live now was ever held in: its tombstone, the archive, history."""
        found: set[str] = set()
        tombstone = tx.tombstone(memory_id) if tx is not None else None
        if tombstone is not None:
            found.add(tombstone.namespace)
        found.update(a.memory.namespace for a in self.store.archived(Filter(now=self.clock(), ids=(memory_id,), include_expired=True), 1))
        for entry in self.store.history(memory_id):
            found.update(snap["namespace"] for snap in (entry.old, entry.new) if isinstance(snap, dict) and "namespace" in snap)
        return found

    def _check_former_id(self, tx: WriteTx, who: Principal, memory_id: str, namespace: str) -> None:
        """A client-chosen id of a deleted or archived memory: hidden unless every namespace it
        was held in is visible (same answer as a live hidden id), and never re-used in another
        namespace (that would graft the old memory's history onto a new one; restore brings it back)."""
        former = self._former_namespaces(tx, memory_id)
        if not former:
            return
        if not all(who.covers(ns) for ns in former):
            raise NotFoundError(_hidden_id(memory_id))
        others = sorted(ns for ns in former if ns != namespace)
        if others:
            raise ConflictError(
                f"id {memory_id} belonged to a deleted or archived memory in namespace {others[0]!r}; "
                "bring it back with restore (the MCP tool memory_restore, or lifecycle.restore) instead, or leave id out",
                details={"namespace": others[0]},
            )

    def put_link(self, link: Link, *, principal: Principal) -> bool:
        """Write a link exactly as given (import, restore); skipped if an end is missing or
        lies in a namespace the caller may not write."""
        who = self._authorize(principal, "writer")
        with self.store.write() as tx:
            ends = [tx.get(link.source_id), tx.get(link.target_id)]
            if any(end is None or not who.covers(end.namespace) for end in ends):
                return False
            tx.put_link(link, tx.next_seq())
        return True

    # -- focused core modules over this service (each small, each reusing the checks above) --

    @property
    def lifecycle(self) -> Lifecycle:
        """promote, forget (bulk, with dry run), restore, consolidate, link invalidation, archive."""
        from memmesh.lifecycle import Lifecycle

        return Lifecycle(self)

    @cached_property
    def governance(self) -> Governance:
        """Namespace standards and pending actions; each write path calls its check once."""
        from memmesh.governance import Governance

        return Governance(self)

    @property
    def graph(self) -> Graph:
        """Neighbourhoods, timelines and paths over links, as of a time."""
        from memmesh.graph import Graph

        return Graph(self)

    @property
    def entities(self) -> Entities:
        """Named memories with aliases."""
        from memmesh.entities import Entities

        return Entities(self)

    @property
    def survey(self) -> Survey:
        """Namespace taxonomy, duplicate checks, session briefings, quota use."""
        from memmesh.survey import Survey

        return Survey(self)


def _own_node_id(store: Store, configured: str | None) -> str:
    """This node's id: the one persisted in the store. A configured ``--node-id`` is adopted
    by a store that holds no versions yet (no memory, tombstone, conflict or peer: API keys
    and agents made before the first ``serve`` do not count), and must match it otherwise: a
    store keeps its id, since peers hold cursors and version clocks under it."""
    held = store.node_id()
    if not configured or configured == held:
        return held
    from memmesh.federation.changes import NODE_ID_PATTERN

    if not re.match(NODE_ID_PATTERN, configured):
        raise ConfigError(f"node id {configured!r} is not valid: use letters, digits, '.', '_', ':' or '-' (at most 64)")
    named = next(store.iter_memories(batch=1), None) is not None or store.tombstones_since(0) or store.conflicts() or store.peers()
    with store.write() as tx:
        if named and tx.get_meta("node_id") != configured:  # keys and agents alone name no node: still adoptable
            raise ConfigError(
                f"this store belongs to node {held!r}; it cannot become {configured!r} (its versions and its peers' cursors "
                "name the old id): drop --node-id, or start the new node on a new store"
            )
        tx.set_meta("node_id", configured)
    return configured


def visible_history(who: Principal, entries: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    """The entries written while the memory was in a namespace ``who`` covers.

    The namespace is replayed entry by entry (an update names it only when it changed), so a
    memory moved out of a namespace shows nothing written after the move to callers of the old
    one, and a memory moved in does not reveal what it held elsewhere (issue 12, finding 3).
    """
    if who.prefixes() is None:
        return list(entries)
    visible: list[HistoryEntry] = []
    namespace: str | None = None
    for entry in entries:
        before = (entry.old or {}).get("namespace") or namespace
        after = (entry.new or {}).get("namespace") or before
        if any(ns is not None and who.covers(ns) for ns in (before, after)):
            visible.append(entry)
        namespace = after
    if namespace is None or not who.covers(namespace):
        return []
    return visible


def _check_agent(who: Principal, agent_id: str | None) -> None:
    """A keyed caller writes as its own agent; only an admin for every namespace may attribute
    a memory to another agent (e.g. when replaying a migration)."""
    if agent_id is None or who.agent_id is None or agent_id == who.agent_id:
        return
    if who.role == "admin" and who.prefixes() is None:
        return
    raise ForbiddenError(f"agent_id {agent_id!r} is not this key's agent ({who.agent_id!r}): leave agent_id out, the key's agent is used")


def _hidden_id(memory_id: str) -> str:
    """The answer for an id held in a namespace the caller cannot see: the same words as for
    an id nobody holds, so the error tells nothing about other namespaces."""
    return f"no memory with id {memory_id} is visible to this key; leave id out or choose another"


def _is_stale(existing: Memory | None, incoming: Memory) -> bool:
    """True when the stored copy is the same or newer, so writing ``incoming`` changes nothing."""
    return existing is not None and (existing == incoming or existing.updated_at >= incoming.updated_at)


def _snapshot(memory: Memory) -> dict[str, Any]:
    return memory.model_dump(mode="json", exclude={"access_count", "last_accessed_at", "version"})


def _enum_value(enum: Any, value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return enum(value).value
    except ValueError:
        raise InvalidInputError(f"unknown {name} {value!r}: use one of {', '.join(e.value for e in enum)}") from None


def _time(value: datetime | str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return parse_ts(value)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+23:00 has no UTC equivalent
        raise InvalidInputError(f"{name} {str(value)!r} is out of range once converted to UTC") from None
    except ValueError:
        raise InvalidInputError(f"{name} {value!r} is not a date/time: use RFC 3339, e.g. 2026-01-31T12:00:00Z") from None


def _encode_cursor(memory: Memory) -> str:
    raw = json.dumps([format_ts(memory.created_at), memory.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, memory_id = json.loads(raw)
        if not isinstance(created_at, str) or not isinstance(memory_id, str):
            raise ValueError
        parse_ts(created_at)
        return created_at, memory_id
    except (ValueError, TypeError):
        raise InvalidInputError("invalid cursor: pass back the next_cursor value of the previous page unchanged") from None


__all__ = ["Policy", "Service", "content_hash"]
