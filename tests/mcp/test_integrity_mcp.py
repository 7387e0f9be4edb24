"""A fix hint in an MCP tool error names the tool argument, not a CLI flag or Python keyword."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import McpEnv


def test_title_conflict_hint_speaks_tool_arguments(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client() as client:
            first = await client.ok("memory_store", content="retro every other Friday", title="retro", namespace="team")
            clash = await client.call("memory_store", content="retro every Thursday", title="retro", namespace="team")
            assert clash.is_error
            assert clash.text == (
                f"error: namespace 'team' already has a memory titled 'retro' ({first['id']}); "
                'pass on_conflict="update" or on_conflict="version"'
            )
            details = clash.structured["error"]["details"]  # type: ignore[index]
            assert details["existing_id"] == first["id"] and details["retry_with"] == {"on_conflict": ["update", "version"]}
            fixed = await client.ok("memory_store", content="retro every Thursday", title="retro", namespace="team", on_conflict="update")
            assert fixed["id"] == first["id"]

    asyncio.run(scenario())


def test_fix_hints_name_tool_arguments_and_tools(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            opened = await client.ok("bus_open_conversation", participants=["a", "b"])
            nothing = await client.call("bus_ack", conversation_id=opened["conversation_id"], token=opened["token"], agent="b")
            assert nothing.is_error and nothing.text.endswith("; pass all=true"), nothing.text
            missing = await client.call("session_rehydrate", session_id="nosuch")
            assert missing.is_error and missing.text == (
                "error: no session nosuch: a session starts with its first turn; "
                "use session_append to add a turn, or session_list to see the sessions there are"
            )

    asyncio.run(scenario())


def test_hints_to_another_operation_name_tools_not_cli_commands(mcp_env: McpEnv) -> None:
    """Core errors that once said "see `memmesh pending list --status all`" to MCP clients."""

    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            pending = await client.call("memory_pending_approve", id="nope")
            assert pending.is_error and pending.text == (
                "error: no pending action with id 'nope'; "
                'use memory_pending_list with status="all" to see the ids of every pending action, decided ones too'
            )
            subscription = await client.call("memory_unsubscribe", id="nope")
            assert subscription.text.endswith("; use memory_list_subscriptions to see the subscription ids"), subscription.text
            # no tool lists standards: the hint is left out rather than naming a CLI command
            standard = await client.call("memory_namespace_clear_standard", namespace="nowhere")
            assert standard.is_error and standard.text == "error: namespace 'nowhere' has no standard of its own"
            nobody = await client.call("bus_open_conversation", participants=[])
            assert nobody.is_error and "at least one participant" in nobody.text
            for answer in (pending, subscription, standard, nobody):
                assert "memmesh " not in answer.text and "--" not in answer.text, answer.text

    asyncio.run(scenario())
