"""The real apply path (``Service.replica``), not a model of it: random writes, updates,
deletes and out-of-order, repeated deliveries over three in-memory nodes must end with
identical stores and identical conflict records on every node (issue 15 / issue 24)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memmesh import Memory
from memmesh.compose import build
from memmesh.config import load_settings
from memmesh.errors import ClockSkewError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.service import Service

NODES = ("node-1", "node-2", "node-3")


class Clock:
    """A node's wall clock; remembers the furthest it ever read, as real time would pass it."""

    def __init__(self) -> None:
        self.now = self.furthest = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.furthest = max(self.furthest, self.now)
        return self.now


def node(name: str, clock: Clock) -> Service:
    settings = load_settings(
        None,
        overrides={"storage": {"url": "sqlite:///:memory:", "node_id": name}, "embeddings": {"provider": "none"}},
        env={"MEMMESH_CONFIG": ""},
    )
    service = build(settings, clock=clock)
    for other in NODES:
        if other != name:
            service.replica.known(other, None)
    return service


def deliver(source: Service, target: Service, *, replay: bool) -> None:
    """Everything ``source`` holds that ``target`` has not pulled yet (or, for ``replay``, all
    of it again from the start), page by page, as the catch-up pull does."""
    state = next(p for p in target.store.peers() if p.node_id == source.node_id)
    since = 0 if replay else state.recv_seq
    while True:
        page = source.replica.feed(peer=target.node_id, since=since, limit=3, principal=P)
        before = target.store.change_counter()
        try:
            target.replica.apply(page, principal=P)
        except ClockSkewError:  # the sender's clock runs ahead: the page is refused whole, nothing written
            assert target.store.change_counter() == before
            raise
        since = page.upto
        if not page.more:
            return


def snapshot(service: Service) -> dict[str, Any]:
    return {
        "memories": sorted((m.id, m.content, m.version.hlc, m.version.node) for m in service.store.iter_memories()),
        "links": sorted((x.source_id, x.target_id, x.relation.value) for x in service.store.iter_links()),
        "conflicts": sorted((c.id, c.memory_id) for c in service.store.conflicts()),
        "standards": standard_rows(service),
    }


def standard_rows(service: Service) -> list[tuple[Any, ...]]:
    """Every standard a node holds, cleared ones (tombstones) too, with its version stamp."""
    with service.store.reading() as conn:
        rows = conn.execute("SELECT namespace, governance, ttl_seconds, cleared, hlc, node FROM namespace_standards ORDER BY namespace")
        return [tuple(row) for row in rows.fetchall()]


op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("update"), st.integers(0, 2), st.integers(0, 3), st.integers(0, 5)),
    st.tuples(st.just("delete"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("link"), st.integers(0, 2), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("tick"), st.integers(0, 2), st.integers(-300_000, 300_000)),
    st.tuples(st.just("standard"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 3)),
    st.tuples(st.just("clear"), st.integers(0, 2), st.integers(0, 1)),
)


@pytest.mark.slow  # long: started first (tests/conftest.py)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=40))
def test_any_interleaving_converges_on_the_real_apply_path(ops: list[tuple[Any, ...]]) -> None:
    converge(ops)


def test_a_link_to_a_memory_whose_delete_loses_to_a_concurrent_update_survives_everywhere() -> None:
    """Once a known divergence: a link that reached the deleting node while its end was a
    tombstone was dropped there, so when the delete lost to a concurrent update the revived
    memory had the link on one node only. Links now stay stored, hidden by the tombstone."""
    converge([("link", 1, 0, 1), ("update", 1, 0, 0), ("delete", 0, 0), ("update", 0, 1, 0)])


def test_concurrent_standard_set_and_clear_with_skewed_clocks_converge() -> None:
    """Node 0 sets a standard, node 1 learns it and clears it while node 2, its clock five
    minutes ahead, sets it again: the same winner (or none) on every node."""
    final = converge([("standard", 0, 0, 1), ("sync", 0, 1, False), ("clear", 1, 0), ("tick", 2, 300_000), ("standard", 2, 0, 2)])
    (row,) = final["standards"]
    assert row[3] == 0 and row[2] == 120 and row[5] == "node-3"  # node 2's set is the later (HLC, node) stamp


def test_a_revived_memory_gets_back_the_links_it_had_before_its_delete() -> None:
    """Node 1 links two memories, everyone learns it; node 0 deletes one end while node 1
    updates it concurrently (and wins): the link is back on every node."""
    ops = [("link", 1, 0, 1), ("sync", 1, 0, False), ("sync", 1, 2, False), ("delete", 0, 0), ("tick", 1, 1000), ("update", 1, 0, 0)]
    final = converge(ops)
    assert len(final["memories"]) == 4  # the update won: nothing deleted
    assert len(final["links"]) == 1  # and its link is back on every node


def converge(ops: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Run ``ops`` on three nodes, heal, and require identical stores everywhere (returned)."""
    clocks = [Clock() for _ in NODES]
    nodes = [node(name, clock) for name, clock in zip(NODES, clocks, strict=True)]
    seed = nodes[0].add_many([{"content": f"shared {i}", "namespace": "p"} for i in range(4)], principal=P)
    for other in nodes[1:]:
        deliver(nodes[0], other, replay=False)
    ids = [m.id for m in seed]
    for counter, (action, who, *args) in enumerate(ops):
        service = nodes[who]
        try:
            if action == "add":  # the same content on several nodes: two ids, one memory in the end
                service.add({"content": f"same text {args[0]}", "namespace": "p"}, principal=P)
            elif action == "update":
                service.update(ids[args[0]], {"content": f"value {args[1]} from {service.node_id} #{counter}"}, principal=P)
            elif action == "delete":
                service.delete(ids[args[0]], principal=P)
            elif action == "link" and args[0] != args[1]:
                service.link(ids[args[0]], ids[args[1]], "related_to", principal=P)
            elif action == "sync" and who != args[0]:
                with contextlib.suppress(ClockSkewError):  # refused for now (checked in deliver); delivered at the end
                    deliver(service, nodes[args[0]], replay=args[1])
            elif action == "standard":  # set/clear standards concurrently: last writer on (HLC, node) everywhere
                service.governance.set_standard(f"std{args[0]}", ttl_seconds=args[1] * 60, principal=P)
            elif action == "clear":
                service.governance.clear_standard(f"std{args[0]}", principal=P)
            elif action == "tick":  # clocks drift by up to ±5 minutes; the HLC must keep causality
                clocks[who].now += timedelta(milliseconds=args[0])
        except NotFoundError:
            pass  # that node does not hold the memory (deleted, or not delivered yet)
    healed = max(c.furthest for c in clocks) + timedelta(seconds=1)
    for clock in clocks:  # heal: real time has passed every clock's furthest reading, then full exchanges
        clock.now = healed
    for _ in range(3):
        for source in nodes:
            for target in nodes:
                if source is not target:
                    deliver(source, target, replay=False)
    first = snapshot(nodes[0])
    for other in nodes[1:]:
        assert snapshot(other) == first
    for service in nodes:
        service.store.close()
    return first


def test_links_of_a_deleted_memory_are_hidden_then_purged_with_its_tombstone(tmp_path: Any) -> None:
    """Through the Python API: a deleted end hides its links (links, stats, graph), and gc
    purging the tombstone removes them for good, so a later memory given the same id does
    not inherit a link it never had."""
    clock = Clock()
    settings = load_settings(
        None,
        overrides={"storage": {"url": f"sqlite:///{tmp_path}/one.db"}, "embeddings": {"provider": "none"}},
        env={"MEMMESH_CONFIG": ""},
    )
    with Memory(config=settings, clock=clock) as memory:
        a = memory.add("the source of the link", namespace="p", tier="long")
        b = memory.add("the end that gets deleted", namespace="p", tier="long")
        memory.link(a.id, b.id, "related_to")
        assert [link.target_id for link in memory.links(a.id)] == [b.id] and memory.stats().links_count == 1
        memory.delete(b.id)
        assert memory.links(a.id) == [] and memory.stats().links_count == 0
        clock.now += timedelta(days=31)  # past the 30-day tombstone retention
        memory.gc()
        memory.add("a new memory that happens to reuse the id", namespace="p", tier="long", id=b.id)
        assert memory.links(a.id) == [] and memory.stats().links_count == 0
