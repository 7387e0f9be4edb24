"""What the session-6 probe found through MCP ``memory_store``/``memory_update`` over the
real stdio server and the real ``mcp`` client: each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import McpEnv


def test_a_tag_with_a_line_break_or_bidi_override_is_a_tool_error_and_nothing_is_stored(mcp_env: McpEnv) -> None:
    # Before: memory_store kept ["a\nb", "\u202e"] as tags (namespaces refused the same characters).
    async def scenario() -> None:
        async with mcp_env.client() as client:
            for tag, code in [("a\nb", "U+000A"), ("admin\u202egnp", "U+202E"), ("\x1b[31m", "U+001B")]:
                refused = await client.call("memory_store", content="a tagged fact", namespace="infra", tags=["ok", tag])
                assert refused.is_error and code in refused.text and "one-line labels" in refused.text, refused.text
            stored = await client.ok("memory_store", content="a plain fact", namespace="infra", tags=["ok"])
            refused = await client.call("memory_update", id=stored["id"], tags=["a\u2028b"])
            assert refused.is_error and "U+2028" in refused.text, refused.text
            listed = await client.ok("memory_list", namespace="infra")
            assert [(m["content"], m.get("tags")) for m in listed["items"]] == [("a plain fact", ["ok"])], listed

    asyncio.run(scenario())
