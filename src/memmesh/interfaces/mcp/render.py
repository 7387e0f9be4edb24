"""How MCP results look: compact JSON text, long content cut with a marker, one error mapper.

A model pays for every token of a tool result, so results drop empty fields, use short
separators, and cut memory content in listings at :data:`PREVIEW_CHARS` with a marker
that says how long the text is and how to read it whole (``memory_get``). Every
:class:`MemmeshError` becomes an ``isError`` result carrying the same one-line message the
CLI prints (``error: …``), plus the SPEC error body as structured content.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from memmesh.errors import MemmeshError
from memmesh.model import Memory

PREVIEW_CHARS = 600
_DROP = (None, "", [], {})
_MEMORY_SKIP = {"content_hash", "version", "last_accessed_at"}


def truncate(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` itself when short, else its start and a marker naming the full length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated: {len(text)} chars in full; memory_get returns the whole text]"


def memory_view(memory: Memory, *, full: bool = False) -> dict[str, Any]:
    """A memory without empty fields; content previewed unless ``full``."""
    data = memory.model_dump(mode="json", exclude=None if full else _MEMORY_SKIP)
    if not full:
        data["content"] = truncate(memory.content)
        if data.get("updated_at") == data.get("created_at"):
            data.pop("updated_at", None)
        if data.get("confidence") == 1.0:
            data.pop("confidence")
        if data.get("access_count") == 0:
            data.pop("access_count")
    return compact(data)


def compact(value: Any) -> Any:
    """JSON-ready data with None/empty values dropped from objects (recursively)."""
    if isinstance(value, Memory):
        return memory_view(value)
    if isinstance(value, BaseModel):
        return compact(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if not _empty(v)}
    if isinstance(value, list | tuple):
        return [compact(v) for v in value]
    return value


def _empty(value: Any) -> bool:
    return any(value is d or (type(value) is type(d) and value == d) for d in _DROP)


def to_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def ok(value: Any) -> CallToolResult:
    """A successful tool result: the value as compact JSON text."""
    if isinstance(value, CallToolResult):
        return value
    return CallToolResult(content=[TextContent(type="text", text=to_text(compact(value)))])


def tool_argument(name: str, value: str) -> str:
    """How a fix reads to an MCP client: the tool argument, ``on_conflict="update"``."""
    return f'{name}="{value}"'


def error_result(exc: MemmeshError) -> CallToolResult:
    """The one mapping of memmesh errors to MCP: an isError result, the CLI's message."""
    return CallToolResult(
        content=[TextContent(type="text", text=f"error: {exc.message_for(tool_argument)}")],
        structured_content=exc.to_dict(tool_argument),
        is_error=True,
    )
