"""The core of replication: serving this node's change feed and applying a peer's changes.

Every winner is decided by :func:`memmesh.versions.merge` (never here): this module only
reads what the node holds, asks ``merge`` and writes the outcome, for a whole batch inside
one store transaction, so a batch is applied completely or not at all. Applying a batch
twice changes nothing: a version already held is a duplicate, an older one loses.

Rules kept here, once for every transport (HTTP push, catch-up pulls, the sync daemon):

* only a ``peer`` key (or the local admin) may use the feed, and only for a node id this
  node knows as a peer; a node never syncs with itself;
* a version stamped too far in the future is refused (the HLC counts it) and the whole
  batch is rejected before anything is written;
* a peer that last synced before deletes whose tombstones gc has purged (or was silent for
  longer than the tombstone retention) is refused with ``resync_required``: an incremental
  sync could revive memories deleted meanwhile;
* a concurrent version that loses is kept: a :class:`~memmesh.model.Conflict` record with
  an id every node derives the same way (it replicates too) and a ``merge`` history entry.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from memmesh.errors import ConflictError, ForbiddenError, InvalidInputError, ResyncRequiredError
from memmesh.federation.changes import (
    MAX_BATCH_ITEMS,
    MAX_SHIPPED_HISTORY,
    BusItem,
    ClusterStatus,
    Hello,
    PeerStatus,
    SyncBatch,
    SyncItem,
    SyncPage,
    SyncReport,
    batch_from_changes,
    encode_vector,
)
from memmesh.federation.digest import DigestNode, DigestReport, Row, agent_ids, bus_ids, digests_from, link_order, tree_node_from
from memmesh.federation.digest import rows as digest_rows
from memmesh.federation.governed import apply_item as apply_governed
from memmesh.federation.governed import check_item as check_governed
from memmesh.federation.governed import link_removed, named_items, removal_items
from memmesh.federation.governed import page_limit as governed_page
from memmesh.kernel import authorize_store_wide, content_hash, embed_text
from memmesh.model import Agent, Conflict, HistoryEntry, HistoryEvent, Link, Memory, PeerState, Principal, Tombstone, Version
from memmesh.schedule import live_servers
from memmesh.store.base import VectorRow, WriteTx
from memmesh.versions import Merge, merge, merge_clocks, next_version, stamp

if TYPE_CHECKING:
    from memmesh.service import Service

log = logging.getLogger("memmesh.federation")

BULK_ROWS = 200
"""A page with at least this many never-seen memories is inserted with a larger page cache
(the store's ``bulk_cache``): a catch-up, not a push of a few writes."""

PULL_HOLD_S = 10.0
"""How long after a peer's pull of a page with more after it our pusher to that peer waits:
the peer asks for the next page once it applied this one (a 2,000-memory page takes seconds
on a busy machine: a shorter hold let the pusher send the same pages again), so it is still
pulling; a peer that stopped pulling gets our pushes again this long after its last page."""

MESH_META = "federation_mesh"
"""The ``meta`` key of the peers and quorum the node's mesh last ran with (:meth:`Replica.record_mesh`)."""

_CONFLICT_NS = uuid.UUID("6d656d6d-6573-6866-6564-636f6e666c74")
_VALUE_FIELDS = (
    "namespace",
    "title",
    "content_hash",
    "tier",
    "kind",
    "tags",
    "priority",
    "confidence",
    "metadata",
    "valid_from",
    "valid_to",
)


def conflict_id(memory_id: str, loser: Version) -> str:
    """The id of the conflict that overwrote ``loser``: the same on every node."""
    return str(uuid.uuid5(_CONFLICT_NS, f"{memory_id}|{loser.hlc}|{loser.node}"))


def same_text(a: Memory, b: Memory) -> bool:
    """Two versions embed the same (the vector depends on title and content only)."""
    return (a.title, a.content) == (b.title, b.content)


def same_value(a: Memory, b: Memory) -> bool:
    """Two versions say the same thing (then their being concurrent is no conflict to review)."""
    return all(getattr(a, name) == getattr(b, name) for name in _VALUE_FIELDS)


@dataclass
class _Applying:
    """The state of one batch being applied."""

    tx: WriteTx
    sender: str
    now: datetime
    vectors: dict[str, np.ndarray]
    report: SyncReport
    seq_: int = 0
    touched: set[str] = field(default_factory=set)

    def seq(self) -> int:
        if not self.seq_:
            self.seq_ = self.tx.next_seq()
        return self.seq_

    @property
    def actor(self) -> str:
        return f"sync:{self.sender}"


class Replica:
    """This node's side of replication, over a :class:`~memmesh.service.Service`."""

    def __init__(self, service: Service, *, on_change: Callable[[], None] | None = None) -> None:
        self.service = service
        self.on_change = on_change
        self._digest_rows: tuple[tuple[int, int], float, list[Row]] | None = None
        """The rows last digested, by (change counter, purged seq), for a digest-tree descent."""
        self._pulling: dict[str, float] = {}
        """Per peer node id: when it last pulled a page of our feed that had more after it."""
        self.resolve_peers: Callable[[], None] | None = None
        """Set by the running mesh: ask configured peers not yet identified for their node id."""

    # -- who may sync ------------------------------------------------------------------------

    def _authorize(self, principal: Principal, node: str) -> PeerState:
        """The peer ``node`` as this node knows it, once the caller may speak for a peer."""
        if not isinstance(principal, Principal):
            raise TypeError("every service call needs the caller's Principal")
        if principal.role != "peer" and not (principal.role == "admin" and principal.key_id is None):
            raise ForbiddenError(
                f"the sync routes are for peer nodes: this key's role is {principal.role!r}",
                use={"peer_key_create": "on this node to make the calling node a key"},
            )
        if principal.prefixes() is not None:
            raise ForbiddenError("a peer key replicates every namespace: it must not be limited to some namespaces")
        if node == self.service.node_id:
            raise InvalidInputError(f"node id {node!r} is this node's own id: a node does not sync with itself")
        known = next((p for p in self.service.store.peers() if p.node_id == node), None)
        if known is None and self.resolve_peers is not None:
            self.resolve_peers()
            known = next((p for p in self.service.store.peers() if p.node_id == node), None)
        if known is None and principal.role == "peer" and principal.agent_id == node:
            # a peer key made for this node id (`keys create --agent <node id> --role peer`)
            # introduces it: how a node with no server (sync-daemon) joins
            self.known(node, None)
            known = next((p for p in self.service.store.peers() if p.node_id == node), None)
        if known is None:
            log.warning("sync refused: unknown node id %r", node)
            raise ForbiddenError(f"unknown node id {node!r}: it is not one of this node's peers (add its URL to --peers on this node)")
        self._check_speaks_for(principal, node)
        return known

    def _check_speaks_for(self, principal: Principal, node: str) -> None:
        """A peer key made for one node (``keys create --agent <node id>``) may not speak for
        another: pushing as that node would move its cursor past changes this node never got
        (its real pushes are then skipped as already applied). A key whose agent is not a node
        id this node knows is not bound (docs/federation.md)."""
        agent = principal.agent_id
        if principal.role != "peer" or agent is None or agent == node:
            return
        if agent == self.service.node_id or any(p.node_id == agent for p in self.service.store.peers()):
            log.warning("sync refused: the peer key of node %r spoke for node %r", agent, node)
            raise ForbiddenError(f"this peer key was made for node {agent!r}; it may not sync as node {node!r}")

    def _check_fresh(self, peer: PeerState, since: int | None) -> None:
        """Refuse incremental sync that could revive deleted memories (see module docstring)."""
        purged = self.service.store.purged_seq()
        if since is not None and 0 < since < purged:
            raise ResyncRequiredError(
                f"node {peer.node_id} asks for changes after {since}, but tombstones up to change {purged} were purged: "
                "incremental sync could bring deleted memories back; resync that node in full",
                details={"peer": peer.node_id, "since": since, "purged_seq": purged},
            )
        retention = timedelta(days=self.service.policy.tombstone_retention_days)
        if since == 0:
            return  # the whole feed from the start: how a full resync reads (see full_resync)
        if peer.last_contact is not None and self.service.clock() - peer.last_contact > retention:
            raise ResyncRequiredError(
                f"node {peer.node_id} was last in contact at {peer.last_contact.isoformat()}, longer ago than the tombstone "
                f"retention ({self.service.policy.tombstone_retention_days} days): resync it in full",
                details={"peer": peer.node_id, "last_contact": peer.last_contact.isoformat()},
            )

    def known(self, node: str, url: str | None) -> None:
        """Record ``node`` as a peer (learned from its hello); keeps its cursors. A URL names one
        node at a time: a node that answered there before (replaced by a new store with a new
        id) keeps its cursors but loses the URL."""
        previous = [p for p in self.service.store.peers() if url is not None and p.url == url and p.node_id != node]
        with self.service.store.write() as tx:
            for old in previous:
                tx.put_peer(old.model_copy(update={"url": None}))
            state = tx.peer(node)
            if state is None or state.url != url:
                tx.put_peer((state or PeerState(node_id=node)).model_copy(update={"url": url}))

    def hello(self, principal: Principal) -> Hello:
        """Who this node is: peers call it to learn our node id and clock. ``seq`` counts every
        change in the store, so a key limited to some namespaces would learn the write rate of
        the others from it: besides peers, only an admin for every namespace may ask."""
        if not (principal.role == "peer" or principal.has_role("admin")):
            raise ForbiddenError(f"the sync routes are for peer nodes: this key's role is {principal.role!r}")
        self._authorize_reader(principal, "this node's change counter")
        store = self.service.store
        return Hello(node=self.service.node_id, hlc=self.service.hlc.now(), seq=store.change_counter(), schema_version=store.schema_version)

    def status(self, *, principal: Principal) -> ClusterStatus:
        """This node, its clock and every peer's cursors, outbox depth, last contact and
        whether it is up (store-wide facts: an admin for every namespace).

        Which peers are configured comes from the running mesh, or else from what the last
        one recorded (:meth:`record_mesh`: the one-shot CLI has no ``--peers``). A stored peer
        whose URL is not among them was removed from ``--peers``: it is listed as ``removed``
        (its cursors are kept, should it come back) and is not up, so health and metrics
        leave it out. Every face reads ``up`` from here: the rule is written once."""
        authorize_store_wide(principal, "cluster status")
        service, store = self.service, self.service.store
        counter, now = store.change_counter(), service.clock()
        mesh = service.mesh
        live: dict[str, dict[str, Any]] = mesh.live() if mesh is not None and hasattr(mesh, "live") else {}
        recorded = self.recorded_mesh()
        configured: set[str] | None = set(live) if mesh is not None else recorded.get("peers")
        peers = []
        for state in store.peers():
            behind = max(0, counter - state.sent_seq)
            lag = (now - state.last_contact).total_seconds() if behind and state.last_contact else None
            error = live[state.url]["error"] if state.url in live else state.last_error
            removed = state.url is not None and configured is not None and state.url not in configured
            peers.append(
                PeerStatus(
                    url=state.url,
                    node_id=state.node_id,
                    sent_seq=state.sent_seq,
                    recv_seq=state.recv_seq,
                    outbox_changes=behind,
                    last_contact=state.last_contact,
                    lag_seconds=lag,
                    last_error=error,
                    up=not removed and error is None,
                    removed=removed,
                )
            )
        known = {p.url for p in peers}
        peers += [PeerStatus(url=url, last_error=info["error"] or "not identified yet") for url, info in live.items() if url not in known]
        settings = getattr(mesh, "settings", None)
        return ClusterStatus(
            node_id=service.node_id,
            hlc=service.hlc.now(),
            change_counter=counter,
            purged_seq=store.purged_seq(),
            quorum_writes=getattr(settings, "quorum_writes", 0) if mesh is not None else recorded.get("quorum_writes", 0),
            clock_refused=service.hlc.refused,
            quorum_failures=getattr(mesh, "quorum_failures", 0),
            anti_entropy_repairs=getattr(mesh, "anti_entropy_repairs", 0),
            peers=peers,
        )

    def record_mesh(self, peers: Iterable[str], quorum_writes: int) -> None:
        """Keep in the store the peers and write quorum this node's mesh runs with (``serve``
        or ``sync-daemon`` at start; none when it serves without ``--peers``), so that
        ``cluster status`` from another process tells configured peers from removed ones and
        shows the quorum. Written only when it changed."""
        value = json.dumps({"peers": sorted(peers), "quorum_writes": quorum_writes})
        if self.service.store.meta_value(MESH_META) == value:
            return
        with self.service.store.write() as tx:
            tx.set_meta(MESH_META, value)

    def recorded_mesh(self) -> dict[str, Any]:
        """What :meth:`record_mesh` kept: ``peers`` as a set and ``quorum_writes`` (empty
        when no mesh ever ran on this store)."""
        value = self.service.store.meta_value(MESH_META)
        if not value:
            return {}
        recorded = json.loads(value)
        return {"peers": set(recorded["peers"]), "quorum_writes": int(recorded["quorum_writes"])}

    def _authorize_reader(self, principal: Principal, what: str) -> None:
        """Peers, and admins for every namespace, may read store-wide replication facts."""
        if not isinstance(principal, Principal):
            raise TypeError("every service call needs the caller's Principal")
        if principal.role == "peer":
            if principal.prefixes() is not None:  # made before keys create refused it
                raise ForbiddenError("a peer key replicates every namespace: it must not be limited to some namespaces")
            return
        authorize_store_wide(principal, what)

    def digests(self, *, principal: Principal) -> DigestReport:
        """Every namespace's content digest on this node (see :mod:`.digest`): two nodes hold
        the same replicated state exactly when these are equal."""
        self._authorize_reader(principal, "reading the content digests")
        return digests_from(self.digest_rows(), self.service.node_id)

    def digest_rows(self) -> list[Row]:
        """The digested rows, reused while the store has not changed (a repair descends the
        tree with several requests, and this node repairs with each peer in turn; each would
        otherwise read every row again) and for at most 30 s, so a large store's rows are not
        held in memory for long."""
        store = self.service.store
        key = (store.change_counter(), store.purged_seq())
        cached = self._digest_rows
        if cached is not None and cached[0] == key and time.monotonic() - cached[1] < 30:
            return cached[2]
        found = digest_rows(store)
        self._digest_rows = (key, time.monotonic(), found)
        return found

    def digest_node(self, *, namespace: str, prefix: str = "", leaves: bool = False, principal: Principal) -> DigestNode:
        """One node of a namespace's digest tree: what anti-entropy descends through."""
        self._authorize_reader(principal, "reading the content digests")
        if not isinstance(namespace, str) or not namespace:
            raise InvalidInputError("namespace is empty: name the namespace whose digest tree to read")
        return tree_node_from(self.digest_rows(), self.service.node_id, namespace, prefix, leaves=leaves)

    def items(self, ids: list[str], *, principal: Principal) -> SyncPage:
        """This node's current state of the memories ``ids``: each one's memory or tombstone,
        its visible links and its recorded conflicts, as a page outside the feed (``upto`` 0,
        so applying it moves no cursor). What anti-entropy ships for a diverged bucket."""
        self._authorize_reader(principal, "reading replicated items")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids) or len(ids) > MAX_BATCH_ITEMS // 4:
            raise InvalidInputError(f"ids must be a list of at most {MAX_BATCH_ITEMS // 4} memory ids")
        store = self.service.store
        wanted = list(dict.fromkeys(ids))
        memories = {m.id: m for m in store.get_many(wanted)}
        items: list[SyncItem] = [SyncItem(seq=0, memory=memories[i]) for i in wanted if i in memories]
        missing = [i for i in wanted if i not in memories]
        if missing:
            with store.write() as tx:  # the one read of a tombstone by id the store offers
                items += [SyncItem(seq=0, tombstone=t) for t in (tx.tombstone(i) for i in missing) if t is not None]
        links: dict[tuple[str, str, str], Link] = {}
        for memory_id in memories:
            links.update({(k.source_id, k.target_id, k.relation.value): k for k in store.links(memory_id)})
        items += [SyncItem(seq=0, link=link) for _, link in sorted(links.items())]
        items += removal_items(self.service, wanted)
        items += named_items(self.service, wanted)  # standards and pending actions anti-entropy found differing
        items += [SyncItem(seq=0, bus=BusItem.model_validate(one)) for one in store.bus_items(*bus_ids(wanted))]
        agents = agent_ids(wanted)
        items += [SyncItem(seq=0, agent=agent) for agent in store.agents() if agent.agent_id in agents] if agents else []
        for memory_id in wanted:
            items += [SyncItem(seq=0, conflict=c) for c in store.conflicts(memory_id)]
        return SyncPage(node=self.service.node_id, items=self.with_history(items))

    def conflicts(self, *, memory_id: str | None = None, principal: Principal) -> list[Conflict]:
        """Recorded conflicts (overwritten concurrent versions), for review; store-wide admins."""
        authorize_store_wide(principal, "the conflict list")
        return self.service.store.conflicts(memory_id)

    # -- serving the feed ------------------------------------------------------------------------

    def feed(self, *, peer: str, since: int, limit: int = 500, omit_own: bool = False, principal: Principal) -> SyncPage:
        """Our changes after ``since`` for ``peer`` (which records the contact).

        ``omit_own`` leaves out the memories and tombstones whose current version ``peer``
        wrote itself (it holds them, or later versions): what a catch-up pull asks for, so
        a node that applied our changes is not sent its own back. A full resync reads every
        row (it must see each memory the peer still holds). Asking from ``since`` tells us
        the peer applied everything up to it, so our pusher's cursor moves there too, and
        while the peer is pulling a backlog (more pages follow) the pusher leaves it to the
        pulls instead of reading and sending the same pages (see :meth:`pulling`)."""
        state = self._authorize(principal, peer)
        if not isinstance(since, int) or since < 0:
            raise InvalidInputError(f"since must be a change number of 0 or more (got {since!r})")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH_ITEMS:
            raise InvalidInputError(f"limit must be between 1 and {MAX_BATCH_ITEMS} (got {limit!r})")
        self._check_fresh(state, since)
        changes, governed = governed_page(self.service, since, limit, peer if omit_own else None)
        page = batch_from_changes(self.service.node_id, since, changes)
        page.items += governed
        self.with_history(self.with_vectors(page.items))
        if page.more:
            self._pulling[peer] = time.monotonic()
        else:
            self._pulling.pop(peer, None)
        self.contact(peer, sent=since if since > state.sent_seq else None)
        return page

    def pulling(self, peer: str) -> bool:
        """``peer`` is pulling a backlog of our feed: its last pull, less than
        :data:`PULL_HOLD_S` ago, had more pages after it."""
        started = self._pulling.get(peer)
        return started is not None and time.monotonic() - started < PULL_HOLD_S

    def with_vectors(self, items: list[SyncItem]) -> list[SyncItem]:
        """Attach each memory's stored embedding (of this node's model) to its item, so the
        receiver stores it instead of embedding the text again: embedding, not writing, is
        what a catch-up would otherwise spend its time on."""
        embedder = self.service.embedder
        wanted = [item.memory.id for item in items if item.memory is not None and item.vector is None]
        if embedder is None or not wanted:
            return items
        found = {row.memory_id: row.vector for row in self.service.store.get_vectors(wanted) if row.model == embedder.model_id}
        for item in items:
            if item.memory is not None and item.memory.id in found:
                item.vector, item.vector_model = encode_vector(found[item.memory.id]), embedder.model_id
        return items

    def with_history(self, items: list[SyncItem]) -> list[SyncItem]:
        """Attach to each memory or tombstone item the history its writers recorded (the
        newest :data:`MAX_SHIPPED_HISTORY` entries), so a node that receives only the latest
        state (a catch-up, a push after several edits) still shows every version in its
        history. A node's records of applying a replicated version (actor ``sync:…``) are
        its own and stay local; entries it received verbatim travel on, so history reaches
        nodes that hear of a memory only through a third one.

        A memory written once (its vector clock counts one write) ships none: its one
        version is the state itself, which the receiver records with its origin (see
        :func:`_origin_fields`). That is most of a catch-up, which so costs no history read,
        no second entry per memory and half the bytes."""
        wanted = [
            obj.id
            for obj in (item.memory or item.tombstone for item in items if item.history is None)
            if obj is not None and sum(obj.version.clock.values()) > 1
        ]
        if not wanted:
            return items
        found = self.service.store.history_many(wanted)
        for item in items:
            obj = item.memory or item.tombstone
            if obj is None or item.history is not None or obj.id not in found:
                continue
            authored = [entry for entry in found[obj.id] if not _applied_record(entry)]
            if authored:
                item.history = authored[-MAX_SHIPPED_HISTORY:]
        return items

    def contact(self, node: str, *, sent: int | None = None, received: int | None = None) -> None:
        """Record that ``node`` answered, and advance its cursors."""
        with self.service.store.write() as tx:
            state = tx.peer(node) or PeerState(node_id=node)
            update: dict[str, Any] = {"last_contact": self.service.clock()}
            if sent is not None:
                update["sent_seq"] = max(state.sent_seq, sent)
            if received is not None:
                update["recv_seq"] = max(state.recv_seq, received)
            tx.put_peer(state.model_copy(update=update))

    def record_error(self, node: str, error: str | None) -> None:
        """Keep why this node's last exchange with ``node`` failed (None: it succeeded), for
        ``cluster status`` read from another process. Only the running mesh judges that (its
        pushes and pulls): a peer reaching us proves nothing about our reaching it."""
        with self.service.store.write() as tx:
            state = tx.peer(node) or PeerState(node_id=node)
            if state.last_error != error:
                tx.put_peer(state.model_copy(update={"last_error": error}))

    # -- applying a peer's changes ------------------------------------------------------------

    def apply(self, batch: SyncBatch, *, principal: Principal) -> SyncReport:
        """Apply a peer's batch in one transaction; all or nothing, idempotent."""
        peer = self._authorize(principal, batch.node)
        self._check_fresh(peer, None)
        if batch.upto and batch.upto <= peer.recv_seq:
            # A feed range this node applied already (a replay, or the push and our own pull of
            # the same changes): every item is a duplicate, so nothing is read or written.
            log.info("batch (%s, %s] from %s already applied: skipped", batch.since, batch.upto, batch.node)
            return SyncReport(node=self.service.node_id, duplicates=len(batch.items))
        self._check_batch(batch)
        vectors = self._vectors(batch)
        report = SyncReport(node=self.service.node_id)
        with self.service.store.write() as tx:
            state = tx.peer(batch.node) or PeerState(node_id=batch.node)
            if batch.upto and batch.upto <= state.recv_seq:
                # the same range arrived by the other path (its push and our pull) while this
                # one waited for the write lock: nothing to read or write again
                return SyncReport(node=self.service.node_id, duplicates=len(batch.items))
            run = _Applying(tx=tx, sender=batch.node, now=self.service.clock(), vectors=vectors, report=report)
            self._items(run, batch.items)
            update: dict[str, Any] = {"last_contact": run.now}
            if batch.upto and batch.since <= state.recv_seq:
                update["recv_seq"] = max(state.recv_seq, batch.upto)
            tx.put_peer(state.model_copy(update=update))
        if report.applied and any(item.bus is not None for item in batch.items):
            self.service.bus.replicated()
        if report.applied and self.on_change is not None:
            self.on_change()
        return report

    def refuse_if_served(self) -> None:
        """A full resync archives what the peer lacks unless this node wrote it after its
        last contact: beside a running server, memories other peers push in meanwhile would be
        archived, and the server's own pushes and catch-up would interleave with it. So it
        runs only on a store no ``serve`` process has marked as served (schedule.ServingMark)."""
        running = live_servers(self.service.store, time.time())
        if running:
            named = ", ".join(f"{holder} (mark runs out in {left:.0f} s)" for holder, left in running)
            raise ConflictError(
                f"a memmesh server is running on this store: {named}; stop it, then run `memmesh cluster resync` "
                "(a server killed without a clean stop counts as running until its mark runs out)"
            )

    def full_resync(self, pages: Iterable[SyncPage], *, principal: Principal) -> SyncReport:
        """Make this node match a peer's whole feed (``since=0``, every page): what a node
        that was away past the tombstone retention must do instead of an incremental sync.

        Every page is applied with the usual merge. Then each memory this node holds that the
        peer has neither as a memory nor as a tombstone is one whose delete this node missed
        (the tombstone is purged), unless this node wrote or changed it after its last contact
        with the peer: those are kept (and will be pushed); the others are archived here
        (``skipped`` in the report), never tombstoned, so nothing deletes them elsewhere.
        """
        authorize_store_wide(principal, "a full resync")
        self.refuse_if_served()
        report = SyncReport(node=self.service.node_id)
        seen: set[str] = set()
        source: str | None = None
        upto = 0
        for page in pages:
            if page.since != 0 and page.since != upto:
                raise InvalidInputError(f"resync pages must follow each other from 0 (got one from {page.since} after {upto})")
            source = source or page.node
            if page.node != source:
                raise InvalidInputError(f"resync pages come from one node (got {page.node} after {source})")
            self._authorize(principal, page.node)
            self._check_batch(page)
            vectors = self._vectors(page)
            with self.service.store.write() as tx:
                run = _Applying(tx=tx, sender=page.node, now=self.service.clock(), vectors=vectors, report=report)
                for item in page.items:
                    obj = item.memory or item.tombstone
                    if obj is not None:
                        seen.add(obj.id)
                self._items(run, page.items)
            upto = page.upto
            if any(item.bus is not None for item in page.items):
                self.service.bus.replicated()
        if source is None:
            raise InvalidInputError("a full resync needs at least one page of the peer's feed")
        state = next(p for p in self.service.store.peers() if p.node_id == source)
        cutoff, own = state.last_contact, self.service.node_id

        def written_here_since(memory: Memory) -> bool:
            return memory.version.node == own and (cutoff is None or memory.updated_at > cutoff)

        stale = [m for m in self.service.store.iter_memories() if m.id not in seen and not written_here_since(m)]
        now = self.service.clock()
        with self.service.store.write() as tx:
            run = _Applying(tx=tx, sender=source, now=now, vectors={}, report=report)
            for memory in stale:
                # Archived, not deleted with a tombstone: if another node still holds it, it
                # comes back from there; if it was deleted everywhere, nothing sends it again.
                tx.delete_links(memory.id)
                tx.archive(memory, now, f"full resync from {source}: deleted elsewhere while this node was away")
                tx.add_history(
                    HistoryEntry(memory_id=memory.id, event=HistoryEvent.archive, old=_memory_fields(memory), actor=run.actor, at=now)
                )
                report.skipped += 1
            fresh = tx.peer(source) or PeerState(node_id=source)
            tx.put_peer(fresh.model_copy(update={"recv_seq": max(upto, 0), "last_contact": now, "last_error": None}))
        log.info("full resync from %s: %d applied, %d archived as missed deletes", source, report.applied, len(stale))
        if self.on_change is not None:
            self.on_change()
        return report

    def _items(self, run: _Applying, items: list[SyncItem]) -> None:
        """Apply a batch's items: first, in bulk, the memories this node has never seen (no
        row, no tombstone, no other memory with their content: the whole of a catch-up), then
        every other item one by one in order, through the merge.

        A new memory's merge is trivial (nothing held: it is taken with its own clock), so
        the bulk path decides it with two lookups for the whole page and writes the rows,
        history and vectors with one ``executemany`` each, where the item path costs several
        statements per item. It only takes memories whose id and content appear once in the
        page, so moving them ahead of the rest changes no outcome.
        """
        self._origin_history(run, items)
        fresh = self._fresh(run, items)
        if len(fresh) >= BULK_ROWS:
            with run.tx.bulk_cache():
                self._insert_fresh(run, fresh)
        elif fresh:
            self._insert_fresh(run, fresh)
        for item in items:
            if item.memory is None or item.memory.id not in fresh:
                self._item(run, item)
        # a session's turns replicate as memories; its turn counter follows them here
        self.service.sessions.count_replicated(run.tx, [item.memory for item in items if item.memory is not None])

    def _origin_history(self, run: _Applying, items: list[SyncItem]) -> None:
        """Add the shipped history entries this node does not hold yet (see :meth:`with_history`),
        in the order the sender holds them, whatever the merge decides about the state: a
        version that lost is still one the memory had."""
        shipped = {obj.id: item.history for item in items if item.history and (obj := item.memory or item.tombstone) is not None}
        if not shipped:
            return
        held = run.tx.history_of(list(shipped))
        new: list[HistoryEntry] = []
        for memory_id, entries in shipped.items():
            known = {_entry_key(entry) for entry in held.get(memory_id, ())}
            for entry in entries:
                key = _entry_key(entry)
                if key not in known and not _applied_record(entry):
                    known.add(key)
                    new.append(entry)
        if new:
            run.tx.add_history_many(new)

    def _fresh(self, run: _Applying, items: list[SyncItem]) -> dict[str, Memory]:
        """The incoming memories nothing on this node holds yet, by id (see :meth:`_items`)."""
        memories = [item.memory for item in items if item.memory is not None]
        if len(memories) < 2:
            return {}  # a single write (a quorum push) goes the usual way
        ids: dict[str, int] = {}
        contents: dict[tuple[str, str], int] = {}
        for item in items:
            obj = item.memory or item.tombstone
            if obj is not None:
                ids[obj.id] = ids.get(obj.id, 0) + 1
        for memory in memories:
            key = (memory.namespace, memory.content_hash)
            contents[key] = contents.get(key, 0) + 1
        once = [m for m in memories if ids[m.id] == 1 and contents[(m.namespace, m.content_hash)] == 1]
        if not once:
            return {}
        tx = run.tx
        tx.lock_keys([("id", m.id) for m in once] + [("hash", m.namespace, m.content_hash) for m in once])
        held = tx.held_ids([m.id for m in once])
        clashes = tx.held_hashes([(m.namespace, m.content_hash) for m in once if m.id not in held])
        return {m.id: m for m in once if m.id not in held and (m.namespace, m.content_hash) not in clashes}

    def _insert_fresh(self, run: _Applying, fresh: dict[str, Memory]) -> None:
        """Insert memories nothing here holds: rows, history and vectors in one statement each."""
        tx, seq = run.tx, run.seq()
        stored = [_as_received(m) for m in fresh.values()]
        tx.insert_memories(stored, seq)
        tx.add_history_many(
            [HistoryEntry(memory_id=m.id, event=HistoryEvent.add, new=_origin_fields(m), actor=run.actor, at=run.now) for m in stored]
        )
        embedder = self.service.embedder
        if embedder is not None:
            rows = [VectorRow(m.id, embedder.model_id, run.vectors[m.id]) for m in stored if m.id in run.vectors]
            tx.put_vectors(rows, seq)
        run.report.applied += len(stored)

    def _item(self, run: _Applying, item: Any) -> None:
        if item.memory is not None:
            self._memory(run, item.memory)
        elif item.tombstone is not None:
            self._tombstone(run, item.tombstone)
        elif item.link is not None:
            self._link(run, item.link)
        elif item.conflict is not None:
            self._record(run, item.conflict)
        elif item.agent is not None:
            self._agent(run, item.agent)
        elif item.bus is not None:
            self._bus(run, item.bus)
        else:
            self._governed(run, item)

    def _bus(self, run: _Applying, item: Any) -> None:
        """A bus conversation or message (see :mod:`memmesh.bus.replicated`): new or a duplicate."""
        if self.service.bus.apply_replicated(run.tx.conn, item.model_dump()):
            run.report.applied += 1
        else:
            run.report.duplicates += 1

    def _governed(self, run: _Applying, item: SyncItem) -> None:
        """A standard, a pending action or a link removal (see :mod:`.governed`)."""
        changed = apply_governed(self.service, run.tx, item)
        if changed:
            run.report.applied += 1
        elif changed is not None:
            run.report.duplicates += 1

    def _agent(self, run: _Applying, agent: Agent) -> None:
        """Agents carry no version: the later ``updated_at`` wins (then the larger record, so
        two edits at the same instant still resolve the same way on every node)."""
        existing = run.tx.get_agent(agent.agent_id)

        def order(a: Agent) -> tuple[str, str]:
            return a.updated_at.isoformat(), a.model_dump_json()

        if existing is not None and order(existing) >= order(agent):
            run.report.duplicates += 1
            return
        run.tx.put_agent(agent)
        run.report.applied += 1

    def _check_batch(self, batch: SyncBatch) -> None:
        """Reject the whole batch before writing anything: clocks too far ahead, bad hashes."""
        for item in batch.items:
            obj = item.memory or item.tombstone or item.conflict
            if obj is not None:
                self.service.hlc.observe(obj.version.hlc)  # ClockSkewError (counted) when too far ahead
            if item.bus is not None and item.bus.message is not None:
                self.service.hlc.observe(item.bus.message.hlc)
            if item.memory is not None and item.memory.content_hash != content_hash(item.memory.namespace, item.memory.content):
                raise InvalidInputError(f"memory {item.memory.id}: content_hash does not match its namespace and content")
            check_governed(self.service, item)

    def _vectors(self, batch: SyncBatch) -> dict[str, np.ndarray]:
        """Embeddings for the incoming memories whose text this node does not hold yet,
        computed before the transaction (one batch), so the write lock is held briefly."""
        service = self.service
        if service.embedder is None:
            return {}
        model, dim = service.embedder.model_id, service.embedder.dim
        incoming = [item for item in batch.items if item.memory is not None]
        held = {m.id: m for m in service.store.get_many([item.memory.id for item in incoming if item.memory is not None])}
        shipped: dict[str, np.ndarray] = {}
        todo: list[Memory] = []
        for item in incoming:
            memory = item.memory
            assert memory is not None
            current = held.get(memory.id)
            if current is not None and (stamp(current.version) >= stamp(memory.version) or same_text(current, memory)):
                continue  # it loses the merge, or its text (so its vector) is the one held: nothing to embed
            vector = item.decoded_vector() if item.vector_model == model else None
            if vector is not None and vector.shape == (dim,):
                shipped[memory.id] = vector
            else:
                todo.append(memory)
        vectors, _ = service.kernel.embed([embed_text(m.title, m.content) for m in todo])
        if vectors is not None:
            shipped.update({m.id: vectors[i] for i, m in enumerate(todo)})
        return shipped

    def _memory(self, run: _Applying, incoming: Memory) -> None:
        tx = run.tx
        current, tomb = _held(tx, incoming.id)
        outcome = merge(_held_version(current, tomb), incoming.version, same_value=current is not None and same_value(current, incoming))
        if self._declined(run, outcome, incoming, lambda: _memory_fields(incoming)):
            return
        stored = incoming.model_copy(
            update={
                "version": _with_clock(incoming.version, outcome),
                "access_count": current.access_count if current else 0,
                "last_accessed_at": current.last_accessed_at if current else None,
            }
        )
        if not self._settle_duplicate_content(run, stored):
            return
        if current is not None:
            tx.update_memory(stored, run.seq())
            tx.add_history(
                HistoryEntry(
                    memory_id=stored.id,
                    event=HistoryEvent.update,
                    old=_memory_fields(current),
                    new=_origin_fields(stored),
                    actor=run.actor,
                    at=run.now,
                )
            )
        else:
            tx.insert_memory(stored, run.seq())
            tx.add_history(
                HistoryEntry(memory_id=stored.id, event=HistoryEvent.add, new=_origin_fields(stored), actor=run.actor, at=run.now)
            )
        vector = run.vectors.get(stored.id)
        if vector is not None and self.service.embedder is not None:
            tx.put_vector(stored.id, self.service.embedder.model_id, vector, run.seq())
        run.report.applied += 1
        if outcome.conflict:
            if current is not None:
                self._conflict(run, current.id, current.namespace, _memory_fields(current), current.version)
            elif tomb is not None:
                self._conflict(run, tomb.id, tomb.namespace, _tombstone_fields(tomb), tomb.version)

    def _settle_duplicate_content(self, run: _Applying, incoming: Memory) -> bool:
        """Two nodes stored the same content in one namespace under different ids: a
        namespace holds one memory per content, so the smaller id stays and the other is
        deleted (the same choice on every node). True when ``incoming`` is to be written."""
        tx = run.tx
        clash = tx.find_by_hash(incoming.namespace, incoming.content_hash)
        if clash is None or clash.id == incoming.id:
            return True
        keep_incoming = incoming.id < clash.id
        loser = clash if keep_incoming else incoming
        tombstone = Tombstone(
            id=loser.id,
            namespace=loser.namespace,
            deleted_at=run.now,
            actor=run.actor,
            version=next_version(loser.version, self.service.node_id, self.service.hlc),
        )
        if keep_incoming or tx.get(loser.id) is not None:
            tx.add_history(
                HistoryEntry(
                    memory_id=loser.id,
                    event=HistoryEvent.merge,
                    old=_memory_fields(loser),
                    new={"same_as": incoming.id if keep_incoming else clash.id},
                    actor=run.actor,
                    at=run.now,
                )
            )
        tx.delete_memory(tombstone, run.seq())
        run.report.applied += 1
        return keep_incoming

    def _tombstone(self, run: _Applying, incoming: Tombstone) -> None:
        tx = run.tx
        current, held_tomb = _held(tx, incoming.id)
        outcome = merge(_held_version(current, held_tomb), incoming.version, same_value=current is None and held_tomb is not None)
        if self._declined(run, outcome, incoming, lambda: _tombstone_fields(incoming)):
            return
        stored = incoming.model_copy(update={"version": _with_clock(incoming.version, outcome)})
        tx.delete_memory(stored, run.seq())  # its links stay, hidden by the tombstone (store.base.VISIBLE_LINK)
        if current is not None:
            tx.add_history(
                HistoryEntry(memory_id=current.id, event=HistoryEvent.delete, old=_memory_fields(current), actor=run.actor, at=run.now)
            )
            if outcome.conflict:
                self._conflict(run, current.id, current.namespace, _memory_fields(current), current.version)
        run.report.applied += 1

    def _link(self, run: _Applying, link: Link) -> None:
        """A link is stored even when an end is deleted here: hidden while that end is a
        tombstone, back if a concurrent update revives it, gone when the tombstone is purged."""
        tx = run.tx
        existing = tx.get_link(link.source_id, link.target_id, link.relation.value)
        if (existing is not None and link_order(existing) >= link_order(link)) or link_removed(tx, link):
            run.report.duplicates += 1
            return
        tx.put_link(link, run.seq())
        run.report.applied += 1

    def _declined(self, run: _Applying, outcome: Merge, incoming: Memory | Tombstone, loser: Callable[[], dict[str, Any]]) -> bool:
        """True when ``incoming`` is not written: the version already held, or one that loses
        to it (kept as a conflict, with ``loser()`` as its fields, when the two were concurrent).
        Either way the item counts as a duplicate."""
        if outcome.duplicate:
            run.report.duplicates += 1
            return True
        if outcome.take_incoming:
            return False
        if outcome.conflict:
            self._conflict(run, incoming.id, incoming.namespace, loser(), incoming.version)
        run.report.duplicates += 1
        return True

    def _conflict(self, run: _Applying, memory_id: str, namespace: str, loser: dict[str, Any], version: Version) -> None:
        self._record(
            run, Conflict(id=conflict_id(memory_id, version), memory_id=memory_id, namespace=namespace, loser=loser, version=version)
        )

    def _record(self, run: _Applying, conflict: Conflict) -> None:
        """Keep a conflict (once per id) and the loser in the memory's history."""
        if conflict.id != conflict_id(conflict.memory_id, conflict.version):
            raise InvalidInputError(f"conflict {conflict.id}: its id is not the one its memory id and version give")
        if run.tx.put_conflict(conflict, run.seq()):
            run.tx.add_history(
                HistoryEntry(
                    memory_id=conflict.memory_id,
                    event=HistoryEvent.merge,
                    old=conflict.loser,
                    new={"conflict_id": conflict.id, "overwritten": f"{conflict.version.hlc}@{conflict.version.node}"},
                    actor=run.actor,
                    at=run.now,
                )
            )
            run.report.conflicts += 1


def _as_received(memory: Memory) -> Memory:
    """A version this node never held, as it stores it: its vector clock in key order and no
    reads counted here yet. The incoming object itself when it already is that (most of a
    catch-up), since copying each memory costs more than the Python side of its insert."""
    clock = merge_clocks({}, memory.version.clock)
    if memory.access_count == 0 and memory.last_accessed_at is None and list(clock.items()) == list(memory.version.clock.items()):
        return memory
    version = Version(clock=clock, node=memory.version.node, hlc=memory.version.hlc)
    return memory.model_copy(update={"version": version, "access_count": 0, "last_accessed_at": None})


def _held(tx: WriteTx, memory_id: str) -> tuple[Memory | None, Tombstone | None]:
    """What this node holds for an id: the live memory, else its tombstone (either may be None)."""
    current = tx.get(memory_id)
    return current, (tx.tombstone(memory_id) if current is None else None)


def _held_version(current: Memory | None, tomb: Tombstone | None) -> Version | None:
    """The version an incoming change is merged against (None: nothing held)."""
    if current is not None:
        return current.version
    return tomb.version if tomb is not None else None


def _with_clock(version: Version, outcome: Merge) -> Version:
    """The winner's own stamp (node, HLC) with the joined vector clock the merge keeps."""
    return Version(clock=outcome.clock, node=version.node, hlc=version.hlc)


def _memory_fields(memory: Memory) -> dict[str, Any]:
    return memory.model_dump(mode="json", exclude={"access_count", "last_accessed_at", "version"})


def _origin_fields(memory: Memory) -> dict[str, Any]:
    """A replicated version as the receiving node's history shows it: the fields plus which
    write it was on its origin (node, HLC, writing agent), so each node's history names the
    origin's versions and one version applied twice would show as two entries."""
    origin = {"node": memory.version.node, "hlc": memory.version.hlc, "agent_id": memory.agent_id}
    return {**_memory_fields(memory), "origin": origin}


def _applied_record(entry: HistoryEntry) -> bool:
    """A node's record of applying a replicated version (or of merging one): local to it."""
    return (entry.actor or "").startswith("sync:")


def _entry_key(entry: HistoryEntry) -> tuple[str, str | None, str, str, str]:
    """What makes two history entries the same one on every node (its content, not its row id)."""
    at = entry.at if entry.at.tzinfo is not None else entry.at.replace(tzinfo=UTC)
    return (
        entry.event.value,
        entry.actor,
        at.astimezone(UTC).isoformat(timespec="microseconds"),
        json.dumps(entry.old, sort_keys=True, default=str),
        json.dumps(entry.new, sort_keys=True, default=str),
    )


def _tombstone_fields(tombstone: Tombstone) -> dict[str, Any]:
    return {"deleted": True, **tombstone.model_dump(mode="json", exclude={"version"})}
