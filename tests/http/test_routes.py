"""Every route, through the Python Client and through raw HTTP, against a real server."""

from __future__ import annotations

import asyncio

import pytest

from memmesh import AsyncClient, ConflictError, InvalidInputError, NotFoundError
from memmesh.model import Memory, Page, RecallResult, Stats, Tombstone


def test_store_get_update_history_delete_through_client(server):
    m = server.client()
    stored = m.add("Alice prefers green tea", namespace="people/alice", tags=["Drinks"], priority=7)
    assert isinstance(stored, Memory)
    assert stored.namespace == "people/alice" and stored.tags == ["drinks"] and stored.priority == 7

    fetched = m.get(stored.id)
    assert fetched.content == "Alice prefers green tea"

    changed = m.update(stored.id, content="Alice prefers black tea", priority=9)
    assert changed.content == "Alice prefers black tea" and changed.priority == 9
    assert m.get(stored.id).priority == 9

    events = [entry.event.value for entry in m.history(stored.id)]
    assert events == ["add", "update"]

    tombstone = m.delete(stored.id)
    assert isinstance(tombstone, Tombstone) and tombstone.id == stored.id
    with pytest.raises(NotFoundError):
        m.get(stored.id)
    assert [e.event.value for e in m.history(stored.id)] == ["add", "update", "delete"]


def test_client_id_makes_retries_idempotent(server):
    m = server.client()
    first = m.add("Deploys happen on Tuesdays", namespace="team/ops", id="client-chosen-1")
    again = m.add("Deploys happen on Tuesdays", namespace="team/ops", id="client-chosen-1")
    assert first.id == again.id == "client-chosen-1"
    assert m.stats().total == 1
    with pytest.raises(ConflictError):
        m.add("Something else entirely", namespace="team/ops", id="client-chosen-1")


def test_client_generates_an_id_when_none_is_given(server):
    m = server.client()
    a = m.add("first fact")
    b = m.add("second fact")
    assert a.id != b.id and len(a.id) == 36


def test_list_paginates_with_cursor_and_filters(server):
    m = server.client()
    for i in range(7):
        m.add(f"note number {i}", namespace="team/a" if i % 2 else "team/b", tags=["odd" if i % 2 else "even"])
    seen, cursor = [], None
    while True:
        page = m.list(limit=3, cursor=cursor)
        assert isinstance(page, Page) and len(page.items) <= 3
        seen += [item.content for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"note number {i}" for i in range(7))
    assert seen == [f"note number {i}" for i in reversed(range(7))]  # newest first
    assert {x.namespace for x in m.get_all(namespace="team/a")} == {"team/a"}
    assert len(m.get_all(tags=["odd"])) == 3
    assert len(m.get_all(namespace="team")) == 7


def test_recall_counts_access_but_search_does_not(server):
    m = server.client()
    stored = m.add("The staging database runs PostgreSQL 16", namespace="infra")
    m.add("Lunch is at noon", namespace="office")

    result = m.recall("postgresql staging", explain=True, top_k=5)
    assert isinstance(result, RecallResult)
    assert result.hits[0].memory.id == stored.id and result.hits[0].explain
    assert m.get(stored.id).access_count == 1

    http = server.http()
    response = http.get("/api/v1/search", params={"q": "postgresql", "namespace": "infra"})
    assert response.status_code == 200
    assert [h["memory"]["id"] for h in response.json()["hits"]] == [stored.id]
    assert m.get(stored.id).access_count == 1  # search only inspects

    assert m.search("lunch", namespace="office")[0].memory.content == "Lunch is at noon"
    assert m.recall("postgresql", namespace="office").hits == []


def test_links_both_ways(server):
    m = server.client()
    old = m.add("The API lives at v1")
    new = m.add("The API moved to v2")
    link = m.link(new.id, old.id, "supersedes")
    assert link.relation.value == "supersedes"
    assert [(x.source_id, x.target_id) for x in m.links(old.id)] == [(new.id, old.id)]
    with pytest.raises(InvalidInputError):
        m.link(new.id, old.id, "befriends")
    with pytest.raises(NotFoundError):
        m.link(new.id, "no-such-id")


def test_batch_is_all_or_nothing(server):
    m = server.client()
    stored = m.add_many(["one", {"content": "two", "namespace": "x/y"}])
    assert [s.content for s in stored] == ["one", "two"]
    with pytest.raises(InvalidInputError):
        m.add_many(["three", {"content": "four", "namespace": "bad namespace!"}])
    assert m.stats().total == 2


def test_delete_all_needs_a_filter(server):
    m = server.client()
    for i in range(3):
        m.add(f"scratch {i}", namespace="scratch")
    m.add("keep me", namespace="keep")
    with pytest.raises(InvalidInputError):
        m.delete_all()
    assert m.delete_all(namespace="scratch") == 3
    assert [x.content for x in m.get_all()] == ["keep me"]


def test_stats_namespaces_and_raw_shapes(server):
    m = server.client()
    m.add("a", namespace="one")
    m.add("b", namespace="one/sub")
    m.add("c", namespace="two", tier="long")
    stats = m.stats()
    assert isinstance(stats, Stats) and stats.total == 3
    http = server.http()
    body = http.get("/api/v1/stats").json()
    assert set(body) == {"total", "by_tier", "by_namespace", "expiring_soon", "links_count", "db_size_bytes"}
    assert {"tier": "long", "count": 1} in body["by_tier"]
    namespaces = http.get("/api/v1/namespaces").json()
    assert {n["namespace"]: n["count"] for n in namespaces} == {"one": 1, "one/sub": 1, "two": 1}


def test_raw_http_status_codes_and_bodies(server):
    http = server.http()
    created = http.post("/api/v1/memories", json={"content": "raw write", "namespace": "raw"})
    assert created.status_code == 201
    memory_id = created.json()["id"]
    assert http.get(f"/api/v1/memories/{memory_id}").json()["content"] == "raw write"
    patched = http.patch(f"/api/v1/memories/{memory_id}", json={"tags": ["A", "b"]})
    assert patched.status_code == 200 and patched.json()["tags"] == ["a", "b"]
    batch = http.post("/api/v1/memories/batch", json={"items": [{"content": "b1"}, {"content": "b2"}]})
    assert batch.status_code == 201 and len(batch.json()) == 2
    link = http.post("/api/v1/links", json={"source_id": memory_id, "target_id": batch.json()[0]["id"]})
    assert link.status_code == 201 and link.json()["relation"] == "related_to"
    assert len(http.get(f"/api/v1/memories/{memory_id}/links").json()) == 1
    assert len(http.get(f"/api/v1/memories/{memory_id}/history").json()) == 2
    recall = http.post("/api/v1/recall", json={"query": "raw", "filters": {"namespace": "raw"}, "top_k": 3})
    assert recall.status_code == 200 and recall.json()["hits"][0]["memory"]["id"] == memory_id
    deleted = http.delete(f"/api/v1/memories/{memory_id}")
    assert deleted.status_code == 200 and deleted.json()["id"] == memory_id
    gone = http.get(f"/api/v1/memories/{memory_id}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    removed = http.delete("/api/v1/memories", params={"everything": "true"})
    assert removed.json() == {"deleted": 2}


def test_health_ready_metrics_and_request_ids(server):
    http = server.http()
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz").json()
    assert ready["status"] == "ok" and ready["schema_version"] >= 3
    echoed = http.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    generated = http.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert generated != "bad id with spaces" and len(generated) == 32
    http.post("/api/v1/memories", json={"content": "counted"})
    http.get("/api/v1/memories/nope")
    http.post("/api/v1/recall", json={"query": "counted"})
    http.get("/ui/login")
    text = http.get("/metrics").text
    assert 'memmesh_http_requests_total{method="POST",route="/api/v1/memories",status="201"} 1.0' in text
    assert 'memmesh_http_requests_total{method="GET",route="/ui/login",status="200"} 1.0' in text  # a page under its mount
    assert 'route="/api/v1/memories/{memory_id}",status="404"' in text
    assert "memmesh_http_request_duration_seconds_bucket" in text
    assert 'memmesh_recall_duration_seconds_count{mode="keyword"} 1.0' in text
    assert "memmesh_store_memories 1.0" in text


def test_openapi_documents_routes_examples_and_error_schema(server):
    doc = server.http().get("/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/api/v1/memories",
        "/api/v1/memories/{memory_id}",
        "/api/v1/memories/{memory_id}/history",
        "/api/v1/memories/{memory_id}/links",
        "/api/v1/recall",
        "/api/v1/search",
        "/api/v1/links",
        "/api/v1/stats",
        "/api/v1/namespaces",
        "/api/v1/agents",
        "/api/v1/keys",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    post = paths["/api/v1/memories"]["post"]
    assert "examples" in post["requestBody"]["content"]["application/json"]
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "ErrorBody" in doc["components"]["schemas"]


def test_async_client_has_the_same_methods(server):
    async def scenario() -> None:
        async with AsyncClient(server.url) as m:
            stored = await m.add("async fact", namespace="async")
            assert (await m.get(stored.id)).content == "async fact"
            assert (await m.update(stored.id, priority=2)).priority == 2
            assert [h.memory.id for h in await m.search("async")] == [stored.id]
            assert (await m.list(namespace="async")).items[0].id == stored.id
            assert (await m.stats()).total == 1
            await m.delete(stored.id)
            with pytest.raises(NotFoundError):
                await m.get(stored.id)

    asyncio.run(scenario())


def test_client_and_memory_expose_the_same_api():
    import inspect

    from memmesh import AsyncClient, Client, Memory

    for name in (
        "add",
        "add_many",
        "search",
        "recall",
        "get",
        "get_all",
        "list",
        "update",
        "delete",
        "delete_all",
        "history",
        "link",
        "links",
        "stats",
    ):
        expected = inspect.signature(getattr(Memory, name))
        assert inspect.signature(getattr(Client, name)).parameters.keys() == expected.parameters.keys(), name
        assert inspect.signature(getattr(AsyncClient, name)).parameters.keys() == expected.parameters.keys(), name
