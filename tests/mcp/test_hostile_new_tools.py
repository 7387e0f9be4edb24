"""Hostile arguments to the bus and import tools over the real MCP stdio server: each is a
clear tool error naming what to fix (never "Error executing tool"), the server keeps
answering, and nothing was stored."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import McpEnv

NEST = "[" * 100_000 + "]" * 100_000


def test_nested_imports_and_unstorable_bus_text_are_tool_errors(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            for arguments, words in [
                ({"jsonl": NEST, "format": "jsonl"}, "nested too deeply"),
                ({"jsonl": NEST, "format": "mem0", "namespace": "a"}, "nested too deeply"),
            ]:
                refused = await client.call("memory_import", **arguments)
                assert refused.is_error and words in refused.text, refused.text
            opened = await client.ok("bus_open_conversation", participants=["a", "b"])
            conv, token = opened["conversation_id"], opened["token"]
            poll = {"conversation_id": conv, "token": token, "agent": "b"}
            for name, arguments, words in [
                ("bus_open_conversation", {"participants": ["a"], "topic": "t\x00"}, "NUL"),
                ("bus_send_message", {"conversation_id": conv, "token": token, "sender": "a", "body": "b\x00"}, "NUL"),
                ("bus_get_unread_messages", {**poll, "wait_seconds": 1e308}, "bus.max_wait_s"),
            ]:
                refused = await client.call(name, **arguments)
                assert refused.is_error and words in refused.text and "Error executing tool" not in refused.text, refused.text
            listed = await client.ok("bus_list_conversations")
            assert [c["id"] for c in listed["conversations"]] == [conv]
            unread = await client.ok("bus_get_unread_messages", conversation_id=conv, token=token, agent="b")
            assert not unread.get("messages"), unread
            assert (await client.ok("memory_stats"))["total"] == 0, "no import wrote anything"

    asyncio.run(scenario())
