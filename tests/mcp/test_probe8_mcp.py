"""What the session-7 probe (probe3) found through MCP over the real stdio server and the real
``mcp`` client: each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import McpEnv


def test_a_recall_or_search_query_longer_than_a_memory_is_a_tool_error_that_names_the_limit(mcp_env: McpEnv) -> None:
    # Before: any length the transport carried was ranked (1 MB: 1-2 s of CPU per call; with a
    # date then a long run of spaces, minutes: recall/dated.py's pattern was quadratic).
    async def scenario() -> None:
        async with mcp_env.client() as client:
            await client.ok("memory_store", content="the May 5 launch went well", namespace="dates")
            for tool in ("memory_recall", "memory_search"):
                refused = await client.call(tool, query="May 5" + " " * 70_000 + "!")
                assert refused.is_error, refused.text
                assert "query is 70006 bytes" in refused.text and "limits.max_content_bytes" in refused.text, refused.text
            found = await client.ok("memory_recall", query="what happened on May 5" + " " * 60_000 + "?")
            assert [h["content"] for h in found["hits"]] == ["the May 5 launch went well"], found

    asyncio.run(scenario())
