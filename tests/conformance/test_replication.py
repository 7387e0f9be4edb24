"""Replication's core on both backends, without HTTP: the change feed, applying it with
``versions.merge``, conflicts, tombstones, clock skew and the retention guard (issue 15)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.clock import format_hlc
from memmesh.errors import ClockSkewError, ConfigError, ForbiddenError, InvalidInputError, ResyncRequiredError
from memmesh.federation.changes import SyncBatch, SyncItem
from memmesh.model import LOCAL_PRINCIPAL, Principal
from memmesh.service import Service
from memmesh.store.base import Filter

P = LOCAL_PRINCIPAL


@pytest.fixture
def pair(backend_url: str, tmp_path: Path, open_memory: Callable[..., Memory]) -> tuple[Service, Service]:
    """Node a on the backend under test, node b on SQLite; each knows the other as a peer."""
    a = open_memory(backend_url, storage={"node_id": "node-a"}).service
    b = open_memory(f"sqlite:///{tmp_path / 'b.db'}", storage={"node_id": "node-b"}).service
    a.replica.known("node-b", None)
    b.replica.known("node-a", None)
    return a, b


def pull(source: Service, target: Service, limit: int = 500) -> int:
    """Bring ``target`` up to date with ``source`` through the feed; returns pages applied."""
    pages = 0
    while True:
        state = next(p for p in target.store.peers() if p.node_id == source.node_id)
        page = source.replica.feed(peer=target.node_id, since=state.recv_seq, limit=limit, principal=P)
        target.replica.apply(page, principal=P)
        pages += 1
        if not page.more:
            return pages


def state(service: Service) -> dict[str, Any]:
    memories = {m.id: (m.content, m.version.hlc, m.version.node) for m in service.store.iter_memories()}
    links = sorted((link.source_id, link.target_id, link.relation.value) for link in service.store.iter_links())
    return {"memories": memories, "links": links, "conflicts": sorted(c.id for c in service.store.conflicts())}


def test_the_feed_pages_every_change_and_applying_it_twice_changes_nothing(pair: tuple[Service, Service]) -> None:
    a, b = pair
    batch = a.add_many([{"content": f"fact {i}", "namespace": "t"} for i in range(12)], principal=P)  # one change number for 12 rows
    singles = [a.add({"content": f"single {i}", "namespace": "t"}, principal=P) for i in range(5)]
    a.link(batch[0].id, singles[0].id, "related_to", principal=P)
    a.update(singles[1].id, {"content": "single one, changed"}, principal=P)
    a.delete(singles[2].id, principal=P)
    assert pull(a, b, limit=5) >= 2  # the 12 rows sharing change 1 come whole, then the rest
    assert state(b) == state(a)
    assert singles[2].id not in state(b)["memories"] and b.store.get(singles[2].id) is None
    counter = b.store.change_counter()
    page = a.replica.feed(peer="node-b", since=0, limit=1000, principal=P)
    report = b.replica.apply(page, principal=P)
    assert report.applied == 0 and b.store.change_counter() == counter  # replayed batch: nothing changes
    # and back: b applies nothing new from a's own changes echoed by b's feed
    pull(b, a)
    assert state(a) == state(b)


def test_concurrent_updates_resolve_the_same_on_both_nodes_and_keep_the_loser(pair: tuple[Service, Service], clock: Any) -> None:
    a, b = pair
    x = a.add({"content": "the meeting is on Monday", "namespace": "t"}, principal=P)
    pull(a, b)
    a.update(x.id, {"content": "the meeting is on Tuesday"}, principal=P)
    clock.advance(milliseconds=5)
    b.update(x.id, {"content": "the meeting is on Wednesday"}, principal=P)
    pull(a, b)
    pull(b, a)
    assert state(a) == state(b)
    assert a.store.get(x.id).content == "the meeting is on Wednesday"  # greater (hlc, node) wins
    conflicts = a.store.conflicts(x.id)
    assert len(conflicts) == 1 and conflicts[0].loser["content"] == "the meeting is on Tuesday"
    assert [c.id for c in b.store.conflicts(x.id)] == [conflicts[0].id]
    assert "merge" in [e.event.value for e in a.store.history(x.id)]
    assert "merge" in [e.event.value for e in b.store.history(x.id)]


def test_a_delete_is_never_undone_by_a_stale_copy(pair: tuple[Service, Service]) -> None:
    a, b = pair
    x = a.add({"content": "soon gone", "namespace": "t"}, principal=P)
    pull(a, b)
    stale_from_b = b.replica.feed(peer="node-a", since=0, limit=100, principal=P)  # b's copy of x, before the delete
    stale_from_a = a.replica.feed(peer="node-b", since=0, limit=100, principal=P)
    a.delete(x.id, principal=P)
    a.replica.apply(stale_from_b, principal=P)
    assert a.store.get(x.id) is None
    pull(a, b)
    assert b.store.get(x.id) is None
    b.replica.apply(stale_from_a, principal=P)
    assert b.store.get(x.id) is None
    assert a.store.conflicts() == b.store.conflicts() == []  # the delete had seen x: no conflict


def test_a_version_far_ahead_of_our_clock_is_refused_counted_and_writes_nothing(pair: tuple[Service, Service], clock: Any) -> None:
    a, b = pair
    x = a.add({"content": "from the future", "namespace": "t"}, principal=P)
    ahead_ms = int((clock() + timedelta(minutes=5)).timestamp() * 1000)
    future = x.model_copy(update={"version": x.version.model_copy(update={"hlc": format_hlc(ahead_ms, 0)})})
    ok = a.add({"content": "fine", "namespace": "t"}, principal=P)
    counter = b.store.change_counter()
    with pytest.raises(ClockSkewError):
        b.replica.apply(SyncBatch(node="node-a", items=[SyncItem(seq=0, memory=ok), SyncItem(seq=0, memory=future)]), principal=P)
    assert b.store.change_counter() == counter and b.store.get(ok.id) is None  # the whole batch is refused
    assert b.replica.status(principal=P).clock_refused == 1


def test_bad_batches_are_refused_before_anything_is_written(pair: tuple[Service, Service]) -> None:
    a, b = pair
    x = a.add({"content": "genuine", "namespace": "t"}, principal=P)
    forged = x.model_copy(update={"content": "tampered"})
    with pytest.raises(InvalidInputError, match="content_hash"):
        b.replica.apply(SyncBatch(node="node-a", items=[SyncItem(seq=0, memory=forged)]), principal=P)
    with pytest.raises(ForbiddenError, match="unknown node id"):
        b.replica.apply(SyncBatch(node="node-z", items=[SyncItem(seq=0, memory=x)]), principal=P)
    with pytest.raises(InvalidInputError, match="own id"):
        b.replica.apply(SyncBatch(node="node-b", items=[]), principal=P)
    writer = Principal(agent_id="w", role="writer", key_id="k1")
    with pytest.raises(ForbiddenError, match="peer"):
        b.replica.apply(SyncBatch(node="node-a", items=[SyncItem(seq=0, memory=x)]), principal=writer)
    peer = Principal(agent_id="node-a", role="peer", key_id="k2")
    b.replica.apply(SyncBatch(node="node-a", items=[SyncItem(seq=0, memory=x)]), principal=peer)
    assert b.store.get(x.id) is not None
    with pytest.raises(ForbiddenError):
        b.get(x.id, principal=peer)  # a peer key reads nothing through the ordinary routes
    assert b.store.get(forged.id).content == "genuine"


def test_a_peer_behind_purged_tombstones_must_resync_in_full(pair: tuple[Service, Service], clock: Any) -> None:
    a, b = pair
    x = a.add({"content": "deleted long ago", "namespace": "t"}, principal=P)
    a.add({"content": "kept", "namespace": "t"}, principal=P)
    pull(a, b)
    a.delete(x.id, principal=P)
    clock.advance(days=a.policy.tombstone_retention_days + 1)
    a.gc(principal=P)
    assert a.store.purged_seq() > 0
    since = next(p for p in b.store.peers() if p.node_id == "node-a").recv_seq
    with pytest.raises(ResyncRequiredError):
        a.replica.feed(peer="node-b", since=since, limit=100, principal=P)
    with pytest.raises(ResyncRequiredError):  # and its pushes are refused: silent past the retention
        a.replica.apply(SyncBatch(node="node-b", items=[]), principal=P)


def test_a_store_with_changes_refuses_another_node_id(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    open_memory(url, storage={"node_id": "node-1"}).add("something")
    with pytest.raises(ConfigError, match="belongs to node 'node-1'"):
        open_memory(url, storage={"node_id": "node-2"})
    assert open_memory(url).service.node_id == "node-1"


def test_a_delete_made_during_a_partition_applies_at_half_the_retention(pair: tuple[Service, Service], clock: Any) -> None:
    a, b = pair
    x = a.add({"content": "deleted while b was away", "namespace": "t"}, principal=P)
    pull(a, b)
    a.delete(x.id, principal=P)
    clock.advance(days=a.policy.tombstone_retention_days / 2)
    a.gc(principal=P)  # nothing old enough to purge yet
    assert a.store.purged_seq() == 0
    pull(a, b)
    assert b.store.get(x.id) is None
    pull(b, a)  # b's feed no longer holds x: nothing comes back
    assert a.store.get(x.id) is None and b.store.get(x.id) is None


def test_a_feed_range_already_applied_is_skipped_without_touching_the_store(pair: tuple[Service, Service]) -> None:
    a, b = pair
    a.add_many([{"content": f"once {i}", "namespace": "t"} for i in range(3)], principal=P)
    page = a.replica.feed(peer="node-b", since=0, limit=100, principal=P)
    assert b.replica.apply(page, principal=P).applied == 3
    counter = b.store.change_counter()
    again = b.replica.apply(page, principal=P)
    assert (again.applied, again.duplicates) == (0, 3) and b.store.change_counter() == counter


def test_a_full_resync_drops_missed_deletes_keeps_new_local_writes_and_reopens_incremental_sync(
    pair: tuple[Service, Service], clock: Any
) -> None:
    a, b = pair
    x = a.add({"content": "deleted while b was away", "namespace": "t"}, principal=P)
    kept = a.add({"content": "still there", "namespace": "t", "tier": "long"}, principal=P)  # long: no TTL runs out
    pull(a, b)
    pull(b, a)
    a.delete(x.id, principal=P)
    clock.advance(days=a.policy.tombstone_retention_days + 1)
    a.gc(principal=P)
    mine = b.add({"content": "written on b after it lost touch", "namespace": "t", "tier": "long"}, principal=P)
    since = next(p for p in b.store.peers() if p.node_id == "node-a").recv_seq
    with pytest.raises(ResyncRequiredError):
        a.replica.feed(peer="node-b", since=since, limit=100, principal=P)

    def pages() -> Any:
        upto, more = 0, True
        while more:
            page = a.replica.feed(peer="node-b", since=upto, limit=2, principal=P)
            upto, more = page.upto, page.more
            yield page

    report = b.replica.full_resync(pages(), principal=P)
    assert report.skipped == 1  # x: its delete was missed, it is archived here, never tombstoned
    assert b.store.get(x.id) is None and b.store.get(kept.id) is not None and b.store.get(mine.id) is not None
    assert [m.memory.id for m in b.store.archived(Filter(now=clock()), 10)] == [x.id]
    pull(b, a)  # incremental sync works again, both ways, and x does not come back
    pull(a, b)
    assert a.store.get(mine.id) is not None and a.store.get(x.id) is None
    assert state(a)["memories"] == state(b)["memories"]


def test_agents_replicate_and_the_later_edit_wins_everywhere(pair: tuple[Service, Service], clock: Any) -> None:
    a, b = pair
    a.register_agent("planner", display_name="Planner", role="writer", principal=P)
    pull(a, b)
    assert [x.display_name for x in b.agents(principal=P)] == ["Planner"]
    clock.advance(seconds=1)
    b.register_agent("planner", display_name="Planner v2", role="reader", principal=P)
    pull(b, a)
    pull(a, b)
    assert [(x.display_name, x.role) for x in a.agents(principal=P)] == [("Planner v2", "reader")]
    assert [(x.display_name, x.role) for x in b.agents(principal=P)] == [("Planner v2", "reader")]
    counter = b.store.change_counter()
    pull(a, b)  # nothing new: no ping-pong of agent records
    assert b.store.change_counter() == counter


def test_keys_made_before_the_first_serve_do_not_stop_a_store_taking_its_node_id(
    tmp_path: Path, open_memory: Callable[..., Memory]
) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    open_memory(url).service.create_key("node-b", role="peer", principal=P)  # `keys create` before `serve --node-id`
    assert open_memory(url, storage={"node_id": "node-a"}).service.node_id == "node-a"


def test_content_digests_agree_across_backends_once_replicated(pair: tuple[Service, Service]) -> None:
    """Anti-entropy digests (federation.digest) are computed the same way on both backends:
    a node on the backend under test and a SQLite node holding the same state agree."""
    from memmesh.federation.digest import namespace_digests, tree_node

    a, b = pair
    made = a.add_many([{"content": f"digest fact {i}", "namespace": f"d{i % 2}"} for i in range(60)], principal=P)
    a.link(made[0].id, made[1].id, "related_to", principal=P)
    a.link(made[2].id, made[3].id, "related_to", principal=P)
    a.update(made[4].id, {"content": "digest fact four, changed"}, principal=P)
    a.delete(made[3].id, principal=P)  # hides the second link
    pull(a, b)
    ours, theirs = namespace_digests(a.store, a.node_id), namespace_digests(b.store, b.node_id)
    assert [(n.namespace, n.rows) for n in ours.namespaces] == [("d0", 31), ("d1", 30)]  # 30 + 1 visible link, 29 + 1 tombstone
    assert ours.digest == theirs.digest
    assert tree_node(a.store, "a", "d0").children == tree_node(b.store, "b", "d0").children
    b.update(made[6].id, {"content": "changed on b only"}, principal=P)
    assert namespace_digests(b.store, b.node_id).by_namespace()["d0"].digest != ours.by_namespace()["d0"].digest
    assert namespace_digests(b.store, b.node_id).by_namespace()["d1"].digest == ours.by_namespace()["d1"].digest
