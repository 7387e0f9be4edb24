"""No MCP tool or prompt description sends the user to "SPEC §N" (users have no SPEC.md),
as the real ``mcp`` client lists them from the stdio server with every tool on."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import McpEnv


def test_no_tool_or_prompt_cites_the_spec(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            tools = (await client.session.list_tools()).tools
            prompts = (await client.session.list_prompts()).prompts
            assert len(tools) > 20 and prompts
            texts = {f"tool {t.name}": f"{t.description} {t.input_schema}" for t in tools}
            texts |= {f"prompt {p.name}": f"{p.description} {p.arguments}" for p in prompts}
            cited = sorted(name for name, text in texts.items() if re.search(r"\bSPEC\b", text))
            assert cited == [], cited

    asyncio.run(scenario())
