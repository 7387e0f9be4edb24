"""Import under an API key's scope over HTTP (``POST /api/v1/import``) and MCP (``memory_import``
over ``/mcp``), tested as an attacker: a key scoped elsewhere, a reader, a revoked key, a file
that reaches into another namespace, a path the server should never open. Real uvicorn, real
``mcp`` client; what the store holds afterwards is read back through the service.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from memmesh.model import LOCAL_PRINCIPAL

MEM0 = json.dumps(
    {
        "results": [
            {"id": "a1", "memory": "Alice drinks green tea", "user_id": "alice"},
            {"id": "a2", "memory": "Alice lives in Lyon", "user_id": "alice"},
            {"id": "b1", "memory": "Bob plays the cello", "user_id": "bob"},
            {"id": "b2", "memory": "Bob has a cat named Miso", "user_id": "bob"},
            {"id": "c1", "memory": "Carol runs marathons", "user_id": "carol"},
        ]
    }
)


def _namespaces(running) -> dict[str, int]:
    return {n.namespace: n.count for n in running.service.namespaces(principal=LOCAL_PRINCIPAL)}


def _key(running, role: str, *namespaces: str):
    agent = f"{role}-{len(running.service.keys(include_revoked=True, principal=LOCAL_PRINCIPAL))}"
    return running.service.create_key(agent, role=role, namespaces=list(namespaces), principal=LOCAL_PRINCIPAL)


def test_a_scoped_writer_imports_its_namespace_and_each_other_record_is_rejected_with_counts(server) -> None:
    _key(server, "admin", "*")  # keys exist: the server requires them
    alice = _key(server, "writer", "mem0/alice")
    response = server.http(alice.key).post("/api/v1/import", json={"format": "mem0", "content": MEM0})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["totals"]["migrated"] == 2 and report["totals"]["failed"] == 3
    outside = [f for f in report["failures"] if "outside this key's namespaces (mem0/alice)" in f["reason"]]
    assert {f["id"] for f in outside} == {f["id"] for f in report["failures"]} and len(outside) == 3
    assert _namespaces(server) == {"mem0/alice": 2}
    assert alice.key not in response.text
    again = server.http(alice.key).post("/api/v1/import", json={"format": "mem0", "content": MEM0}).json()
    assert again["totals"]["migrated"] == 0 and again["totals"]["skipped"] == 2  # idempotent


def test_refused_keys_write_nothing(server) -> None:
    root = _key(server, "admin", "*")
    elsewhere = _key(server, "writer", "team/other")
    reader = _key(server, "reader", "*")
    revoked = _key(server, "writer", "*")
    server.service.revoke_key(revoked.id, principal=LOCAL_PRINCIPAL)
    body = {"format": "mem0", "content": MEM0}
    cases = [
        (elsewhere.key, 403, "cover none of the source's"),
        (reader.key, 403, "role 'reader' may not import"),
        (revoked.key, 401, ""),
        (None, 401, ""),
        (root.key[:-4] + "AAAA", 401, ""),
    ]
    for key, status, message in cases:
        response = server.http(key).post("/api/v1/import", json=body)
        assert response.status_code == status, (key, response.text)
        assert message in response.json()["error"]["message"]
        for secret in (root.key, elsewhere.key, reader.key, revoked.key):
            assert secret not in response.text
    assert _namespaces(server) == {}


def test_hostile_bodies_are_refused_whole_and_write_nothing(server) -> None:
    _key(server, "admin", "*")
    scoped_admin = _key(server, "admin", "team/a")
    writer = _key(server, "writer", "*")
    victim = server.service.add({"content": "team b secret plan", "namespace": "team/b"}, principal=LOCAL_PRINCIPAL)
    planted = victim.model_copy(update={"content": "overwritten by an attacker", "namespace": "team/a"})
    from memmesh.service import content_hash

    planted = planted.model_copy(update={"content_hash": content_hash("team/a", planted.content)})
    takeover = "\n".join(json.dumps({"type": "memory", "memory": m.model_dump(mode="json"), "history": []}) for m in (planted,))
    outside = victim.model_copy(update={"id": "01JZZZZZZZZZZZZZZZZZZZZZZZ"})
    reach = json.dumps({"type": "memory", "memory": outside.model_dump(mode="json"), "history": []})
    cases = [
        (scoped_admin.key, {"format": "jsonl", "content": takeover}, 404),  # an id held in team/b: not-found shaped
        (scoped_admin.key, {"format": "jsonl", "content": reach}, 403),  # a memory in team/b
        (writer.key, {"format": "jsonl", "content": reach}, 403),  # a JSONL restore needs an admin
        (writer.key, {"format": "basic-memory", "content": "/etc"}, 422),  # no file formats over HTTP
        (writer.key, {"format": "mem0", "content": "{not json"}, 422),
        (writer.key, {"format": "mem0", "content": MEM0, "path": "/etc/passwd"}, 422),  # unknown field
        (writer.key, {"format": "mcp-memory", "content": MEM0, "namespace": "../x"}, 422),
    ]
    for key, body, status in cases:
        response = server.http(key).post("/api/v1/import", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["message"]
    assert server.service.get(victim.id, principal=LOCAL_PRINCIPAL).content == "team b secret plan"
    assert _namespaces(server) == {"team/b": 1}


def test_an_import_tells_a_scoped_key_nothing_about_ids_held_in_other_namespaces(server) -> None:
    """An importer's ids come from the source's, and a key could name any of them in a small
    body. They also include the namespace imported into, so an id an older version gave a
    memory of another namespace (``mem0:<id>``), held there live or deleted, is simply not the
    one this import writes: every record is added in the key's namespace, and the report
    neither says that the other id exists nor names its namespace (it used to fail them with
    "no memory with id mem0:h1 is visible to this key", which confirmed they exist)."""
    _key(server, "admin", "*")
    alice = _key(server, "writer", "mem0/alice")
    held = server.service.add({"id": "mem0:h1", "content": "bob's plan", "namespace": "clients/acme"}, principal=LOCAL_PRINCIPAL)
    gone = server.service.add({"id": "mem0:h2", "content": "bob's old plan", "namespace": "clients/acme"}, principal=LOCAL_PRINCIPAL)
    server.service.delete(gone.id, principal=LOCAL_PRINCIPAL)
    body = json.dumps([{"id": i, "memory": f"probe {i}", "user_id": "alice"} for i in ("h1", "h2", "free")])
    for dry_run in (True, False):
        response = server.http(alice.key).post("/api/v1/import", json={"format": "mem0", "content": body, "dry_run": dry_run})
        assert response.status_code == 200, response.text
        report = response.json()
        assert "clients" not in response.text and "acme" not in response.text and "visible" not in response.text
        assert report["failures"] == [] and report["totals"]["added"] == 3 and report["totals"]["skipped"] == 0
    assert server.service.get(held.id, principal=LOCAL_PRINCIPAL).content == "bob's plan"
    assert _namespaces(server) == {"clients/acme": 1, "mem0/alice": 3}


@asynccontextmanager
async def _mcp(url: str, key: str) -> AsyncIterator[ClientSession]:
    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_mcp_import_runs_under_the_key_and_refuses_paths_and_revoked_keys(serve) -> None:
    running = serve(mcp={"profile": "full"})
    _key(running, "admin", "*")
    alice = _key(running, "writer", "mem0/alice")
    elsewhere = _key(running, "writer", "team/other")
    revoked = _key(running, "writer", "*")
    running.service.revoke_key(revoked.id, principal=LOCAL_PRINCIPAL)

    async def call(key: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        async with _mcp(running.url + "/mcp", key) as session:
            result = await session.call_tool("memory_import", arguments)
        return result.is_error, "".join(getattr(block, "text", "") for block in result.content)

    failed, text = asyncio.run(call(alice.key, {"jsonl": MEM0, "format": "mem0"}))
    assert not failed, text
    report = json.loads(text)
    assert report["totals"]["migrated"] == 2 and report["totals"]["failed"] == 3
    failed, text = asyncio.run(call(elsewhere.key, {"jsonl": MEM0, "format": "mem0"}))
    assert failed and "cover none of the source's" in text
    failed, text = asyncio.run(call(alice.key, {"path": "/etc/passwd", "format": "mem0"}))
    assert failed and "file paths are not accepted over this transport" in text
    try:
        asyncio.run(call(revoked.key, {"jsonl": MEM0, "format": "mem0"}))
        refused = False
    except Exception:  # the HTTP layer answers 401 before any session exists
        refused = True
    assert refused
    assert _namespaces(running) == {"mem0/alice": 2}
