"""The causality token on every face (issue 24): in the header or in a JSON body on the REST
API, and on ``/mcp`` a token the node does not cover is an MCP tool error (``not_yet``), not
an HTTP 409 the MCP client could only report as a broken transport. One real node."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from tests.federation.mesh_support import Node, mesh

from memmesh.federation.session import CAUSALITY_HEADER, parse_token

AHEAD = "node-a:999999"
"""A change number of node-a's own feed it never reached: refused at once, no wait."""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    (only,) = mesh(tmp_path, 1)
    try:
        yield only
    finally:
        only.stop()


def contents(node: Node) -> set[str]:
    return {m["content"] for m in node.memories()}


def test_the_token_in_a_json_body_counts_like_the_header(node: Node) -> None:
    made = node.call("POST", "/api/v1/memories", json={"content": "first", "namespace": "ops"})
    assert made.status_code == 201
    token = made.headers[CAUSALITY_HEADER]

    # a covered token in the body: taken out before the route reads the body (whose model
    # refuses unknown fields), and the answer carries the node's token as usual
    covered = node.call("POST", "/api/v1/memories", json={"content": "second", "namespace": "ops", "causality": token})
    assert covered.status_code == 201, covered.text
    assert covered.json()["content"] == "second"
    assert parse_token(covered.headers[CAUSALITY_HEADER])["node-a"] > parse_token(token)["node-a"]

    # a token the node does not cover, in the body: not_yet, nothing written
    refused = node.call("POST", "/api/v1/memories", json={"content": "third", "namespace": "ops", "causality": AHEAD})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "not_yet"
    assert refused.json()["error"]["details"]["missing"] == {"node-a": 999999}
    patch = node.call("PATCH", f"/api/v1/memories/{made.json()['id']}", json={"content": "changed", "causality": AHEAD})
    assert patch.status_code == 409
    # the header and the body merge: the body's entry alone is enough to refuse
    both = node.call(
        "POST", "/api/v1/memories", json={"content": "fourth", "namespace": "ops", "causality": AHEAD}, headers={CAUSALITY_HEADER: token}
    )
    assert both.status_code == 409

    # bad input: a malformed token, or not a string
    bad = node.call("POST", "/api/v1/memories", json={"content": "fifth", "namespace": "ops", "causality": "node-a=3"})
    assert bad.status_code == 422 and "node-id:change-number" in bad.json()["error"]["message"]
    wrong_type = node.call("POST", "/api/v1/memories", json={"content": "sixth", "namespace": "ops", "causality": 12})
    assert wrong_type.status_code == 422 and '"causality"' in wrong_type.json()["error"]["message"]
    # a body that merely mentions the word inside a value is passed on as it was
    mention = node.call("POST", "/api/v1/memories", json={"content": 'the "causality" of it', "namespace": "ops"})
    assert mention.status_code == 201 and mention.json()["content"] == 'the "causality" of it'

    assert contents(node) == {"first", "second", 'the "causality" of it'}


@asynccontextmanager
async def mcp_session(url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url + "/mcp", http_client=http) as (r, w),
        ClientSession(r, w) as s,
    ):
        await s.initialize()
        yield s


def test_on_mcp_a_token_not_covered_is_a_tool_error(node: Node) -> None:
    made = node.call("POST", "/api/v1/memories", json={"content": "seen by the session", "namespace": "ops"})
    token = made.headers[CAUSALITY_HEADER]

    async def refused() -> None:
        async with mcp_session(node.url, {CAUSALITY_HEADER: AHEAD}) as s:
            names = [t.name for t in (await s.list_tools()).tools]  # the session itself works
            assert "memory_store" in names
            result = await s.call_tool("memory_store", {"content": "must not be written", "namespace": "ops"})
            assert result.is_error
            assert result.content[0].text.startswith("error: node node-a has not yet received the changes this session has seen")
            assert result.structured_content["error"]["code"] == "not_yet"
            assert result.structured_content["error"]["details"]["missing"] == {"node-a": 999999}
            read = await s.call_tool("memory_get", {"id": made.json()["id"]})
            assert read.is_error and read.structured_content["error"]["code"] == "not_yet"

    async def malformed() -> None:
        async with mcp_session(node.url, {CAUSALITY_HEADER: "node-a=3"}) as s:
            result = await s.call_tool("memory_get", {"id": made.json()["id"]})
            assert result.is_error and result.structured_content["error"]["code"] == "invalid_input"
            assert "node-id:change-number" in result.content[0].text

    async def covered() -> None:
        async with mcp_session(node.url, {CAUSALITY_HEADER: token}) as s:
            result = await s.call_tool("memory_get", {"id": made.json()["id"]})
            assert not result.is_error
            assert json.loads(result.content[0].text)["content"] == "seen by the session"

    asyncio.run(refused())
    asyncio.run(malformed())
    asyncio.run(covered())
    assert contents(node) == {"seen by the session"}
