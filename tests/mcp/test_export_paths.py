"""MCP ``memory_export`` with a ``path`` writes through the same core as ``memmesh export -o``:
a bad path (a missing folder, a folder, a name too long for the file system, a 2 MB string)
is a tool error that says what to fix, with no traceback on the server's stderr and no file
left behind; a good one is written whole. Before, the tool wrote the file itself: a bare
"Error executing tool memory_export" and a traceback that printed the argument."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mcp import ClientSession, stdio_client
from tests.mcp.conftest import Client, McpEnv, ToolReply


async def _export_calls(mcp_env: McpEnv, paths: list[str], errlog: Path) -> list[ToolReply]:
    with errlog.open("w") as err:
        async with stdio_client(mcp_env.params("--profile", "full"), errlog=err) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            client = Client(session)
            await client.ok("memory_store", content="Deploys are frozen on Fridays", namespace="team")
            return [await client.call("memory_export", path=path) for path in paths]


def test_bad_export_paths_say_what_to_fix_and_leave_nothing(mcp_env: McpEnv, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    long_name = out / ("a" * 300 + ".jsonl")
    legal_long = out / ("b" * 249 + ".jsonl")  # 255 bytes: legal, though "<name>.partial" is not
    paths = [str(out / "missing" / "x.jsonl"), str(out), str(long_name), "/" + "c" * 2_000_000, str(legal_long)]
    errlog = tmp_path / "stderr.log"
    *bad, good = asyncio.run(_export_calls(mcp_env, paths, errlog))

    expected = [
        f"error: cannot write the export to {out / 'missing' / 'x.jsonl'}: the folder {out / 'missing'} does not exist; check the path",
        f"error: cannot write the export to {out}: it is a folder; give a file name",
        "error: cannot write the export to ",
        "error: cannot write the export to /ccc",
    ]
    for result, start in zip(bad, expected, strict=True):
        assert result.is_error and result.text.startswith(start), result.text
        assert result.structured is not None and result.structured["error"]["code"] == "invalid_input"
    assert "File name too long; check the path" in bad[2].text and len(bad[2].text) < 400, bad[2].text
    assert "check the path" in bad[3].text and len(bad[3].text) < 400, bad[3].text[:500]

    assert not good.is_error, good.text
    assert good.data["path"] == str(legal_long) and good.data["memories"] == 1
    assert good.data["lines"] == len(legal_long.read_text().splitlines()) and good.data["bytes"] == legal_long.stat().st_size
    assert sorted(p.name for p in out.iterdir()) == [legal_long.name]  # no partial file, nothing else
    log = errlog.read_text()
    assert "Traceback" not in log and len(log) < 10_000, log[:2000]
