"""The core every face calls: validation, rules, history, versions and access counting.

Nothing here knows about HTTP, MCP or the terminal. Each public method takes plain values
(or the pydantic inputs of :mod:`memmesh.model`) and a required :class:`Principal` (the
caller is never implicit: the embedded API and the CLI pass ``LOCAL_PRINCIPAL``), checks
the caller's role and namespaces, does its work in one store transaction and returns
model values. Faces only parse, call one method and render.
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from memmesh.access import Access, manages
from memmesh.audit.log import AuditLog
from memmesh.clock import Clock, HybridLogicalClock, format_ts, parse_ts
from memmesh.entities import Entities
from memmesh.errors import ConfigError, InvalidInputError, NotFoundError, StorageError
from memmesh.graph import Graph
from memmesh.kernel import (
    Kernel,
    Policy,
    authorize,
    authorize_store_wide,
    check_agent,
    check_query_size,
    check_valid_span,
    content_hash,
    embed_text,
    is_stale,
    is_store_admin,
    visible_history,
)
from memmesh.lifecycle import Lifecycle
from memmesh.model import (
    NODE_ID_PATTERN,
    NODE_ID_RULE,
    Agent,
    ApiKey,
    CreatedKey,
    GcReport,
    HistoryEntry,
    Link,
    Memory,
    MemoryPatch,
    NamespaceCount,
    NewMemory,
    Page,
    Principal,
    RecallResult,
    Relation,
    Stats,
    Tier,
    TierCount,
    Tombstone,
    batch_items,
    check_text,
    parse_model,
)
from memmesh.recall.background import BackgroundEmbedder
from memmesh.recall.embedders import Embedder
from memmesh.recall.engine import RecallEngine
from memmesh.recall.ranking import fill_budget
from memmesh.redact import redact_url
from memmesh.store.base import Filter, Store
from memmesh.survey import Survey
from memmesh.values import enum_member, parse_time

if TYPE_CHECKING:
    from memmesh.bus.core import Bus, BusPolicy
    from memmesh.curator import Curator, CuratorPolicy
    from memmesh.extraction.core import Extraction, ExtractionPolicy
    from memmesh.federation.changes import SyncItem
    from memmesh.federation.replica import Replica
    from memmesh.governance import Governance
    from memmesh.llm.client import LLMClient
    from memmesh.sessions.core import SessionPolicy, Sessions
    from memmesh.subscriptions import Inbox, SubscriptionPolicy, Subscriptions
    from memmesh.transfer import Transfer

log = logging.getLogger(__name__)


class Replicator(Protocol):
    """What the service needs of a running mesh (:class:`memmesh.federation.outbox.Mesh`)."""

    def replicate(self, items: list[SyncItem]) -> None: ...
    def notify(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


Progress = Callable[[int], None]
"""Called with the number of items just finished, for progress bars."""


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
        self.audit = AuditLog(self)
        self.store: Store = self.audit.wrap(store)  # every write transaction appends to the audit log
        self.engine = engine
        self.node_id = _own_node_id(store, node_id)
        self.hlc = HybridLogicalClock(clock, max_ahead_ms=max_ahead_ms)
        self.kernel = Kernel(self.store, policy=policy or Policy(), embedder=embedder, clock=clock, node_id=self.node_id, hlc=self.hlc)
        """The write kernel and rules that this service and its core modules share."""
        self.lifecycle = Lifecycle(self.kernel, self)
        """promote, forget (bulk, with dry run), restore, consolidate, link invalidation, archive."""
        self.graph = Graph(self.kernel, self)
        """Neighbourhoods, timelines and paths over links, as of a time."""
        self.entities = Entities(self)
        """Named memories with aliases."""
        self.survey = Survey(self.kernel, self)
        """Namespace taxonomy, duplicate checks, session briefings, quota use."""
        self._keys_required = False
        self._replica: Replica | None = None
        self.mesh: Replicator | None = None
        """Set when this node replicates to peers: told of every committed write."""
        self._restored_flag: bool | None = None

    # -- what the kernel holds (one copy: replacing one here replaces it for every write) --

    @property
    def embedder(self) -> Embedder | None:
        """The embedder writes use (None: keyword-only)."""
        return self.kernel.embedder

    @embedder.setter
    def embedder(self, embedder: Embedder | None) -> None:
        self.kernel.embedder = embedder

    @property
    def policy(self) -> Policy:
        """The configured rules (limits, TTLs, quotas)."""
        return self.kernel.policy

    @property
    def clock(self) -> Clock:
        """The time every rule uses."""
        return self.kernel.clock

    # -- helpers ------------------------------------------------------------------------

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

    background: BackgroundEmbedder | None = None
    """Embeds writes after they commit (set by compose.build when ``embeddings.background``;
    None: every write embeds before it commits)."""

    def close(self, timeout: float | None = None) -> None:
        """Embed what is still queued (up to ``timeout`` seconds, None: the background
        worker's ``close_wait_s``, ``embeddings.close_wait_s``; then the batch in progress;
        what is left stays marked pending, a warning says how many, and the next process
        that opens the store or ``memmesh reindex`` embeds it), then close the store."""
        extraction = self.__dict__.get("_extraction")
        if extraction is not None:
            extraction.close()  # running extractions finish while the store is still open
        if self.background is not None:
            self.background.stop(timeout)
        self.store.close()

    def end_waits(self) -> int | None:
        """The server is stopping: end every long-poll at once (each answers as an empty poll,
        see :meth:`Bus.end_waits`), so the shutdown waits for writes in flight, not for
        idle polls to time out. Writes still run and commit. How many long-polls were
        waiting; None when the waits had already ended."""
        return self.bus.end_waits()

    def await_vectors(self, timeout: float = 30.0) -> bool:
        """Wait until every write queued for background embedding so far has its vector
        (False when ``timeout`` passed first). Work that compares stored vectors (the
        curator) calls this first, as recall does, so a memory written a moment ago is
        compared by meaning and not silently by words only."""
        return self.background is None or self.background.drain(timeout)

    bus_policy: BusPolicy | None = None
    """The ``[bus]`` rules (set by compose.build; None = the defaults)."""
    session_policy: SessionPolicy | None = None
    """The ``[sessions]`` rules (set by compose.build; None = the defaults)."""
    curator_policy: CuratorPolicy | None = None
    """The ``[curator]`` rules (set by compose.build; None = the defaults)."""

    @property
    def bus(self) -> Bus:
        """The message bus on this store (memmesh.bus): conversations, cursors, task leases."""
        bus: Bus | None = self.__dict__.get("_bus")
        if bus is None:
            from memmesh.bus.core import Bus

            bus = self.__dict__["_bus"] = Bus(self, self.bus_policy)
        return bus

    subscription_policy: SubscriptionPolicy | None = None
    """The ``[subscriptions]`` rules (set by compose.build; None = the defaults)."""

    @cached_property
    def subscriptions(self) -> Subscriptions:
        """Webhook subscriptions to namespace changes and their delivery queue (memmesh.subscriptions)."""
        from memmesh.subscriptions import Subscriptions

        return Subscriptions(self, self.subscription_policy)

    @cached_property
    def inbox(self) -> Inbox:
        """Agent inboxes: notify another agent, read one's own (memmesh.subscriptions.inbox)."""
        from memmesh.subscriptions import Inbox

        return Inbox(self, self.subscription_policy)

    @property
    def sessions(self) -> Sessions:
        """Long conversations kept as memories (memmesh.sessions): append, rehydrate, list."""
        sessions: Sessions | None = self.__dict__.get("_sessions")
        if sessions is None:
            from memmesh.sessions.core import Sessions

            sessions = self.__dict__["_sessions"] = Sessions(self, self.session_policy, self.llm)
        return sessions

    extraction_policy: ExtractionPolicy | None = None
    """The ``[extraction]`` rules (set by compose.build; None = the defaults)."""
    llm: LLMClient | None = None
    """The ``[llm]`` client (set by compose.build when llm.base_url is configured)."""

    @property
    def extraction(self) -> Extraction:
        """Remember conversations: turns first, then extracted facts (memmesh.extraction)."""
        extraction: Extraction | None = self.__dict__.get("_extraction")
        if extraction is None:
            from memmesh.extraction.core import Extraction

            extraction = self.__dict__["_extraction"] = Extraction(self, self.extraction_policy, self.llm)
        return extraction

    @property
    def replica(self) -> Replica:
        """This node's side of replication: its change feed and applying peers' changes."""
        if self._replica is None:
            from memmesh.federation.replica import Replica

            self._replica = Replica(self)
        return self._replica

    # -- writes ---------------------------------------------------------------------------

    def add(self, data: NewMemory | Mapping[str, Any], *, principal: Principal, wait: bool = False) -> Memory:
        """Store one memory (de-duplicated by content, idempotent by client id)."""
        return self.add_many([data], principal=principal, wait=wait)[0]

    def add_many(
        self,
        items: Iterable[NewMemory | Mapping[str, Any] | str],
        *,
        principal: Principal,
        within: Callable[[Any, builtins.list[Memory]], None] | None = None,
        unqueued: tuple[str, str, str] | None = None,
        wait: bool = False,
    ) -> builtins.list[Memory]:
        """Store several memories in one transaction, embedding them in one batch.

        With a background embedder (``embeddings.background``, the default) the write commits
        without waiting for the embedder and the vectors follow within milliseconds
        (:mod:`memmesh.recall.background`); ``wait=True`` embeds before committing, for a
        caller that needs the vector stored when this returns.

        All or nothing: if any item is invalid or conflicts, none is stored. ``within(tx,
        stored)`` runs inside that transaction after the inserts (links, a session's turn
        counter): whatever it writes commits with the memories, and if it raises, nothing does.
        An approval would replay the memories without it, so such a write is refused where
        writes need approval; ``unqueued`` words the refusal (what, why, how to get it in),
        and is required with ``within`` (a ``TypeError`` without it, before anything is read).
        """
        outcome = self.add_many_outcome(items, principal=principal, within=within, unqueued=unqueued, wait=wait)
        return [memory for memory, _ in outcome]

    def add_outcome(self, data: NewMemory | Mapping[str, Any], *, principal: Principal, wait: bool = False) -> tuple[Memory, bool]:
        """Like :meth:`add`, and whether a new memory was created: False when the same content
        was already stored in that namespace (then its tags gained the new ones, nothing else)."""
        return self.add_many_outcome([data], principal=principal, wait=wait)[0]

    def add_many_outcome(
        self,
        items: Iterable[NewMemory | Mapping[str, Any] | str],
        *,
        principal: Principal,
        within: Callable[[Any, builtins.list[Memory]], None] | None = None,
        unqueued: tuple[str, str, str] | None = None,
        wait: bool = False,
    ) -> builtins.list[tuple[Memory, bool]]:
        """:meth:`add_many`, each memory with whether it was created (see :meth:`add_outcome`).
        A ``within`` needs its own ``unqueued``: only the caller can say what its write is
        and how its user gets it in where writes need approval."""
        if within is not None and unqueued is None:
            raise TypeError(
                "add_many with within= needs unqueued=(what the write is, why an approval cannot replay it, how to get it in): "
                "the words of its refusal where writes need approval"
            )
        who = authorize(principal, "writer")
        inputs = [self.check_new(item, principal=who) for item in batch_items(items)]
        inputs = self.governance.admit_writes(who, inputs, unqueued=unqueued)
        deferred = self.background is not None and not wait
        vectors = None if deferred else self.kernel.embed([embed_text(n.title, n.content) for n in inputs])[0]
        now = self.clock()
        stored: list[Memory] = []
        created: list[bool] = []
        owed: list[str] = []
        with self.store.write() as tx:
            written: list[str] = []
            for i, new in enumerate(inputs):
                vector = vectors[i] if vectors is not None else None
                memory, wrote, is_new = self.kernel.insert_outcome(tx, new, who, now, vector)
                stored.append(memory)
                created.append(is_new)
                if wrote:
                    written.append(memory.namespace)
                    if is_new:  # a repeated store only merged tags: its vector stands
                        owed.append(memory.id)
            if within is not None:
                within(tx, stored)
            # Charged after the fact, still inside the transaction (over quota rolls it all
            # back): a retry of a stored id or a de-duplicated write stores nothing, so it
            # costs nothing, and a client that lost its 201 can always confirm its write.
            self.kernel.charge_quota(tx, written, now)
            if deferred and owed:
                tx.mark_vectors_pending(owed, tx.next_seq())
        if deferred and owed:
            assert self.background is not None
            self.background.submit(owed)
        self._replicate(memories=stored)
        return list(zip(stored, created, strict=True))

    def add_linked(
        self, data: NewMemory | Mapping[str, Any], links: Sequence[Mapping[str, Any]], *, principal: Principal, wait: bool = False
    ) -> tuple[Memory, builtins.list[Link]]:
        """Store one memory with links from it, in one transaction: the memory and every link
        commit together, or (a missing target, a bad relation, any failure) nothing does.

        Each link is ``{"target_id": ID, "relation": "related_to"}`` (relation optional)."""
        memory, made, _ = self.add_linked_outcome(data, links, principal=principal, wait=wait)
        return memory, made

    def add_linked_outcome(
        self, data: NewMemory | Mapping[str, Any], links: Sequence[Mapping[str, Any]], *, principal: Principal, wait: bool = False
    ) -> tuple[Memory, builtins.list[Link], bool]:
        """:meth:`add_linked`, and whether the memory was created (False: the same content was
        already stored, and the links were added to that memory), for faces that say so."""
        who = authorize(principal, "writer")
        if isinstance(links, str | bytes) or not isinstance(links, Sequence):
            raise InvalidInputError("links must be a list of {target_id, relation} objects")
        wanted: list[tuple[str, Relation]] = []
        for i, item in enumerate(links):
            target = item.get("target_id") if isinstance(item, Mapping) else None
            if not isinstance(target, str) or not target.strip():
                raise InvalidInputError(f"link {i + 1} needs a target_id (the id of a stored memory)")
            wanted.append((target.strip(), enum_member(Relation, item.get("relation", Relation.related_to.value), "relation")))
        # no payload: a link an approver must see first cannot be queued before its memory exists
        self.governance.check(who, "link", ids=[t for t, _ in wanted])
        made: list[Link] = []

        def put_links(tx: Any, stored: builtins.list[Memory]) -> None:
            source = stored[0]
            for target, relation in wanted:
                found = tx.get(target)
                if found is None or not who.covers(found.namespace) or target == source.id:
                    raise NotFoundError(f"cannot link to {target}: no such memory (nothing was stored)")
                link = Link(source_id=source.id, target_id=target, relation=relation, observed_by=who.agent_id, created_at=self.clock())
                tx.put_link(link, tx.next_seq())
                made.append(link)

        if not wanted:  # a plain store, which an approval replays whole
            memory, created = self.add_many_outcome([data], principal=who, wait=wait)[0]
            return memory, made, created
        unqueued = (
            "a memory stored with links",
            "an approval would store it without its links",
            "store it without links (it is queued for approval), then link it once it is approved",
        )
        memory, created = self.add_many_outcome([data], principal=who, within=put_links, unqueued=unqueued, wait=wait)[0]
        self._replicate(links=made)
        return memory, made, created

    def check_new(self, data: NewMemory | Mapping[str, Any], *, principal: Principal) -> NewMemory:
        """Validate one memory exactly as :meth:`add` would, writing nothing.

        Dry runs and importers call this to report each bad item with its reason instead of
        failing a whole batch; conflicts that need the write transaction (same title, same id
        with other content) are only found by the write itself.
        """
        new = parse_model(NewMemory, data)
        who = authorize(principal, "writer", new.namespace)
        check_agent(who, new.agent_id)
        self.kernel.check_content(new.content)
        check_valid_span(new.valid_from, new.valid_to)
        return new

    def update(self, memory_id: str, changes: MemoryPatch | Mapping[str, Any], *, principal: Principal, wait: bool = False) -> Memory:
        """Change fields of a memory; records the old and new values in its history."""
        patch = parse_model(MemoryPatch, changes)
        if patch.content is not None:
            self.kernel.check_content(patch.content)
        who = authorize(principal, "writer")
        current = self.get(memory_id, principal=who)
        authorize(who, "writer", current.namespace)
        if patch.namespace is not None:
            authorize(who, "writer", patch.namespace)
        self.governance.check_update(who, current, patch)
        self.governance.check_update_tags(who, current, patch)
        vector = None
        deferred = self.background is not None and not wait
        if (patch.content is not None or patch.title is not None) and not deferred:
            vectors, _ = self.kernel.embed([embed_text(patch.title or current.title, patch.content or current.content)])
            vector = vectors[0] if vectors is not None else None
        owed = False
        with self.store.write() as tx:
            fresh = tx.get(memory_id)
            if fresh is None:
                raise NotFoundError(f"no memory with id {memory_id}")
            updated = self.kernel.update(tx, fresh, patch, who, self.clock(), vector)
            if updated is not fresh:  # an update to the same values writes nothing and costs nothing
                self.kernel.charge_quota(tx, [updated.namespace], self.clock())
                owed = deferred and (updated.content, updated.title) != (fresh.content, fresh.title)
                if owed:
                    tx.mark_vectors_pending([updated.id], tx.next_seq())
        if owed and self.background is not None:
            self.background.submit([updated.id])
        if updated is not fresh:
            self._replicate(memories=[updated])
        return updated

    def delete(self, memory_id: str, *, principal: Principal) -> Tombstone:
        """Delete a memory, leaving a tombstone; its links go with it."""
        who = authorize(principal, "writer")
        self.governance.check(who, "delete", ids=[memory_id], payload={"memory_id": memory_id})
        with self.store.write() as tx:
            current = tx.get(memory_id)
            gone = tx.tombstone(memory_id) if current is None else None  # by primary key: cheap
            if gone is not None and who.covers(gone.namespace):  # a namespace the caller cannot see: no answer confirms the id
                raise NotFoundError(
                    f"memory {memory_id} was deleted already ({gone.deleted_at.isoformat(timespec='seconds')}); "
                    f"bring it back with undelete: memmesh undelete {memory_id}, the MCP tool memory_restore, or lifecycle.restore"
                )
            if current is None or not who.covers(current.namespace):
                raise NotFoundError(f"no memory with id {memory_id}")
            self.kernel.charge_quota(tx, [current.namespace], self.clock())
            tombstone = self.kernel.delete(tx, current, who, self.clock())
        self._replicate(tombstones=[tombstone])
        return tombstone

    def delete_all(self, *, principal: Principal, everything: bool = False, **filters: Any) -> int:
        """Delete every memory matching the filters (a namespace or another filter is required
        unless ``everything=True``); returns how many were deleted."""
        if not everything and not any(v for v in filters.values()):
            raise InvalidInputError("delete_all needs a namespace or another filter (or everything=True)")
        who = authorize(principal, "writer")
        flt = self.kernel.filter(who, **filters)
        ids = sorted(self.store.matching_ids(flt))
        self.governance.check(who, "delete", ids=ids)
        return len(self.kernel.delete_ids(who, ids, self.clock()))

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
        rel = enum_member(Relation, relation, "relation")
        if source_id == target_id:
            raise InvalidInputError("a memory cannot link to itself")
        who = authorize(principal, "writer")
        now = self.clock()
        link = Link(
            source_id=source_id,
            target_id=target_id,
            relation=rel,
            valid_from=parse_time(valid_from, "valid_from"),
            valid_until=parse_time(valid_until, "valid_until"),
            observed_by=who.agent_id,
            created_at=now,
        )
        # both ends first: a link to an id the key cannot see answers as one nobody holds,
        # before a standard could queue it (its approval would record where that id lives)
        seen = {m.id: m for m in self.store.get_many([source_id, target_id])}
        for memory_id in (source_id, target_id):
            if memory_id not in seen or not who.covers(seen[memory_id].namespace):
                raise NotFoundError(f"no memory with id {memory_id}")
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
                    self.kernel.charge_quota(tx, [found.namespace], now)
            tx.put_link(link, tx.next_seq())
        self._replicate(links=[link])
        return link

    def link_many(self, links: Sequence[tuple[str, str, Relation | str]], *, principal: Principal) -> builtins.list[Link]:
        """Create several links in one transaction (all or nothing), with the rules of
        :meth:`link`: fact extraction links hundreds of facts to their turns per call, and a
        transaction per link would cost more than the extraction itself. Governance is
        checked once over every end (an ``approve`` rule refuses: a batch is not queued)."""
        who = authorize(principal, "writer")
        now = self.clock()
        made: list[Link] = []
        for source_id, target_id, relation in links:
            if source_id == target_id:
                raise InvalidInputError("a memory cannot link to itself")
            made.append(
                Link(
                    source_id=source_id,
                    target_id=target_id,
                    relation=enum_member(Relation, relation, "relation"),
                    observed_by=who.agent_id,
                    created_at=now,
                )
            )
        if not made:
            return []
        self.governance.check(who, "link", ids=[end for link in made for end in (link.source_id, link.target_id)])
        with self.store.write() as tx:
            namespace_of: dict[str, str] = {}
            for memory_id in dict.fromkeys(end for link in made for end in (link.source_id, link.target_id)):
                found = tx.get(memory_id)
                if found is None or not who.covers(found.namespace):
                    raise NotFoundError(f"no memory with id {memory_id}")
                namespace_of[memory_id] = found.namespace
            self.kernel.charge_quota(tx, [namespace_of[link.source_id] for link in made], now)  # as link: one write each
            for link in made:
                tx.put_link(link, tx.next_seq())
        self._replicate(links=made)
        return made

    # -- reads ------------------------------------------------------------------------------

    def get(self, memory_id: str, *, principal: Principal, touch: bool = False) -> Memory:
        """One live memory by id (expired memories are not live)."""
        who = authorize(principal, "reader")
        memory = self.store.get(memory_id)
        if memory is None or (memory.expires_at is not None and memory.expires_at <= self.clock()):
            raise NotFoundError(f"no memory with id {memory_id}")
        if not who.covers(memory.namespace):
            raise NotFoundError(f"no memory with id {memory_id}")
        if touch:
            self._count_access([memory])
        return memory

    def list(self, *, limit: int = 50, cursor: str | None = None, principal: Principal, **filters: Any) -> Page:
        """Newest first, with an opaque cursor for the next page."""
        who = authorize(principal, "reader")
        limit = self.kernel.check_top_k(limit, "limit")
        flt = self.kernel.filter(who, **filters)
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
        self._check_query(query, "query is empty: give words or a question to recall by")
        if budget_tokens is not None and (not isinstance(budget_tokens, int) or budget_tokens < 1):
            raise InvalidInputError(f"budget_tokens must be a positive integer (got {budget_tokens!r})", usage=True, field="budget_tokens")
        who = authorize(principal, "reader")
        k = self.kernel.check_top_k(top_k)
        flt = self.kernel.filter(who, **filters)
        used, hits, notices = self.engine.run(query, flt, k, mode, explain, flt.now)
        hits, dropped = fill_budget(hits, budget_tokens)
        if touch and hits:
            notices = [*notices, *self._count_access([h.memory for h in hits])]
        return RecallResult(query=query, mode=used, hits=hits, dropped=dropped, notices=notices)

    def _count_access(self, memories: Sequence[Memory]) -> builtins.list[str]:
        """Count an access to memories already read: notices for the caller (none when counted).

        The read has its answer; counting is bookkeeping (a longer TTL, a promotion after enough
        accesses). A store that cannot take a write just now (a full disk, a read-only file)
        must not turn a read into a failure, so the count is skipped, logged and said."""
        try:
            self.kernel.record_access(memories)
        except StorageError as exc:
            log.warning("an access was not counted (the read still answered): %s", exc.message)
            return [f"this read was not counted as an access (TTLs not extended): {exc.message}"]
        return []

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
        self._check_query(query, "query is empty: give words to search for")
        who = authorize(principal, "reader")
        k = self.kernel.check_top_k(top_k)
        flt = self.kernel.filter(who, **filters)
        used, hits, notices = self.engine.run(query, flt, k, "keyword", explain, flt.now, context=False)
        return RecallResult(query=query, mode=used, hits=hits, dropped=0, notices=notices)

    def _check_query(self, query: Any, empty: str) -> None:
        """A recall's or search's query: text (``empty`` says what to give when it is blank),
        storable (a NUL refused by recall was an empty answer from search) and not too long."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(empty)
        check_text(query, "query")
        self._check_query_size(query)

    def _check_query_size(self, query: str) -> None:
        """A query is at most as long as the longest memory (``limits.max_content_bytes``): each
        request's tokenizing, keyword and date scans grow with it, and no stored text is longer."""
        check_query_size(query, self.kernel.policy.max_content_bytes)

    def history(self, memory_id: str, *, principal: Principal) -> builtins.list[HistoryEntry]:
        """Every change of a memory, oldest first (also for deleted memories)."""
        who = authorize(principal, "reader")
        visible = self.kernel.history(memory_id, who)
        if not visible:
            raise NotFoundError(f"no memory with id {memory_id} (and no history of one)")
        return visible

    def links(self, memory_id: str, *, principal: Principal) -> builtins.list[Link]:
        """Links from and to a memory whose other end the caller may also see (a link to a
        hidden namespace would leak that memory's id and relation)."""
        who = authorize(principal, "reader")
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
        who = authorize(principal, "reader")
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
                "links_count": len(self.store.links_among(live)),
                "db_size_bytes": 0,
                "total": len(live),
                "by_tier": by_tier,
                "by_namespace": [c for c in full.by_namespace if who.covers(c.namespace)],
                "expiring_soon": len(live - self.store.matching_ids(Filter(now=soon, scopes=scopes))),
            }
        )

    def namespaces(self, *, principal: Principal) -> builtins.list[NamespaceCount]:
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
        who = authorize(principal, "reader")
        ready = self.ready()
        if is_store_admin(who):
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

    def authenticate_key_id(self, key_id: str) -> Principal:
        """The caller of an API key by its id, for a face that checked the key's secret earlier
        (the web inspector's login): refused once the key is revoked or unknown."""
        return self._access().authenticate_key_id(key_id)

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
        """True when this store was restored or migrated from one that held API keys (which are not
        copied): it must require keys like its source did. Read once per service (a restore
        writes the flag before any memory), so an open server pays no write per request."""
        if self._restored_flag is None:
            from memmesh.store.base import KEYS_REQUIRED_META

            self._restored_flag = bool(self.store.meta_value(KEYS_REQUIRED_META))
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
        who = authorize(principal, "admin")
        return self._access().register_agent(agent_id, display_name, role, namespaces, who)

    def agents(self, *, principal: Principal) -> builtins.list[Agent]:
        """Registered agents; admin only, and a namespace-scoped admin sees only the agents
        whose namespaces all lie inside its own."""
        who = authorize(principal, "admin")
        return [agent for agent in self._access().agents() if manages(who, agent.namespaces)]

    def create_key(
        self, agent_id: str, *, role: str = "writer", namespaces: Sequence[str] | str | None = None, principal: Principal
    ) -> CreatedKey:
        """A new API key for an agent; its text is in the result and nowhere else, ever.

        A namespace-scoped admin may give a key to any agent id nobody registered, even one
        that notes were sent to: the new key reads only the notes whose namespace it may
        read (memmesh.subscriptions.inbox), so a name in use elsewhere reveals nothing."""
        who = authorize(principal, "admin")
        return self._access().create_key(agent_id, role, namespaces, who)

    def keys(self, *, include_revoked: bool = False, principal: Principal) -> builtins.list[ApiKey]:
        """API keys (without secrets); admin only, and a namespace-scoped admin sees only the
        keys whose namespaces all lie inside its own (never a global admin's)."""
        who = authorize(principal, "admin")
        return [key for key in self._access().keys(include_revoked) if manages(who, key.namespaces)]

    def revoke_key(self, key_id: str, *, principal: Principal) -> ApiKey:
        """Revoke an API key; admin only, and only keys this admin may see (:meth:`keys`):
        another scope's key answers exactly like a key that does not exist."""
        who = authorize(principal, "admin")
        return self._access().revoke_key(key_id, who)

    # -- maintenance -----------------------------------------------------------------------

    def gc(self, *, principal: Principal) -> GcReport:
        """Archive expired memories and purge tombstones past the retention.

        Store-wide, so it needs an admin not limited to some namespaces."""
        authorize_store_wide(principal, "garbage collection")
        now = self.clock()
        archived = self.kernel.archive_expired(now)
        forgotten = self.governance.enforce_retention(now)  # namespace standards' retention_days
        self.governance.redrive_approved()  # approved actions a crash left unapplied
        with self.store.write() as tx:
            purged = tx.purge_tombstones(now - timedelta(days=self.policy.tombstone_retention_days))
        return GcReport(archived=archived, tombstones_purged=purged, retention_forgotten=forgotten)

    def backup_now(self, *, retain: int | None = None, principal: Principal) -> Any:
        """Snapshot the whole store into the configured backup folder (``<data dir>/backups``).

        For the HTTP and MCP faces; the CLI's ``memmesh backup`` may also choose a folder.
        Needs an admin whose keys cover every namespace, since a snapshot holds them all.
        """
        return self.transfer.backup(retain=retain, principal=principal)

    def reindex_pending(self, *, principal: Principal) -> builtins.list[str]:
        """Ids of memories without a vector from the current embedder (store-wide: an admin
        for every namespace)."""
        authorize_store_wide(principal, "reindexing")
        if self.embedder is None:
            return []
        return self.store.ids_missing_vectors(self.embedder.model_id)

    def reindex(self, *, batch_size: int = 64, progress: Progress | None = None, principal: Principal) -> int:
        """Embed every memory that lacks a vector from the current model; returns how many."""
        authorize_store_wide(principal, "reindexing")
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
        who = authorize(principal, "writer", memory.namespace)
        self.kernel.check_content(memory.content)
        if memory.content_hash != content_hash(memory.namespace, memory.content):
            raise InvalidInputError(f"memory {memory.id}: content_hash does not match its namespace and content")
        stray = next((e for e in history if e.memory_id != memory.id), None)
        if stray is not None:
            raise InvalidInputError(f"memory {memory.id}: its history holds an entry of another memory ({stray.memory_id})")
        self.kernel.check_exact_target(who, memory.id)
        self.governance.admit_import(who, [memory.namespace])
        if is_stale(self.store.get(memory.id), memory):
            return False
        vector = self.kernel.embed_one(memory.title, memory.content)
        with self.store.write() as tx:
            return self.kernel.put_exact(tx, memory, history, who, vector)

    def check_exact(self, memory: Memory, *, principal: Principal) -> None:
        """Raise what :meth:`put_exact` would refuse for this caller, writing nothing (import
        checks every record before it writes the first)."""
        who = authorize(principal, "writer", memory.namespace)
        self.kernel.check_exact_target(who, memory.id)
        self.governance.admit_import(who, [memory.namespace])

    def put_link(self, link: Link, *, principal: Principal) -> bool:
        """Write a link exactly as given (import, restore); skipped if an end is missing or
        lies in a namespace the caller may not write."""
        who = authorize(principal, "writer")
        with self.store.write() as tx:
            ends = [tx.get(link.source_id), tx.get(link.target_id)]
            if any(end is None or not who.covers(end.namespace) for end in ends):
                return False
            tx.put_link(link, tx.next_seq())
        return True

    # -- focused core modules over this service (each small, each reusing the checks above) --

    @property
    def transfer(self) -> Transfer:
        """backup, restore, migrate, export, import (:mod:`memmesh.transfer`)."""
        from memmesh.transfer import Transfer

        return Transfer(self)

    @cached_property
    def curator(self) -> Curator:
        """Reversible housekeeping runs and the curator's text tools (:mod:`memmesh.curator`)."""
        from memmesh.curator import Curator

        return Curator(self, self.curator_policy, self.llm)

    @cached_property
    def governance(self) -> Governance:
        """Namespace standards and pending actions; each write path calls its check once."""
        from memmesh.governance import Governance

        return Governance(self)


def _own_node_id(store: Store, configured: str | None) -> str:
    """This node's id: the one persisted in the store. A configured ``--node-id`` is adopted
    by a store that holds no versions yet (no memory, tombstone, conflict or peer: API keys
    and agents made before the first ``serve`` do not count), and must match it otherwise: a
    store keeps its id, since peers hold cursors and version clocks under it."""
    held = store.node_id()
    if not configured or configured == held:
        return held
    if not re.match(NODE_ID_PATTERN, configured):  # Settings check it too, naming the flag; Service(node_id=…) does not
        raise ConfigError(f"node id {configured!r} is not valid: {NODE_ID_RULE}")
    named = next(store.iter_memories(batch=1), None) is not None or store.tombstones_since(0) or store.conflicts() or store.peers()
    with store.write() as tx:
        if named and tx.get_meta("node_id") != configured:  # keys and agents alone name no node: still adoptable
            raise ConfigError(
                f"this store belongs to node {held!r}; it cannot become {configured!r} (its versions and its peers' cursors "
                "name the old id): drop --node-id, or start the new node on a new store"
            )
        tx.set_meta("node_id", configured)
    return configured


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


__all__ = ["Policy", "Service", "content_hash", "embed_text", "visible_history"]
