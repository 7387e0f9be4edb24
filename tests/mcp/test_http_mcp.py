"""MCP over streamable HTTP at ``/mcp`` of the real HTTP app, on a real uvicorn server,
with the real ``mcp`` client: same auth and namespace scopes as the REST API."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from tests.mcp.conftest import reply

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.interfaces.http.app import create_app
from memmesh.model import LOCAL_PRINCIPAL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Memory]]:
    """create_app over a keyword-only store, served by uvicorn on a random loopback port
    (``indirect`` parameters: more settings sections, e.g. ``{"mcp": {"profile": "power"}}``)."""
    more = getattr(request, "param", {})
    settings = load_settings(
        None,
        overrides={
            "data_dir": str(tmp_path),
            "embeddings": {"provider": "none"},
            "storage": {"url": f"sqlite:///{tmp_path / 'http.db'}"},
            **more,
        },
        env={"MEMMESH_CONFIG": ""},
    )
    mem = Memory(config=settings)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(mem.service, settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp", mem
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        mem.close()


@asynccontextmanager
async def session(url: str, key: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (r, w),
        ClientSession(r, w) as s,
    ):
        await s.initialize()
        yield s


def _data(result: object) -> object:
    return json.loads(result.content[0].text)  # type: ignore[attr-defined]


def test_mcp_over_http_open_server(served: tuple[str, Memory]) -> None:
    url, mem = served

    async def scenario() -> str:
        async with session(url) as s:
            names = [t.name for t in (await s.list_tools()).tools]
            assert "memory_store" in names and "memory_capabilities" in names
            stored = _data(await s.call_tool("memory_store", {"content": "served over HTTP", "namespace": "web"}))
            recalled = _data(await s.call_tool("memory_recall", {"query": "served", "namespace": "web"}))
            assert [h["id"] for h in recalled["hits"]] == [stored["id"]]
            bad = await s.call_tool("memory_get", {"id": "missing"})
            assert bad.is_error and bad.content[0].text == "error: no memory with id missing"
            return stored["id"]

    memory_id = asyncio.run(scenario())
    assert mem.get(memory_id).content == "served over HTTP"


def test_mcp_over_http_uses_api_keys_and_scopes(served: tuple[str, Memory]) -> None:
    url, mem = served
    private = mem.add("salary data", namespace="hr")
    key = mem.service.create_key("web-agent", role="writer", namespaces=["team"], principal=LOCAL_PRINCIPAL).key

    refused = httpx.post(
        url,
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    wrong = httpx.post(url, json={}, headers={"Authorization": "Bearer mm_000000000000_nope"})
    assert wrong.status_code == 401

    async def scenario() -> str:
        async with session(url, key) as s:
            stored = _data(await s.call_tool("memory_store", {"content": "team note", "namespace": "team/web"}))
            outside = await s.call_tool("memory_store", {"content": "not mine", "namespace": "hr"})
            assert outside.is_error and outside.structured_content["error"]["code"] == "forbidden"
            hidden = await s.call_tool("memory_get", {"id": private.id})
            assert hidden.is_error and "no memory with id" in hidden.content[0].text
            return stored["id"]

    memory_id = asyncio.run(scenario())
    assert mem.get(memory_id).agent_id == "web-agent"
    assert [m.content for m in mem.get_all(namespace="hr")] == ["salary data"]


@pytest.mark.parametrize("served", [{"mcp": {"profile": "power"}}], indirect=True)
def test_mcp_inbox_shows_a_key_only_the_notes_it_may_read(served: tuple[str, Memory]) -> None:
    # probe18: memory_inbox showed every note for the key's agent name, whatever namespace it
    # was about, and a namespace-scoped key's memory_notify left notes without namespace.
    url, mem = served
    mem.notify("deploy-bot", "about b", namespace="b")
    mem.notify("deploy-bot", "about a", namespace="a/x")
    key = mem.service.create_key("deploy-bot", role="writer", namespaces=["a"], principal=LOCAL_PRINCIPAL).key

    async def scenario() -> None:
        async with session(url, key) as s:
            seen = reply(await s.call_tool("memory_inbox", {}))
            assert not seen.is_error and [m["body"] for m in seen.data] == ["about a"], seen.text
            sent = reply(await s.call_tool("memory_notify", {"to": "reviewer", "body": "done"}))
            assert not sent.is_error and sent.data["namespace"] == "a", sent.text

    asyncio.run(scenario())
    assert [m.body for m in mem.inbox("deploy-bot")] == ["about b"]  # left unread for a key that may read b
