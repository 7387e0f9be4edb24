"""docs/mcp.md cannot drift from the tool catalogue: every tool and profile is documented."""

from __future__ import annotations

from pathlib import Path

from memmesh.interfaces.mcp.catalog import ALL_TOOLS, PROFILES, resolve_profile, tools_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "mcp.md"


def test_every_tool_and_profile_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in ALL_TOOLS if f"| `{name}` |" not in text]
    assert missing == []
    for profile in PROFILES:
        count = len(tools_for(resolve_profile(profile)))
        assert f"| {count} |" in text.split("## Profiles and families")[1].split("###")[0], profile


def test_memory_store_result_is_what_the_page_says(mcp_env) -> None:
    """mcp.md 'Results and errors': listings and store results drop the bookkeeping fields and
    defaults, keep every field that was set; memory_get returns every field."""
    import asyncio

    async def scenario() -> None:
        async with mcp_env.client() as client:
            plain = await client.ok("memory_store", content="Alice prefers tea", namespace="people/alice")
            assert {"id", "namespace", "content", "tier", "kind", "priority", "source", "created_at", "expires_at"} <= set(plain)
            assert not {"content_hash", "version", "last_accessed_at", "confidence", "access_count", "updated_at"} & set(plain)
            set_fields = await client.ok(
                "memory_store", content="Bob prefers coffee", namespace="people/bob", confidence=0.8, tags=["drinks"]
            )
            assert set_fields["confidence"] == 0.8 and set_fields["tags"] == ["drinks"]
            full = await client.ok("memory_get", id=plain["id"])
            assert {"content_hash", "version", "confidence", "updated_at", "access_count"} <= set(full)

    asyncio.run(scenario())
