"""A session's task longer than a memory is refused naming the *task* and its limit (it used to
say "query is N bytes", a field the caller never sent): the ``memory_session_start`` tool and
the ``memory_context`` prompt, over the real stdio server and the real ``mcp`` client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mcp.shared.exceptions import MCPError

if TYPE_CHECKING:
    from conftest import McpEnv

LONG_TASK = "plan the launch " + "x" * 70_000


def test_a_task_longer_than_a_memory_names_the_task_and_its_limit(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            await client.ok("memory_store", content="the launch is planned for May", namespace="plans")
            refused = await client.call("memory_session_start", task=LONG_TASK)
            assert refused.is_error, refused.text
            assert "task is 70016 bytes; the limit is 65536 (limits.max_content_bytes)" in refused.text, refused.text
            assert "query" not in refused.text, refused.text
            try:
                await client.session.get_prompt("memory_context", {"task": LONG_TASK})
                raise AssertionError("the prompt rendered a task longer than the limit")
            except MCPError as exc:
                assert "task is 70016 bytes" in str(exc) and "query" not in str(exc), str(exc)
            fine = await client.ok("memory_session_start", task="plan the launch")
            assert [h["content"] for h in fine["relevant"]][:1] == ["the launch is planned for May"], fine

    asyncio.run(scenario())
