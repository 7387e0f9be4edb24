"""The running side of a mesh: pushers, catch-up pulls and quorum writes.

The outbox is derived from the change counter, not kept as a second queue: every local
write already commits with a change number (``meta.seq``), and each peer has a durable
cursor (``peers.sent_seq``: the change number up to which that peer acknowledged our
pushes). A pusher thread per peer sends the feed after its cursor in pages and advances
the cursor only after the peer answered, so a crash at any moment loses nothing (the page
is sent again and applied as duplicates) and a 503 is never a rollback. Failures back off
exponentially to a cap.

Catch-up runs on start and every ``catchup_interval_s``: we pull each peer's feed after
our ``recv_seq`` for it, so a node that was down gets what it missed even from a peer that
is not pushing to it.

Quorum writes push the write itself to every peer at once and wait until enough answered
(:class:`~memmesh.federation.quorum.QuorumTally` decides); the pushers ship it anyway.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from memmesh.errors import MemmeshError, PeerError
from memmesh.federation.changes import SyncBatch, SyncItem, SyncPage, SyncReport, batch_from_changes
from memmesh.federation.governed import governed_items
from memmesh.federation.peers import PeerClient
from memmesh.federation.quorum import QuorumTally, check_quorum_setting
from memmesh.model import LOCAL_PRINCIPAL

if TYPE_CHECKING:
    import ssl

    from memmesh.federation.replica import Replica

log = logging.getLogger("memmesh.federation")


@dataclass(frozen=True)
class MeshSettings:
    """How this node joins the mesh (from the [federation] section and ``serve`` flags)."""

    peers: tuple[str, ...]
    peer_keys: dict[str, str | None] = field(default_factory=dict)
    quorum_writes: int = 0
    quorum_timeout_ms: int = 2000
    catchup_interval_s: float = 30.0
    batch_size: int = 200
    outbox_lag_s: float = 60.0
    """A peer behind on our changes for longer makes the node's health degraded (``outbox``)."""
    max_backoff_s: float = 5.0
    request_timeout_s: float = 10.0
    client_tls: ssl.SSLContext | None = None  # memmesh.tls.client_context: client cert + peer CA


@dataclass
class _Peer:
    client: PeerClient
    node: str | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    push_error: str | None = None
    """Why the pusher's last round failed (None: it shipped, or had nothing to ship)."""
    pull_error: str | None = None
    """Why the last catch-up round with this peer failed (None: none ran yet, or it answered)."""
    stored: tuple[str | None] | None = None
    """The error last written to the peer's row (None: nothing written since start)."""
    pushed: int = 0
    failures: int = 0
    thread: threading.Thread | None = None
    behind: bool = True
    """Our last pull from this peer stopped before the end of its feed (or none ran yet)."""
    repair_due: bool = False
    """An anti-entropy round is due, to run once both feeds are drained (see Mesh._in_step)."""

    @property
    def error(self) -> str | None:
        """Why the peer counts as down: the pusher's last failure, else the last pull's. A
        push failure lasts until a push gets through; a pull failure until a pull does, so
        an idle peer that stopped (nothing to push) is seen down at the next catch-up."""
        return self.push_error or self.pull_error


ANTI_ENTROPY_EVERY = 10
"""Every this many catch-up rounds, anti-entropy compares digests with each peer."""

PUSH_BODY_BYTES = 1_000_000
"""A push body stays under this (below the default ``limits.max_body_bytes`` of 2 MiB)."""


def split_batch(batch: SyncBatch, budget: int = PUSH_BODY_BYTES) -> list[SyncBatch]:
    """``batch`` as pushes whose bodies stay under ``budget`` bytes. Only the last one carries
    the feed range (``since``/``upto``), so the receiver advances its cursor only once every
    part arrived; the others are plain idempotent pushes."""
    parts: list[list[SyncItem]] = [[]]
    size = 0
    for item in batch.items:
        item_size = len(item.model_dump_json(exclude_none=True))
        if parts[-1] and size + item_size > budget:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += item_size
    if len(parts) == 1:
        return [batch]
    head = [SyncBatch(node=batch.node, items=items) for items in parts[:-1]]
    return [*head, SyncBatch(node=batch.node, since=batch.since, upto=batch.upto, items=parts[-1])]


class Mesh:
    """This node's replication threads; :meth:`replicate` is the service's write hook."""

    def __init__(self, replica: Replica, settings: MeshSettings) -> None:
        check_quorum_setting(settings.quorum_writes, len(settings.peers))
        self.replica = replica
        self.service = replica.service
        self.settings = settings
        self.peers = [
            _Peer(PeerClient(url, settings.peer_keys.get(url), settings.request_timeout_s, settings.client_tls)) for url in settings.peers
        ]
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(2, 4 * len(self.peers)), thread_name_prefix="memmesh-quorum")
        self._catchup: threading.Thread | None = None
        self._resolving = threading.Lock()
        self._recording = threading.Lock()
        self._resolved_at = 0.0
        self.quorum_failures = 0
        self.anti_entropy_repairs = 0
        """Memories anti-entropy found different from a peer and repaired."""
        # Changes applied from a peer are forwarded on the pushers' next poll (≤ 0.5 s), not at
        # once: the origin already pushes to every peer, so forwarding is for the peers it
        # could not reach, and waking now would only contend with quorum pushes.
        replica.resolve_peers = self.resolve_all

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Record the peers and quorum in the store (for ``cluster status`` from another
        process), then start one pusher per peer and the catch-up loop (daemon threads)."""
        self.replica.record_mesh(self.settings.peers, self.settings.quorum_writes)
        for peer in self.peers:
            peer.thread = threading.Thread(target=self._push_loop, args=(peer,), name=f"memmesh-push-{peer.client.url}", daemon=True)
            peer.thread.start()
        self._catchup = threading.Thread(target=self._catchup_loop, name="memmesh-catchup", daemon=True)
        self._catchup.start()

    def stop(self) -> None:
        self._stop.set()
        for peer in self.peers:
            peer.wake.set()
        for thread in [p.thread for p in self.peers] + [self._catchup]:
            if thread is not None:
                thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for peer in self.peers:
            peer.client.close()

    def notify(self) -> None:
        """A local change committed: wake every pusher."""
        for peer in self.peers:
            peer.wake.set()

    # -- quorum writes ---------------------------------------------------------------------------

    def replicate(self, items: list[SyncItem]) -> None:
        """The service's hook after a local write committed: ship it, and with a quorum of
        W > 1 wait until W nodes (this one included) hold it, else raise quorum_not_met."""
        needed = self.settings.quorum_writes
        if needed <= 1 or not items:
            self.notify()
            return
        tally = QuorumTally(needed=needed)
        batch = SyncBatch(node=self.service.node_id, items=self.replica.with_history(self.replica.with_vectors(items)))
        timeout_s = self.settings.quorum_timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        parts = split_batch(batch)  # a large batch write stays under the peers' body limit

        def push_all(client: PeerClient) -> None:
            for part in parts:
                client.push(part, timeout_s=timeout_s)

        pending: dict[Future[Any], _Peer] = {self._pool.submit(push_all, p.client): p for p in self.peers}
        while pending and not tally.met:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done, _ = wait(list(pending), timeout=left, return_when=FIRST_COMPLETED)
            for future in done:
                peer = pending.pop(future)
                exc = future.exception()
                if exc is None:
                    tally.acks += 1
                else:
                    tally.failures[peer.node or peer.client.url] = exc.message if isinstance(exc, MemmeshError) else str(exc)
        # The pushers are woken only now: during the quorum push they would send the same
        # write to the same peers and contend for their write lock on the critical path. A
        # peer whose quorum push is still in flight (W met without it) is woken when that push
        # ends, for the same reason: the next write's quorum would otherwise wait behind it.
        in_flight = {id(peer) for peer in pending.values()}
        for future, peer in pending.items():
            future.add_done_callback(_waker(peer))
        for peer in self.peers:
            if id(peer) not in in_flight:
                peer.wake.set()
        if not tally.met:
            self.quorum_failures += 1
        tally.verdict(self.settings.quorum_timeout_ms, len(self.peers))

    # -- pushing ------------------------------------------------------------------------------------

    def _push_loop(self, peer: _Peer) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                self._resolve(peer)
                moved = self._push_once(peer)
                self._outcome(peer, "push", None)
                backoff = 0.05
                if not moved:
                    peer.wake.wait(timeout=0.5)
                    peer.wake.clear()
            except MemmeshError as exc:
                peer.failures += 1
                self._outcome(peer, "push", exc.message)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_s)
            except Exception as exc:  # a bug must not kill the pusher silently: log it and retry
                log.exception("pusher for %s failed", peer.client.url)
                self._outcome(peer, "push", f"{type(exc).__name__}: {exc}")
                self._stop.wait(self.settings.max_backoff_s)

    def resolve_all(self) -> None:
        """Ask every peer for its node id again (a push came from a node we have not met: a
        peer not identified yet, or one that restarted on a new store with a new id). At most
        once a second, so unknown pushes cannot turn into a storm of hellos."""
        with self._resolving:
            if time.monotonic() - self._resolved_at < 1.0:
                return
            self._resolved_at = time.monotonic()
            for peer in self.peers:
                try:
                    hello = peer.client.hello()
                except MemmeshError:
                    continue
                if hello.node != peer.node and hello.node != self.service.node_id:
                    self.replica.known(hello.node, peer.client.url)
                    log.info("peer %s is node %s (was %s)", peer.client.url, hello.node, peer.node)
                    peer.node = hello.node

    def _resolve(self, peer: _Peer) -> None:
        """Learn the peer's node id once (its hello), and remember it as a known peer."""
        if peer.node is not None:
            return
        hello = peer.client.hello()
        if hello.node == self.service.node_id:
            raise PeerError(f"peer {peer.client.url} has this node's own id {hello.node!r}: every node needs its own --node-id")
        self.replica.known(hello.node, peer.client.url)
        peer.node = hello.node
        log.info("peer %s is node %s", peer.client.url, hello.node)

    def _push_once(self, peer: _Peer) -> bool:
        """Send the next page after the peer's cursor; False when it has everything."""
        assert peer.node is not None
        store = self.service.store
        state = next((p for p in store.peers() if p.node_id == peer.node), None)
        sent = state.sent_seq if state else 0
        if store.change_counter() <= sent:
            return False
        purged = store.purged_seq()
        if 0 < sent < purged:
            raise PeerError(
                f"peer {peer.node} last acknowledged change {sent}, before tombstones up to {purged} were purged: "
                "it needs a full resync (resync_required)"
            )
        if self.replica.pulling(peer.node):
            return False  # the peer is pulling our feed page after page: pushing would send the same pages twice
        page = batch_from_changes(self.service.node_id, sent, store.changes_since(sent, self.settings.batch_size, skip_node=peer.node))
        page.items = self.replica.with_history(self.replica.with_vectors(page.items)) + governed_items(self.service, sent, page.upto)
        # Sent even when every item was the peer's own write (left out by the feed): the empty
        # range still moves the peer's cursor for us, which causality tokens wait on.
        for batch in split_batch(SyncBatch(node=page.node, since=page.since, upto=page.upto, items=page.items)):
            peer.client.push(batch)
        peer.pushed += len(page.items)
        self.replica.contact(peer.node, sent=page.upto)
        return page.upto > sent

    def _outcome(self, peer: _Peer, side: Literal["push", "pull"], error: str | None) -> None:
        """The outcome of the pusher's round or of a catch-up round with ``peer``: None for
        success, else why it failed. A change of the peer's error is logged and written to
        its row, under one lock, so the row always ends with the latest one."""
        with self._recording:
            before = peer.error
            if side == "push":
                peer.push_error = error
            else:
                peer.pull_error = error
            after = peer.error
            if after != before and after is not None:
                log.warning("peer %s: %s", peer.client.url, after)
            elif after != before:
                log.info("peer %s answers again", peer.client.url)
            if peer.node is not None and peer.stored != (after,):
                with contextlib.suppress(MemmeshError):
                    self.replica.record_error(peer.node, after)
                    peer.stored = (after,)

    # -- catch-up ----------------------------------------------------------------------------------

    def _catchup_loop(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            rounds += 1
            for peer in self.peers:
                if self._stop.is_set():
                    return
                try:
                    self._resolve(peer)
                    self.catch_up(peer)
                    if rounds % ANTI_ENTROPY_EVERY == 0:
                        peer.repair_due = True
                    if peer.repair_due and self._in_step(peer):
                        peer.repair_due = False
                        self.anti_entropy(peer)
                    self._outcome(peer, "pull", None)
                except MemmeshError as exc:
                    log.info("catch-up from %s failed: %s", peer.client.url, exc.message)
                    self._outcome(peer, "pull", exc.message)
                except Exception as exc:  # a bug must not stop the other peers' catch-up: log it, show it
                    log.exception("catch-up from %s failed", peer.client.url)
                    self._outcome(peer, "pull", f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.settings.catchup_interval_s)

    def _in_step(self, peer: _Peer) -> bool:
        """Neither feed has a backlog: our last pull reached the end of the peer's feed, the
        peer is not pulling ours and has acknowledged all of it but the last page's worth
        (under steady writes the counter is always a little ahead). Only then can digests
        differing mean something the feeds missed; during a catch-up they differ in every
        bucket, and comparing them would read every row on both nodes for nothing."""
        if peer.behind or peer.node is None or self.replica.pulling(peer.node):
            return False
        state = next((p for p in self.service.store.peers() if p.node_id == peer.node), None)
        return state is not None and self.service.store.change_counter() - state.sent_seq <= self.settings.batch_size

    def anti_entropy(self, peer: _Peer) -> None:
        """Compare digests with the peer and repair what the feed never carried (see
        :mod:`.antientropy`); one top-level digest each way when nothing differs."""
        from memmesh.federation.antientropy import repair

        assert peer.node is not None
        report = repair(self.replica, peer.client, peer.node)
        if report.memories:
            self.anti_entropy_repairs += report.memories

    def catch_up(self, peer: _Peer) -> int:
        """Pull and apply the peer's feed after our cursor for it; returns items applied."""
        assert peer.node is not None
        applied = 0
        pulled: int | None = None
        while not self._stop.is_set():
            state = next((p for p in self.service.store.peers() if p.node_id == peer.node), None)
            since = state.recv_seq if state else 0
            if pulled is not None and since > pulled:
                # The cursor moved past our last page by itself: the peer's pusher is delivering
                # the same feed. Leave it to the pusher instead of reading, parsing and skipping
                # every page twice (the next round checks again).
                break
            page = peer.client.since(self.service.node_id, since, self.settings.batch_size, omit_own=True)
            if page.node != peer.node or page.since != since:
                raise PeerError(
                    f"peer {peer.client.url} answered a page for node {page.node} from {page.since}, not {peer.node} from {since}"
                )
            report = self.replica.apply(page, principal=LOCAL_PRINCIPAL)
            applied += report.applied
            peer.behind = page.more
            if not page.more or page.upto <= since:
                break
            pulled = page.upto
        return applied

    # -- status --------------------------------------------------------------------------------

    def live(self) -> dict[str, dict[str, Any]]:
        """What only the running threads know, per peer URL."""
        return {
            p.client.url: {"node_id": p.node, "error": p.error, "pushed_items": p.pushed, "push_failures": p.failures} for p in self.peers
        }


def resync_from(replica: Replica, client: PeerClient, batch_size: int = 500) -> SyncReport:
    """A full resync of this node from one peer (``memmesh cluster resync``): read its whole
    feed from 0 and let :meth:`Replica.full_resync` decide what to keep. Refused before
    anything is read or written while a server runs on the store."""
    replica.refuse_if_served()
    hello = client.hello()
    replica.known(hello.node, client.url)
    own = replica.service.node_id

    def pages() -> Iterator[SyncPage]:
        upto, more = 0, True
        while more:
            page = client.since(own, upto, batch_size)
            if page.node != hello.node or page.since != upto:
                raise PeerError(f"peer {client.url} answered a page for node {page.node} from {page.since}, not {hello.node} from {upto}")
            upto, more = page.upto, page.more and page.upto > upto
            yield page

    return replica.full_resync(pages(), principal=LOCAL_PRINCIPAL)


def _waker(peer: _Peer) -> Callable[[Future[Any]], None]:
    """A callback that wakes ``peer``'s pusher once a push to it has ended."""

    def wake(_done: Future[Any]) -> None:
        peer.wake.set()

    return wake
