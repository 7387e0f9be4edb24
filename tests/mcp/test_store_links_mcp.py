"""MCP ``memory_store`` with ``links`` (stored with the memory, or nothing is) and a repeated
store that says ``existed: true``, over the real stdio server and the real ``mcp`` client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import McpEnv


def test_memory_store_links_and_existed(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            target = await client.ok("memory_store", content="The staging cluster is in eu-west", namespace="infra")
            assert target["existed"] is False
            again = await client.ok("memory_store", content="The staging cluster is in eu-west", namespace="infra")
            assert again["existed"] is True and again["id"] == target["id"]

            made = await client.ok(
                "memory_store",
                content="Staging latency is 40 ms",
                namespace="infra",
                links=[{"target_id": target["id"], "relation": "derived_from"}],
            )
            assert made["existed"] is False
            assert [(link["target_id"], link["relation"]) for link in made["links"]] == [(target["id"], "derived_from")]
            listed = await client.ok("memory_get_links", id=made["id"])
            assert target["id"] in str(listed)

            for links, words in [
                ([{"target_id": "0190" + "3" * 32}], "nothing was stored"),
                ([{"target_id": target["id"], "relation": "loves"}], "relation"),
                ([{"relation": "part_of"}], "target_id"),
            ]:
                refused = await client.call("memory_store", content="An orphan fact", namespace="infra", links=links)
                assert refused.is_error and words in refused.text and "Error executing tool" not in refused.text, refused.text
            refused = await client.call("memory_store", messages=[{"role": "user", "content": "hi"}], links=[{"target_id": target["id"]}])
            assert refused.is_error and "links go with content" in refused.text
            assert (await client.ok("memory_stats"))["total"] == 2, "no refused store wrote anything"

    asyncio.run(scenario())
