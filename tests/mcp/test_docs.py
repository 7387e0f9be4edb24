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
