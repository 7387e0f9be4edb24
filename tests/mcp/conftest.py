"""MCP test helpers: spawn the real ``memmesh mcp`` over stdio and talk to it with the real client."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client


@dataclass
class ToolReply:
    """A tool result as a test reads it: the error flag, the text and the parsed JSON (when JSON)."""

    is_error: bool
    text: str
    data: Any
    structured: dict[str, Any] | None


def reply(result: Any) -> ToolReply:
    text = "".join(getattr(block, "text", "") for block in result.content)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    return ToolReply(bool(result.is_error), text, data, result.structured_content)


class Client:
    """A ClientSession with a ``call`` that returns a :class:`ToolReply`."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def call(self, name: str, /, **arguments: Any) -> ToolReply:
        return reply(await self.session.call_tool(name, arguments))

    async def ok(self, name: str, /, **arguments: Any) -> Any:
        """Call a tool that must succeed; return its JSON."""
        result = await self.call(name, **arguments)
        assert not result.is_error, f"{name} failed: {result.text}"
        return result.data


@dataclass
class McpEnv:
    db: Path
    env: dict[str, str]
    tmp: Path

    def params(self, *args: str, extra_env: dict[str, str] | None = None) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "memmesh.interfaces.cli.app", "mcp", *args],
            env={**self.env, **(extra_env or {})},
            cwd=str(self.tmp),
        )

    @asynccontextmanager
    async def client(self, *args: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[Client]:
        """Spawn ``memmesh mcp <args>`` and hand back an initialised client."""
        async with stdio_client(self.params(*args, extra_env=extra_env)) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield Client(session)


def keyword_mcp_env(tmp_path: Path, db: Path) -> McpEnv:
    """``memmesh mcp`` on the SQLite file ``db``: no config file, no embedder, no inherited
    ``MEMMESH_*`` variables (also for tests outside tests/mcp, which cannot use the fixture)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "absent.toml").write_text("")
    env.update(
        {
            "MEMMESH_DB": str(db),
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
        }
    )
    return McpEnv(db=db, env=env, tmp=tmp_path)


@pytest.fixture
def mcp_env(tmp_path: Path, db_path: Path) -> McpEnv:
    return keyword_mcp_env(tmp_path, db_path)
