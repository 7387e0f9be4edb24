"""Every store method that returns a sequence answers in one documented, deterministic order,
the same on SQLite and PostgreSQL (the copies of the SQL had drifted: ``iter_links``,
``tombstones_since``, ``links``, ``neighbours`` and the change feed ordered ties differently).

Rows are written in an order that differs from the expected one, and ties (same change
number, same timestamp, same score) are made on purpose, so an order left to the database
shows up as a failure on at least one backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from memmesh.clock import format_ts
from memmesh.model import Agent, Conflict, HistoryEntry, Link, PeerState, StoredApiKey, Tombstone
from memmesh.model import Memory as MemoryRecord
from memmesh.store import open_store
from memmesh.store.base import Filter, Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=30)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _record(memory_id: str, minutes: int, namespace: str = "ord", content: str | None = None) -> MemoryRecord:
    moment = _at(minutes)
    return MemoryRecord(
        id=memory_id,
        namespace=namespace,
        content=content or f"note {memory_id}",
        tier="mid",
        kind="fact",
        priority=0,
        confidence=1.0,
        source="test",
        created_at=moment,
        updated_at=moment,
        content_hash=f"hash-{memory_id}",
    )


@pytest.fixture
def store(backend_url: str) -> Iterator[Store]:
    opened = open_store(backend_url)
    yield opened
    opened.close()


# Written in this order; created_at minutes chosen so ties on time exist (m1/m3, m2/m4).
WRITTEN = [("m3", 10), ("m1", 10), ("m5", 20), ("m2", 30), ("m4", 30), ("m0", 0)]


def _fill(store: Store) -> dict[str, MemoryRecord]:
    records = {mid: _record(mid, minutes) for mid, minutes in WRITTEN}
    for record in records.values():  # one transaction each: increasing change numbers
        with store.write() as tx:
            tx.insert_memory(record, tx.next_seq())
    return records


def test_memory_reads_order_by_time_id_or_insertion(store: Store) -> None:
    _fill(store)
    listed = [m.id for m in store.list(Filter(now=NOW), 10)]
    assert listed == ["m4", "m2", "m5", "m3", "m1", "m0"]  # created_at DESC, id DESC
    assert [m.id for m in store.list(Filter(now=NOW), 10, after=(format_ts(_at(30)), "m4"))] == ["m2", "m5", "m3", "m1", "m0"]
    assert [m.id for m in store.get_many(["m4", "m0", "missing", "m3"])] == ["m4", "m0", "m3"]  # as asked
    assert [m.id for m in store.iter_memories(batch=2)] == [mid for mid, _ in WRITTEN]  # insertion order
    with store.write() as tx:
        tx.put_vector("m1", "model-x", np.ones(4, dtype=np.float32), tx.next_seq())
    assert store.ids_missing_vectors("model-x") == ["m3", "m5", "m2", "m4", "m0"]  # insertion order
    # Neighbours in (created_at, id) order: m0, m1, m3, m5, m2, m4; nearest first on each side.
    assert store.neighbours(["m5"], 2, 86_400) == {"m5": [("m1", -2), ("m3", -1), ("m2", 1), ("m4", 2)]}
    with store.write() as tx:
        for mid in ("m4", "m0", "m2"):
            tx.record_access(mid, _at(40), _at(50))
        assert [m.id for m in tx.expired(_at(60), 10)] == ["m2", "m4", "m0"]  # insertion order


def test_keyword_ties_order_by_id(store: Store) -> None:
    with store.write() as tx:
        seq = tx.next_seq()
        for mid, namespace in (("k2", "a"), ("k3", "b"), ("k1", "c")):
            tx.insert_memory(_record(mid, 5, namespace, content="identical words about ordering"), seq)
    found = store.keyword_search(["ordering"], Filter(now=NOW), 10)
    assert len({score for _, score in found}) == 1  # a real tie
    assert [m.id for m, _ in found] == ["k1", "k2", "k3"]


def test_links_tombstones_and_the_feed_order_by_change_number_then_key(store: Store) -> None:
    _fill(store)
    first = [("m0", "m5", "related_to"), ("m0", "m2", "mentions"), ("m1", "m0", "related_to"), ("m0", "m2", "caused_by")]
    with store.write() as tx:  # one change number for all four, same created_at
        seq = tx.next_seq()
        for source, target, relation in first:
            tx.put_link(Link(source_id=source, target_id=target, relation=relation, created_at=_at(5)), seq)
    with store.write() as tx:  # a later change number, an earlier created_at
        tx.put_link(Link(source_id="m3", target_id="m0", relation="related_to", created_at=_at(1)), tx.next_seq())
    keys = [(link.source_id, link.target_id, link.relation.value) for link in store.iter_links()]
    assert keys == [
        ("m0", "m2", "caused_by"),
        ("m0", "m2", "mentions"),
        ("m0", "m5", "related_to"),
        ("m1", "m0", "related_to"),
        ("m3", "m0", "related_to"),
    ]
    around = [(link.source_id, link.target_id, link.relation.value) for link in store.links("m0")]
    assert around == [("m3", "m0", "related_to"), *keys[:4]]  # created_at, then change number, then key

    with store.write() as tx:
        tx.delete_memory(Tombstone(id="m1", namespace="ord", deleted_at=_at(60)), tx.next_seq())
    with store.write() as tx:
        seq = tx.next_seq()
        for mid in ("m4", "m2", "m0"):
            tx.delete_memory(Tombstone(id=mid, namespace="ord", deleted_at=_at(61)), seq)
    assert [t.id for t in store.tombstones_since(0)] == ["m1", "m0", "m2", "m4"]

    with store.write() as tx:
        seq = tx.next_seq()
        for mid in ("z9", "z7", "z8"):
            tx.insert_memory(_record(mid, 70), seq)
        for agent_id in ("zed", "amy"):
            tx.put_agent(Agent(agent_id=agent_id, display_name=agent_id, role="writer", namespaces=["*"], created_at=T0, updated_at=T0))
        for cid in ("c2", "c1"):
            tx.put_conflict(Conflict(id=cid, memory_id="z9", namespace="ord", loser={"b": 1, "a": 2}, version={}), seq)
    page = store.changes_since(0, 1000)
    assert [m.id for _, m in page.memories] == ["m3", "m5", "z7", "z8", "z9"]  # m1, m2, m4, m0 are deleted
    assert [t.id for _, t in page.tombstones] == ["m1", "m0", "m2", "m4"]
    assert [(link.source_id, link.target_id, link.relation.value) for _, link in page.links] == keys
    # put_agent takes its own change number on PostgreSQL (one per call) and the transaction's on SQLite
    agents = [(seq, a.agent_id) for seq, a in page.agents]
    assert agents == sorted(agents) and {a for _, a in agents} == {"amy", "zed"}
    assert [c.id for _, c in page.conflicts] == ["c1", "c2"]
    for rows in (page.memories, page.tombstones, page.links, page.agents, page.conflicts):
        assert [seq for seq, _ in rows] == sorted(seq for seq, _ in rows)


def test_vector_feed_and_vector_reads_order_by_change_number_then_id(store: Store) -> None:
    _fill(store)
    with store.write() as tx:
        seq = tx.next_seq()
        for mid in ("m5", "m3", "m4", "m1"):
            tx.put_vector(mid, "model-x", np.full(4, 0.5, dtype=np.float32), seq)
    with store.write() as tx:
        tx.put_vector("m0", "model-x", np.ones(4, dtype=np.float32), tx.next_seq())
    with store.write() as tx:
        seq = tx.next_seq()
        for mid in ("m5", "m1"):
            tx.delete_memory(Tombstone(id=mid, namespace="ord", deleted_at=_at(60)), seq)
    changes = store.vector_changes(0)
    assert [row.memory_id for row in changes.upserts] == ["m3", "m4", "m0"]
    assert changes.removed == ["m1", "m5"]
    assert [row.memory_id for row in store.get_vectors(["m4", "m0", "m3"])] == ["m0", "m3", "m4"]


def test_access_federation_and_archive_lists_have_one_order(store: Store) -> None:
    records = _fill(store)
    with store.write() as tx:
        for agent_id in ("bob", "al", "cy"):
            tx.put_agent(Agent(agent_id=agent_id, display_name=agent_id, role="reader", namespaces=["ord"], created_at=T0, updated_at=T0))
        for key_id, minutes in (("key-b", 1), ("key-c", 0), ("key-a", 1)):
            tx.insert_api_key(
                StoredApiKey(
                    id=key_id, agent_id="bob", role="reader", namespaces=["ord"], created_at=_at(minutes), key_hash=f"hash-{key_id}"
                )
            )
        seq = tx.next_seq()
        for cid, memory_id in (("c3", "m1"), ("c1", "m2"), ("c2", "m1")):
            tx.put_conflict(Conflict(id=cid, memory_id=memory_id, namespace="ord", loser={}, version={}), seq)
        for node in ("node-b", "node-a"):
            tx.put_peer(PeerState(node_id=node))
        for event in ("add", "update", "promote"):
            tx.add_history(HistoryEntry(memory_id="m3", event=event, at=_at(5)))
        tx.add_history(HistoryEntry(memory_id="m1", event="add", at=_at(1)))
        tx.archive(records["m4"], _at(40), "test")
        tx.archive(records["m0"], _at(40), "test")
        tx.archive(records["m2"], _at(41), "test")
        tx.insert_memory(_record("x1", 0, namespace="other"), seq)
    assert [a.agent_id for a in store.agents()] == ["al", "bob", "cy"]
    assert [k.id for k in store.api_keys()] == ["key-c", "key-a", "key-b"]  # created_at, then id
    assert [c.id for c in store.conflicts()] == ["c1", "c2", "c3"]
    assert [c.id for c in store.conflicts("m1")] == ["c2", "c3"]
    assert [p.node_id for p in store.peers()] == ["node-a", "node-b"]
    assert [h.event.value for h in store.history("m3")] == ["add", "update", "promote"]  # as written
    assert [(h.memory_id, h.event.value) for h in store.iter_history()] == [
        ("m3", "add"),
        ("m3", "update"),
        ("m3", "promote"),
        ("m1", "add"),
    ]
    assert [a.memory.id for a in store.archived(Filter(now=NOW), 10)] == ["m2", "m0", "m4"]  # archived_at DESC, id
    archive = store.archive_stats(Filter(now=NOW))
    assert [(n.namespace, n.count) for n in archive.by_namespace] == [("ord", 3)]
    stats = store.stats(NOW, NOW)
    assert [(n.namespace, n.count) for n in stats.by_namespace] == [("ord", 3), ("other", 1)]  # count DESC, namespace
    assert [t.tier for t in stats.by_tier] == sorted(t.tier for t in stats.by_tier)
