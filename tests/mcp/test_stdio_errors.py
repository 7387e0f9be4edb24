"""Bad input over MCP: a clear tool error, nothing stored half-way, the server keeps answering;
and two agents writing through two servers at once lose nothing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from memmesh import Memory
from memmesh.config import load_settings

if TYPE_CHECKING:
    from conftest import McpEnv

BAD_CALLS: list[tuple[str, dict[str, object], str]] = [
    ("memory_store", {"content": "   "}, "content is empty"),
    ("memory_store", {"content": "x", "priority": 11}, "priority"),
    ("memory_store", {"content": "x", "priority": "high"}, "priority"),
    ("memory_store", {"content": "x", "tier": "forever"}, "tier"),
    ("memory_store", {"content": "x", "namespace": "bad space/ns"}, "namespace 'bad space/ns' is invalid"),
    ("memory_store", {"content": "x" * 70_000}, "limit is 65536"),
    ("memory_store", {"content": "x", "valid_from": "yesterday"}, "valid_from"),
    ("memory_store", {}, "content"),
    ("memory_get", {"id": "no-such-id"}, "no memory with id no-such-id"),
    ("memory_update", {"id": "no-such-id", "priority": 3}, "no memory with id"),
    ("memory_delete", {"id": "no-such-id"}, "no memory with id"),
    ("memory_recall", {"query": " "}, "query is empty"),
    ("memory_recall", {"query": "x", "top_k": 0}, "top_k must be between"),
    ("memory_list", {"cursor": "not-a-cursor"}, "invalid cursor"),
    ("memory_kg_query", {"id": "no-such-id", "depth": 99}, "depth must be between"),
    ("memory_forget", {}, "forget needs at least one filter"),
    ("memory_archive_purge", {}, "archive purge needs"),
    ("memory_import", {}, "exactly one of jsonl"),
    ("memory_import", {"jsonl": "{not json"}, "line 1: not JSON"),
    ("memory_restore", {"id": "no-such-id"}, "no deleted memory"),
    ("memory_consolidate", {"ids": ["a"], "content": "s"}, "at least two"),
    ("memory_check_duplicate", {"content": "x", "threshold": 2}, "threshold"),
    ("memory_entity_register", {"name": "  "}, "empty"),
    ("memory_agent_register", {"agent_id": "bad id!"}, "agent_id 'bad id!' is invalid"),
]


def test_bad_arguments_are_tool_errors_and_the_server_keeps_answering(mcp_env: McpEnv, cli) -> None:
    async def scenario() -> list[str]:
        async with mcp_env.client("--profile", "full") as client:
            messages = []
            for name, arguments, expected in BAD_CALLS:
                result = await client.call(name, **arguments)
                assert result.is_error, f"{name}({arguments}) should fail, got {result.text}"
                assert result.text.startswith("error: ") and expected in result.text, (name, result.text)
                assert result.structured["error"]["code"] in {"invalid_input", "not_found", "too_large"}
                messages.append(result.text)
            unknown = await client.call("memory_teleport")
            assert unknown.is_error
            stored = await client.ok("memory_store", content="still answering", namespace="after/errors")
            assert (await client.ok("memory_get", id=stored["id"]))["content"] == "still answering"
            return messages

    messages = asyncio.run(scenario())
    settings = load_settings(
        None, overrides={"data_dir": str(mcp_env.tmp / "py"), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""}
    )
    with Memory(f"sqlite:///{mcp_env.db}", settings) as mem:
        assert [m.content for m in mem.get_all()] == ["still answering"]  # nothing stored half-way
    # The same message the CLI prints for the same mistake.
    cli_result = cli("get", "no-such-id")
    assert cli_result.code == 1
    assert cli_result.err.strip() in messages


def test_a_tool_of_a_family_the_profile_leaves_out_says_how_to_enable_it(mcp_env: McpEnv) -> None:
    """The SDK answered only "Unknown tool: memory_link" for a tool memmesh has but the
    profile did not turn on."""

    async def scenario() -> tuple[str, bool]:
        async with mcp_env.client() as client:  # the core profile
            left_out = await client.call("memory_link", source_id="a", target_id="b", relation="related_to")
            teleport = await client.call("memory_teleport")
            typo = await client.call("memory_recal", query="x")
            assert teleport.is_error and typo.is_error
            return left_out.text, teleport.text, typo.text

    text, teleport, typo = asyncio.run(scenario())
    assert text.startswith("error: memory_link is not enabled on this server: it is in the 'graph' family"), text
    assert "--profile graph" in text
    assert "not enabled" not in teleport and "no tool named 'memory_teleport'" in teleport and "tools/list names the" in teleport
    assert "did you mean 'memory_recall'" in typo, typo  # the SDK said only "Unknown tool: memory_recal"


def test_unknown_profile_is_a_usage_error_as_a_flag_and_a_config_error_as_a_setting(cli) -> None:
    result = cli("mcp", "--profile", "core,telepathy")
    assert result.code == 2  # a value the option never takes, like any other bad choice
    assert result.err.startswith("error: unknown MCP profile or tool family 'telepathy' (--profile)")
    assert result.out == ""
    setting = cli("mcp", extra_env={"MEMMESH_MCP_PROFILE": "telepathy"})
    assert setting.code == 1 and "(mcp.profile)" in setting.err


def test_two_agents_writing_at_once_lose_nothing(mcp_env: McpEnv) -> None:
    per_agent = 60

    async def agent(name: str) -> list[str]:
        async with mcp_env.client("--agent-id", name) as client:
            ids = []
            for i in range(per_agent):
                stored = await client.ok("memory_store", content=f"{name} observation number {i}", namespace=f"agents/{name}")
                ids.append(stored["id"])
            return ids

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(agent("left"), agent("right")))

    written = asyncio.run(both())
    settings = load_settings(
        None, overrides={"data_dir": str(mcp_env.tmp / "py"), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""}
    )
    with Memory(f"sqlite:///{mcp_env.db}", settings) as mem:
        stored = mem.get_all(limit=1000, namespace="agents")
        assert len(stored) == 2 * per_agent
        assert {m.id for m in stored} == set(written[0]) | set(written[1])
        assert {m.agent_id for m in stored} == {"left", "right"}
        assert mem.service.store.integrity_check() == "ok"
