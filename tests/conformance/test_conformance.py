"""One behaviour suite, run on every backend (SQLite file, PostgreSQL): the Store contract
as users meet it through the public Python API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from memmesh import Memory
from memmesh.errors import ConflictError, ContentTooLargeError, ForbiddenError, InvalidInputError, NotFoundError
from memmesh.model import Principal

pytestmark = pytest.mark.postgres


def test_crud_round_trips_every_field(mem_on: Memory) -> None:
    added = mem_on.add(
        "Alice prefers green tea — très fort, 每天",
        namespace="people/alice",
        title="Alice's drink",
        tags=["Drinks", "tea", "drinks"],
        priority=8,
        confidence=0.75,
        kind="preference",
        tier="long",
        metadata={"source_url": "https://example.org", "nested": {"n": [1, 2.5, None, True]}},
        valid_from="2025-01-01T00:00:00Z",
        agent_id="agent-7",
    )
    assert added.tags == ["drinks", "tea"]
    fetched = mem_on.get(added.id)
    assert fetched == added
    assert fetched.metadata == {"source_url": "https://example.org", "nested": {"n": [1, 2.5, None, True]}}
    assert fetched.valid_from == datetime(2025, 1, 1, tzinfo=UTC)

    updated = mem_on.update(added.id, content="Alice now prefers oolong", tags=["tea"], priority=3)
    assert mem_on.get(added.id) == updated
    assert (updated.content, updated.tags, updated.priority) == ("Alice now prefers oolong", ["tea"], 3)
    assert updated.version.clock[updated.version.node] == 2

    tombstone = mem_on.delete(added.id)
    assert tombstone.id == added.id
    with pytest.raises(NotFoundError):
        mem_on.get(added.id)
    with pytest.raises(NotFoundError):
        mem_on.delete(added.id)
    assert [t.id for t in mem_on.service.store.tombstones_since(0)] == [added.id]


def test_bad_input_is_refused_and_nothing_is_stored(mem_on: Memory) -> None:
    with pytest.raises(InvalidInputError):
        mem_on.add("   ")
    with pytest.raises(ContentTooLargeError):
        mem_on.add("x" * 70_000)
    with pytest.raises(InvalidInputError):
        mem_on.add("ok", namespace="bad//namespace")
    # add_many is all or nothing: the title clash in the last item rolls back the first two.
    mem_on.add("first version", namespace="ns", title="T")
    with pytest.raises(ConflictError):
        mem_on.add_many(
            [
                {"content": "one", "namespace": "ns"},
                {"content": "two", "namespace": "ns"},
                {"content": "clash", "namespace": "ns", "title": "T"},
            ]
        )
    assert [m.content for m in mem_on.get_all()] == ["first version"]
    assert mem_on.stats().total == 1


def test_namespace_subtree_scopes_and_filters(mem_on: Memory, clock) -> None:
    legal = mem_on.add("contract renewal terms", namespace="org/legal", tags=["contract", "q1"], kind="fact", agent_id="a1")
    clock.advance(minutes=1)
    deep = mem_on.add("contract with ACME", namespace="org/legal/contracts", tags=["contract"], kind="episode", agent_id="a2")
    clock.advance(minutes=1)
    other = mem_on.add("contract lawyer jokes", namespace="org/legality", tags=["contract", "q1"], tier="long")
    clock.advance(minutes=1)
    mem_on.add("lunch menu", namespace="org", tags=["food"])

    def ids(**flt) -> list[str]:
        return [m.id for m in mem_on.get_all(**flt)]

    assert ids(namespace="org/legal") == [deep.id, legal.id]
    assert ids(namespace="org/legal", tags=["contract", "q1"]) == [legal.id]
    assert ids(tags=["q1", "contract"]) == [other.id, legal.id]
    assert ids(kind="episode") == [deep.id]
    assert ids(agent_id="a1") == [legal.id]
    assert ids(tier="long") == [other.id]
    assert ids(since=deep.created_at, until=other.created_at) == [deep.id]

    scoped = Principal(agent_id="r", role="reader", namespaces=["org/legal/*"])
    page = mem_on.service.list(principal=scoped)
    assert [m.id for m in page.items] == [deep.id, legal.id]
    hits = mem_on.service.recall("contract", principal=scoped).hits
    assert {h.memory.id for h in hits} == {deep.id, legal.id}
    with pytest.raises(ForbiddenError):
        mem_on.service.list(namespace="org/legality", principal=scoped)
    with pytest.raises(NotFoundError):
        mem_on.service.get(other.id, principal=scoped)


def test_as_of_uses_world_time(mem_on: Memory) -> None:
    old = mem_on.add("CEO is Ann", valid_from="2020-01-01T00:00:00Z", valid_to="2024-01-01T00:00:00Z")
    new = mem_on.add("CEO is Bo", valid_from="2024-01-01T00:00:00Z")
    assert [h.memory.id for h in mem_on.search("CEO", as_of="2022-06-01T00:00:00Z")] == [old.id]
    assert [h.memory.id for h in mem_on.search("CEO", as_of="2025-06-01T00:00:00Z")] == [new.id]


def test_history_records_every_change_in_order(mem_on: Memory) -> None:
    m = mem_on.add("v1", namespace="h")
    mem_on.update(m.id, content="v2")
    mem_on.update(m.id, tags=["x"])
    mem_on.delete(m.id)
    history = mem_on.history(m.id)
    assert [e.event.value for e in history] == ["add", "update", "update", "delete"]
    assert history[1].old["content"] == "v1"
    assert history[1].new["content"] == "v2"
    assert history[2].new == {"tags": ["x"]}
    with pytest.raises(NotFoundError):
        mem_on.history("no-such-id")


def test_links_both_directions_and_removed_with_the_memory(mem_on: Memory) -> None:
    a = mem_on.add("alpha")
    b = mem_on.add("beta")
    c = mem_on.add("gamma")
    mem_on.link(a.id, b.id, "supersedes")
    mem_on.link(c.id, a.id, "mentions", valid_from="2025-01-01T00:00:00Z")
    links = mem_on.links(a.id)
    assert {(x.source_id, x.target_id, x.relation.value) for x in links} == {(a.id, b.id, "supersedes"), (c.id, a.id, "mentions")}
    assert mem_on.stats().links_count == 2
    with pytest.raises(NotFoundError):
        mem_on.link(a.id, "missing")
    with pytest.raises(InvalidInputError):
        mem_on.link(a.id, a.id)
    with pytest.raises(InvalidInputError):
        mem_on.link(a.id, b.id, "likes")
    mem_on.delete(a.id)
    assert mem_on.links(b.id) == []
    assert mem_on.stats().links_count == 0


def test_tombstone_cleared_when_the_id_is_stored_again(mem_on: Memory) -> None:
    m = mem_on.add("remember me", id="client-id-1")
    mem_on.delete(m.id)
    assert [t.id for t in mem_on.service.store.tombstones_since(0)] == ["client-id-1"]
    again = mem_on.add("remember me", id="client-id-1")
    assert again.id == "client-id-1"
    assert mem_on.service.store.tombstones_since(0) == []


def test_dedup_and_client_ids(mem_on: Memory) -> None:
    first = mem_on.add("the sky is blue", namespace="facts")
    assert mem_on.add("the sky is blue", namespace="facts").id == first.id
    elsewhere = mem_on.add("the sky is blue", namespace="other")
    assert elsewhere.id != first.id
    retried = mem_on.add("idempotent", id="req-42")
    assert mem_on.add("idempotent", id="req-42") == retried
    with pytest.raises(ConflictError):
        mem_on.add("different content", id="req-42")
    with pytest.raises(ConflictError):
        mem_on.update(first.id, content="idempotent", namespace="default")
    assert mem_on.stats().total == 3


def test_title_conflicts_error_update_version(mem_on: Memory) -> None:
    original = mem_on.add("Paris", namespace="geo", title="capital of France")
    with pytest.raises(ConflictError) as err:
        mem_on.add("Lyon", namespace="geo", title="capital of France")
    assert err.value.details["existing_id"] == original.id
    updated = mem_on.add("Paris, since 987", namespace="geo", title="capital of France", on_conflict="update")
    assert updated.id == original.id and updated.content == "Paris, since 987"
    versioned = mem_on.add("Paris (v3)", namespace="geo", title="capital of France", on_conflict="version")
    assert versioned.id != original.id
    assert [(x.source_id, x.target_id, x.relation.value) for x in mem_on.links(versioned.id)] == [(versioned.id, original.id, "supersedes")]
    # A new title conflict now names the newest memory with that title.
    with pytest.raises(ConflictError) as err:
        mem_on.add("Marseille", namespace="geo", title="capital of France")
    assert err.value.details["existing_id"] == versioned.id


def test_cursor_pagination_walks_everything_newest_first(mem_on: Memory, clock) -> None:
    made = []
    for i in range(25):
        made.append(mem_on.add(f"note number {i}", namespace="pages"))
        if i % 3 == 0:
            clock.advance(seconds=1)  # several memories share a created_at: the id breaks ties
    seen, cursor = [], None
    while True:
        page = mem_on.list(limit=10, cursor=cursor, namespace="pages")
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 25 and len({m.id for m in seen}) == 25
    assert [(m.created_at, m.id) for m in seen] == sorted(((m.created_at, m.id) for m in made), reverse=True)
    with pytest.raises(InvalidInputError):
        mem_on.list(cursor="not-a-cursor")


def test_keyword_recall_ranks_and_filters(mem_on: Memory) -> None:
    tea = mem_on.add("Alice drinks green tea every morning", namespace="people", title="tea habit")
    mem_on.add("Bob drinks black coffee", namespace="people")
    mem_on.add("Tea ceremonies in Kyoto", namespace="travel")
    result = mem_on.recall("what tea does Alice drink?", mode="keyword", namespace="people")
    assert result.mode == "keyword"
    assert result.hits[0].memory.id == tea.id
    assert all(h.memory.namespace == "people" for h in result.hits)
    # Stemming: "drinking" finds "drinks"; scores are positive and ordered.
    hits = mem_on.search("drinking", mode="keyword")
    assert len(hits) == 2 and hits[0].score >= hits[1].score > 0
    assert mem_on.search("zeppelin", mode="keyword") == []
    with pytest.raises(InvalidInputError):
        mem_on.search("  ")


def test_ttl_expiry_access_extension_and_promotion(mem_on: Memory, clock) -> None:
    short = mem_on.add("short lived", tier="short")
    mid = mem_on.add("middle aged fact", tier="mid")
    assert short.expires_at == clock.now + timedelta(hours=6)
    clock.advance(hours=5)
    mem_on.recall("short lived")  # an access pushes the short TTL out again
    clock.advance(hours=5)
    assert mem_on.get(short.id).access_count == 1
    clock.advance(hours=2)
    with pytest.raises(NotFoundError):
        mem_on.get(short.id)
    assert short.id not in [m.id for m in mem_on.get_all()]
    for _ in range(5):
        mem_on.recall("middle aged")
    promoted = mem_on.get(mid.id)
    assert promoted.tier.value == "long" and promoted.expires_at is None
    assert [e.event.value for e in mem_on.history(mid.id)][-1] == "promote"


def test_gc_archives_expired_and_purges_old_tombstones(mem_on: Memory, clock) -> None:
    gone = mem_on.add("ephemeral", tier="short")
    kept = mem_on.add("keeper", tier="long")
    deleted = mem_on.add("to delete")
    mem_on.delete(deleted.id)
    clock.advance(hours=7)
    report = mem_on.gc()
    assert (report.archived, report.tombstones_purged) == (1, 0)
    store = mem_on.service.store
    assert store.get(gone.id) is None and store.get(kept.id) is not None
    assert [a.memory.id for a in store.archived(_all(clock), 10)] == [gone.id]
    assert mem_on.history(gone.id)[-1].event.value == "archive"
    clock.advance(days=31)
    assert mem_on.gc().tombstones_purged == 1
    assert store.tombstones_since(0) == []


def test_stats_shape(mem_on: Memory, clock) -> None:
    mem_on.add("a", namespace="x", tier="long")
    mem_on.add("b", namespace="x/y")
    mem_on.add("c", namespace="x/y", tier="short")
    stats = mem_on.stats()
    assert stats.total == 3
    assert {(t.tier.value, t.count) for t in stats.by_tier} == {("long", 1), ("mid", 1), ("short", 1)}
    assert [(n.namespace, n.count) for n in stats.by_namespace] == [("x/y", 2), ("x", 1)]
    assert stats.expiring_soon == 1 and stats.db_size_bytes > 0


def test_change_counter_and_vector_changes_follow_writes(mem_on: Memory) -> None:
    store = mem_on.service.store
    start = store.change_counter()
    m = mem_on.add("counted")
    assert store.change_counter() > start
    with store.write() as tx:
        seq = tx.next_seq()
        tx.put_vector(m.id, "test-model", [1.0, 0.0, 0.0], seq)  # type: ignore[arg-type]
    changes = store.vector_changes(start)
    assert [(r.memory_id, r.model, r.vector.tolist()) for r in changes.upserts] == [(m.id, "test-model", [1.0, 0.0, 0.0])]
    assert store.vector_models() == {"test-model": 1}
    assert store.ids_missing_vectors("test-model") == []
    mem_on.delete(m.id)
    later = store.vector_changes(changes.seq)
    assert later.removed == [m.id] and later.upserts == []


def test_vector_recall_with_the_default_embedder(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(backend_url, embeddings={"provider": "minilm"})
    tea = mem.add("Alice loves drinking hot green tea")
    mem.add("The car needs new tyres before winter")
    mem.add("Quarterly revenue grew by twelve percent")
    hits = mem.recall("which beverage does Alice like?", mode="vector", top_k=3).hits
    assert [h.memory.id for h in hits] == [tea.id]  # the unrelated two are below the relevance floor
    assert mem.service.store.vector_models() == {mem.service.embedder.model_id: 3}


def _all(clock) -> object:
    from memmesh.store.base import Filter

    return Filter(now=clock.now)


def test_time_filters_are_timezone_exact(mem_on: Memory, clock) -> None:
    m = mem_on.add("at noon")
    just_before = (m.created_at - timedelta(microseconds=1)).isoformat()
    assert [x.id for x in mem_on.get_all(since=just_before)] == [m.id]
    assert mem_on.get_all(since=(m.created_at + timedelta(microseconds=1)).isoformat()) == []
