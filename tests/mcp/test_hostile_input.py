"""Hostile arguments over MCP (issue 12): each is a clear tool error naming the argument,
never the SDK's generic "Error executing tool"; nothing is stored; the server keeps
answering; and arguments the REST face refuses are refused here too (unknown arguments,
coerced types). Text that merely looks like JSON stays text (one-line JSONL imports).

A lone surrogate cannot reach a tool over MCP: the SDK's JSON parser refuses the whole
frame (and the client cannot even encode it); the HTTP tests cover that case."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.io.jsonl import export_lines

if TYPE_CHECKING:
    from conftest import McpEnv


HOSTILE: list[tuple[str, dict[str, object], str]] = [
    ("memory_store", {"content": "nul\x00inside"}, "NUL"),
    ("memory_store", {"content": "x", "ttl_seconds": 10**12}, "ttl_seconds"),
    ("memory_store", {"content": "x", "ttl_seconds": 10**30}, "ttl_seconds"),
    # many unknown arguments: the first 20 named, the rest counted (all of them made a 1 MB error)
    ("memory_store", {"content": "x", **{f"f{i:05d}": 1 for i in range(1000)}}, "f00019 and 980 more; the tool takes"),
    ("memory_store", {"content": "x", "namespace": "a/../b"}, "'.' or '..'"),
    ("memory_store", {"content": "x", "namespace": "team/."}, "'.' or '..'"),
    ("memory_store", {"content": "x", "namespace": "a\n/b"}, "is invalid: each '/'-separated segment"),
    ("memory_store", {"content": "x", "confidence": "1"}, "confidence"),
    ("memory_store", {"content": "x", "priority": True}, "priority"),
    ("memory_store", {"content": "x", "priority": "5"}, "priority"),
    ("memory_store", {"content": "x", "tags": "str"}, "tags"),
    ("memory_store", {"content": "x", "valid_from": 0}, "valid_from"),
    ("memory_store", {"content": "x", "namspace": "typo"}, "unknown argument namspace"),
    ("memory_recall", {"query": "x", "explain": "yes"}, "explain"),
    ("memory_recall", {"query": "x", "top_k": 5.5}, "top_k"),
    ("memory_list", {"limit": True}, "limit"),
    ("memory_backup", {"retain": True}, "retain"),
    ("memory_backup", {"retain": "1"}, "retain"),
    ("memory_stats", {"verbose": True}, "unknown argument verbose"),
    # values that overflowed date arithmetic: the SDK's generic "Error executing tool" before
    ("memory_archive_purge", {"older_than_days": 1e308}, "older_than_days"),
    ("memory_recall", {"query": "x", "since": "9999-12-31T23:59:59-23:59"}, "since"),
    ("memory_recall", {"query": "x", "as_of": "0001-01-01T00:00:00+23:00"}, "as_of"),
    ("memory_forget", {"until": "0001-01-01T00:00:00+23:00"}, "until"),
    ("memory_link", {"source_id": "a", "target_id": "b", "valid_from": "0001-01-01T00:00:00+23:00"}, "valid_from"),
    ("memory_store", {"content": "x", "valid_to": "9999-12-31T23:59:59-23:59"}, "valid_to"),
]


def _stored(mcp_env: McpEnv) -> list[str]:
    settings = load_settings(
        None, overrides={"data_dir": str(mcp_env.tmp / "py"), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""}
    )
    with Memory(f"sqlite:///{mcp_env.db}", settings) as mem:
        return [m.content for m in mem.get_all(limit=1000)]


def test_hostile_arguments_are_tool_errors_naming_the_argument(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            for name, arguments, expected in HOSTILE:
                result = await client.call(name, **arguments)
                assert result.is_error, f"{name}({arguments!r}) should fail, got {result.text}"
                assert result.text.startswith("error: ") and "Error executing tool" not in result.text, (name, result.text)
                assert expected in result.text, (name, arguments, result.text)
                assert result.structured["error"]["code"] == "invalid_input", (name, result.structured)
            assert (await client.ok("memory_store", content="still answering"))["content"] == "still answering"

    asyncio.run(scenario())
    assert _stored(mcp_env) == ["still answering"]  # nothing hostile was stored, nothing half-way
    assert not list((mcp_env.tmp / "data" / "backups").glob("memmesh-*")), "retain=true must not run a backup"


def test_text_that_looks_like_json_stays_text(mcp_env: McpEnv) -> None:
    settings = load_settings(
        None, overrides={"data_dir": str(mcp_env.tmp / "other"), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""}
    )
    with Memory(f"sqlite:///{mcp_env.tmp / 'other.db'}", settings) as other:
        other.add("imported from one line", namespace="one/line", tier="long")
        lines = [line for line in export_lines(other.service, principal=other.principal) if json.loads(line)["type"] == "memory"]
    assert len(lines) == 1
    line = lines[0]  # one line, no header: a JSON object the SDK used to decode into a dict

    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            report = await client.call("memory_import", jsonl=line)
            assert not report.is_error, report.text
            stored = await client.ok("memory_store", content="will become JSON text", namespace="json")
            updated = await client.ok("memory_update", id=stored["id"], content='{"k": [1, 2]}', title='["draft"]')
            assert updated["content"] == '{"k": [1, 2]}' and updated["title"] == '["draft"]'
            tagged = await client.ok("memory_store", content="tags as a JSON string", tags='["a", "b"]')
            assert tagged["tags"] == ["a", "b"]  # list parameters still accept a JSON-encoded list

    asyncio.run(scenario())
    assert "imported from one line" in _stored(mcp_env)


def test_the_same_rules_hold_over_http_mcp(tmp_path) -> None:
    """The /mcp transport shares the argument checks: unknown and coerced arguments are tool errors."""
    import threading
    import time

    import uvicorn
    from test_http_mcp import _free_port, session

    from memmesh.interfaces.http.app import create_app

    settings = load_settings(
        None,
        overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}, "storage": {"url": f"sqlite:///{tmp_path / 'h.db'}"}},
        env={"MEMMESH_CONFIG": ""},
    )
    mem = Memory(config=settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(mem.service, settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.02)

    async def scenario() -> None:
        async with session(f"http://127.0.0.1:{port}/mcp") as s:
            for arguments, expected in [
                ({"content": "x", "namspace": "typo"}, "unknown argument namspace"),
                ({"content": "x", "priority": True}, "priority"),
                ({"content": "x", "ttl_seconds": 10**12}, "ttl_seconds"),
                ({"content": "x", "namespace": "a/../b"}, "'.' or '..'"),
            ]:
                result = await s.call_tool("memory_store", arguments)
                text = result.content[0].text
                assert result.is_error and text.startswith("error: ") and expected in text, text

    try:
        asyncio.run(scenario())
        assert mem.get_all() == []
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        mem.close()
