"""The embedded Python API: CRUD, de-dup, ids, titles, history, links, filters, pages, TTL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.conftest import FakeClock, keyword_settings

from memmesh import AsyncMemory, ConflictError, ContentTooLargeError, InvalidInputError, Memory, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL


def test_add_get_update_delete_round_trip(mem: Memory) -> None:
    added = mem.add(
        "Alice prefers green tea",
        namespace="people/alice",
        tags=["Drinks", "drinks", " morning "],
        priority=7,
        metadata={"source_url": "chat://1"},
        agent_id="agent-a",
    )
    assert added.tags == ["drinks", "morning"]
    assert added.tier.value == "mid" and added.kind.value == "fact"
    fetched = mem.get(added.id)
    assert fetched.content == "Alice prefers green tea"
    assert fetched.metadata == {"source_url": "chat://1"}
    assert fetched.agent_id == "agent-a" and fetched.priority == 7

    updated = mem.update(added.id, content="Alice prefers black tea", priority=9)
    assert updated.content == "Alice prefers black tea" and updated.priority == 9
    assert updated.version.clock[updated.version.node] == 2
    assert mem.get(added.id).content == "Alice prefers black tea"

    tombstone = mem.delete(added.id)
    assert tombstone.id == added.id
    with pytest.raises(NotFoundError):
        mem.get(added.id)
    events = [entry.event.value for entry in mem.history(added.id)]
    assert events == ["add", "update", "delete"]
    update_entry = mem.history(added.id)[1]
    assert update_entry.old == {"content": "Alice prefers green tea", "priority": 7}
    assert update_entry.new == {"content": "Alice prefers black tea", "priority": 9}


def test_identical_content_in_a_namespace_is_stored_once(mem: Memory) -> None:
    first = mem.add("the build uses uv", namespace="eng")
    again = mem.add("the build uses uv", namespace="eng")
    elsewhere = mem.add("the build uses uv", namespace="ops")
    assert again.id == first.id
    assert elsewhere.id != first.id
    assert mem.stats().total == 2


def test_client_supplied_id_is_idempotent_and_never_overwrites(mem: Memory) -> None:
    one = mem.add("retry me", id="client-1")
    two = mem.add("retry me", id="client-1")
    assert one.id == two.id == "client-1"
    with pytest.raises(ConflictError):
        mem.add("different content", id="client-1")
    assert mem.get("client-1").content == "retry me"
    assert mem.stats().total == 1


def test_title_conflicts_follow_on_conflict(mem: Memory) -> None:
    original = mem.add("v1 of the runbook", namespace="ops", title="runbook")
    with pytest.raises(ConflictError) as info:
        mem.add("v2 of the runbook", namespace="ops", title="runbook")
    assert info.value.details["existing_id"] == original.id
    updated = mem.add("v2 of the runbook", namespace="ops", title="runbook", on_conflict="update")
    assert updated.id == original.id and updated.content == "v2 of the runbook"
    versioned = mem.add("v3 of the runbook", namespace="ops", title="runbook", on_conflict="version")
    assert versioned.id != original.id
    links = mem.links(versioned.id)
    assert [(link.source_id, link.target_id, link.relation.value) for link in links] == [(versioned.id, original.id, "supersedes")]


def test_links_are_typed_and_validated(mem: Memory) -> None:
    a = mem.add("Project Falcon launched in March")
    b = mem.add("Project Falcon was delayed to April")
    link = mem.link(b.id, a.id, "contradicts")
    assert link.relation.value == "contradicts"
    assert [lk.relation.value for lk in mem.links(a.id)] == ["contradicts"]
    with pytest.raises(InvalidInputError, match="unknown relation"):
        mem.link(a.id, b.id, "likes")
    with pytest.raises(NotFoundError):
        mem.link(a.id, "missing-id")
    with pytest.raises(InvalidInputError):
        mem.link(a.id, a.id)
    mem.delete(a.id)
    assert mem.stats().links_count == 0


def test_filters(mem: Memory, clock: FakeClock) -> None:
    mem.add("legal contract for acme", namespace="org/legal/contracts", tags=["acme", "contract"], kind="fact")
    clock.advance(hours=1)
    mem.add("legal memo about acme", namespace="org/legal", tags=["acme"], kind="episode", agent_id="lawyer")
    clock.advance(hours=1)
    mem.add("sales note about acme", namespace="org/sales", tags=["acme"], tier="long")
    mem.add("unrelated acme thing", namespace="orgx", tags=["acme"])

    def contents(**filters: object) -> set[str]:
        return {m.content for m in mem.get_all(**filters)}

    assert contents(namespace="org/legal") == {"legal contract for acme", "legal memo about acme"}
    assert contents(namespace="org") == {"legal contract for acme", "legal memo about acme", "sales note about acme"}
    assert contents(tags=["acme", "contract"]) == {"legal contract for acme"}
    assert contents(kind="episode") == {"legal memo about acme"}
    assert contents(tier="long") == {"sales note about acme"}
    assert contents(agent_id="lawyer") == {"legal memo about acme"}
    start = clock.now.replace(hour=12)
    assert contents(since=start.replace(hour=13).isoformat(), until=start.replace(hour=14).isoformat()) == {"legal memo about acme"}
    hits = mem.search("acme", namespace="org/legal", mode="keyword")
    assert {h.memory.namespace for h in hits} == {"org/legal", "org/legal/contracts"}
    with pytest.raises(InvalidInputError, match="unknown tier"):
        mem.get_all(tier="forever")
    with pytest.raises(InvalidInputError, match="not a date"):
        mem.get_all(since="yesterday")


def test_as_of_returns_what_held_at_a_world_time(mem: Memory) -> None:
    mem.add("Sam works at Initech", valid_from="2020-01-01T00:00:00Z", valid_to="2023-06-01T00:00:00Z")
    mem.add("Sam works at Globex", valid_from="2023-06-01T00:00:00Z")
    then = mem.search("where does Sam work", as_of="2021-05-01T00:00:00Z", mode="keyword")
    now = mem.search("where does Sam work", as_of="2024-05-01T00:00:00Z", mode="keyword")
    assert [h.memory.content for h in then] == ["Sam works at Initech"]
    assert [h.memory.content for h in now] == ["Sam works at Globex"]
    with pytest.raises(InvalidInputError, match="valid_to must be later"):
        mem.add("bad interval", valid_from="2024-01-01T00:00:00Z", valid_to="2023-01-01T00:00:00Z")


def test_cursor_pagination_visits_every_memory_once(mem: Memory, clock: FakeClock) -> None:
    ids = set()
    for i in range(23):
        ids.add(mem.add(f"note number {i}").id)
        if i % 5 == 0:
            clock.advance(seconds=1)
    seen: list[str] = []
    cursor = None
    while True:
        page = mem.list(limit=7, cursor=cursor)
        seen += [m.id for m in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 23 and set(seen) == ids
    with pytest.raises(InvalidInputError, match="invalid cursor"):
        mem.list(cursor="not-a-cursor")
    with pytest.raises(InvalidInputError, match="limit must be between"):
        mem.list(limit=0)


def test_ttl_expiry_gc_archive_and_tombstone_retention(mem: Memory, clock: FakeClock) -> None:
    short = mem.add("short lived scratch note", tier="short")
    mid = mem.add("mid tier note")
    long = mem.add("long tier note", tier="long")
    custom = mem.add("custom ttl note", ttl_seconds=60)
    assert long.expires_at is None
    assert (short.expires_at - short.created_at).total_seconds() == 6 * 3600
    assert (mid.expires_at - mid.created_at).total_seconds() == 7 * 86400
    clock.advance(minutes=2)
    with pytest.raises(NotFoundError):
        mem.get(custom.id)
    clock.advance(hours=6)
    assert {m.id for m in mem.get_all()} == {mid.id, long.id}
    assert mem.search("scratch", mode="keyword") == []
    report = mem.gc()
    assert report.archived == 2
    assert mem.history(short.id)[-1].event.value == "archive"

    deleted = mem.add("to be deleted")
    mem.delete(deleted.id)
    assert mem.gc().tombstones_purged == 0
    clock.advance(days=31)
    assert mem.gc().tombstones_purged == 1


def test_recall_extends_ttl_and_promotes_after_five_accesses(mem: Memory, clock: FakeClock) -> None:
    note = mem.add("the staging database password rotates monthly")
    for _ in range(4):
        clock.advance(days=1)
        mem.recall("staging database password", mode="keyword")
    current = mem.get(note.id)
    assert current.access_count == 4 and current.tier.value == "mid"
    assert (current.expires_at - clock.now).total_seconds() == pytest.approx(7 * 86400)
    mem.recall("staging database password", mode="keyword")
    promoted = mem.get(note.id)
    assert promoted.tier.value == "long" and promoted.expires_at is None
    assert mem.history(note.id)[-1].event.value == "promote"
    untouched = mem.search("staging database password")  # search inspects, never touches
    assert untouched[0].memory.access_count == 5 and mem.get(note.id).access_count == 5


def test_bad_input_is_refused_and_nothing_is_stored(mem: Memory) -> None:
    cases = [
        ({"content": ""}, "content is empty"),
        ({"content": "   \n"}, "content is empty"),
        ({"content": "x" * 65_537}, "limit is 65536"),
        ({"content": "ok", "tier": "forever"}, "tier"),
        ({"content": "ok", "namespace": "bad//ns"}, "namespace 'bad//ns' is invalid"),
        ({"content": "ok", "namespace": "a/b/c/d/e/f/g/h/i"}, "limit is 8"),
        ({"content": "ok", "tags": [f"t{i}" for i in range(33)]}, "limit is 32"),
        ({"content": "ok", "tags": ["x" * 65]}, "limit is 64"),
        ({"content": "ok", "metadata": "not an object"}, "metadata"),
        ({"content": "ok", "metadata": {"blob": "x" * 17_000}}, "16384"),
        ({"content": "ok", "priority": 11}, "priority"),
        ({"content": "ok", "confidence": 1.5}, "confidence"),
        ({"content": "ok", "kind": "rumour"}, "kind"),
        ({"content": "ok", "colour": "blue"}, "unknown field"),
    ]
    for fields, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            mem.service.add(fields, principal=LOCAL_PRINCIPAL)
    with pytest.raises(ContentTooLargeError):
        mem.add("x" * 70_000)
    with pytest.raises(InvalidInputError):
        mem.add_many([{"content": "good one"}, {"content": ""}])
    with pytest.raises(NotFoundError):
        mem.update("no-such-id", content="x")
    with pytest.raises(NotFoundError):
        mem.delete("no-such-id")
    with pytest.raises(InvalidInputError, match="query is empty"):
        mem.search("  ")
    with pytest.raises(InvalidInputError, match="top_k"):
        mem.search("x", top_k=0)
    with pytest.raises(InvalidInputError, match="top_k"):
        mem.search("x", top_k=100_000)
    assert mem.stats().total == 0


def test_add_many_is_all_or_nothing_on_conflict(mem: Memory) -> None:
    mem.add("first", title="t")
    with pytest.raises(ConflictError):
        mem.add_many([{"content": "new one"}, {"content": "second", "title": "t"}])
    assert [m.content for m in mem.get_all()] == ["first"]
    stored = mem.add_many(["a", "b", {"content": "c", "tags": ["x"]}])
    assert [m.content for m in stored] == ["a", "b", "c"]


def test_stats_shape(mem: Memory, clock: FakeClock) -> None:
    mem.add("one", namespace="a", tier="short")
    mem.add("two", namespace="a")
    mem.add("three", namespace="b", tier="long")
    stats = mem.stats().model_dump(mode="json")
    assert set(stats) == {"total", "by_tier", "by_namespace", "expiring_soon", "links_count", "db_size_bytes"}
    assert stats["total"] == 3
    assert {(t["tier"], t["count"]) for t in stats["by_tier"]} == {("short", 1), ("mid", 1), ("long", 1)}
    assert stats["by_namespace"][0] == {"namespace": "a", "count": 2}
    assert stats["expiring_soon"] == 1
    assert stats["db_size_bytes"] > 0


def test_delete_all_needs_a_filter(mem: Memory) -> None:
    mem.add_many([{"content": f"n{i}", "namespace": "tmp"} for i in range(5)] + [{"content": "keep", "namespace": "keep"}])
    with pytest.raises(InvalidInputError, match="needs a namespace"):
        mem.delete_all()
    assert mem.delete_all(namespace="tmp") == 5
    assert [m.content for m in mem.get_all()] == ["keep"]


def test_async_memory_has_the_same_methods(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AsyncMemory(f"sqlite:///{tmp_path / 'a.db'}", keyword_settings(tmp_path)) as amem:
            added = await amem.add("async memories work", namespace="async")
            hits = await amem.search("async memories", mode="keyword")
            assert hits[0].memory.id == added.id
            assert (await amem.get(added.id)).content == "async memories work"
            assert (await amem.stats()).total == 1

    asyncio.run(scenario())
