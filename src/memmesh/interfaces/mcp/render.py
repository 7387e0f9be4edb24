"""How MCP results look: compact JSON text, long content cut with a marker, one error mapper.

A model pays for every token of a tool result, so results drop empty fields, use short
separators, and cut memory content in listings at :data:`PREVIEW_CHARS` with a marker
that says how long the text is and how to read it whole (``memory_get``). Every
:class:`MemmeshError` becomes an ``isError`` result carrying the same one-line message the
CLI prints (``error: …``), plus the error body as structured content.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from memmesh.errors import InvalidInputError, MemmeshError, first_listed
from memmesh.model import Memory, describe_validation_error, text_problem

PREVIEW_CHARS = 600
_DROP: tuple[Any, ...] = (None, "", [], {})
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
    compacted: dict[str, Any] = compact(data)
    return compacted


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
    """A successful tool result: the value as compact JSON text. The answer's own lists stay
    even when empty (``{"sessions": []}``): dropped, an empty listing read ``{}``, which says
    nothing about what was asked."""
    if isinstance(value, CallToolResult):
        return value
    if isinstance(value, dict):
        kept = {k: compact(v) for k, v in value.items() if not _empty(v) or isinstance(v, list)}
        return CallToolResult(content=[TextContent(type="text", text=to_text(kept))])
    return CallToolResult(content=[TextContent(type="text", text=to_text(compact(value)))])


def check_arguments(metadata: Any, arguments: dict[str, Any]) -> None:
    """Hold tool arguments to the rules the REST bodies follow, before the SDK sees them.

    The SDK validates arguments leniently and drops unknown ones; memmesh refuses an
    unknown argument (a typo must not be ignored), text with a lone surrogate or NUL, and
    any value of the wrong JSON type (``"retain": true`` is not 1, ``"confidence": "1"`` is
    not a number): the arguments are checked as strict JSON against the tool's own
    argument model, so the types in its published schema are exactly what is accepted.
    ``metadata`` is the SDK's ``FuncMetadata`` of the tool.
    """
    model = metadata.arg_model
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    unknown = sorted(k for k in arguments if k not in known)
    if unknown:
        # the first few named, the rest counted (100,000 unknown arguments made a 1 MB error)
        named, more = first_listed(unknown)
        shown = ", ".join(named) + (f" and {more} more" if more else "")
        raise InvalidInputError(f"unknown argument{'s' if len(unknown) > 1 else ''} {shown}; the tool takes {', '.join(sorted(known))}")
    for key, value in arguments.items():
        problem = text_problem(value)
        if problem:
            raise InvalidInputError(f"{key}: {problem}")
    # 5.0 is an integer in JSON Schema (and in the REST bodies); strict JSON validation would refuse it.
    integral = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in metadata.pre_parse_json(arguments).items()}
    try:
        model.model_validate_json(json.dumps(integral), strict=True)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from None


def tool_argument(name: str, value: str | bool) -> str:
    """How a fix reads to an MCP client: the tool argument, ``on_conflict="update"`` or ``all=true``."""
    return f"{name}={json.dumps(value)}"


MCP_TOOLS: dict[str, str | None] = {
    "session_append": "session_append",
    "session_list": "session_list",
    "pending_all": 'memory_pending_list with status="all"',
    "standards_list": None,
    "keys_list": None,
    "peer_key_create": None,
    "curator_runs": None,
    "subscriptions_list": "memory_list_subscriptions",
}
"""The tool of each operation an error may point to (:data:`memmesh.errors.OPERATIONS`);
``None`` where no tool does it (keys and curator runs are managed over HTTP or the CLI)."""


def tool_name(operation: str) -> str | None:
    """How a fix names an operation to an MCP client: its tool (``session_append``), if any."""
    return MCP_TOOLS[operation]


def error_result(exc: MemmeshError) -> CallToolResult:
    """The one mapping of memmesh errors to MCP: an isError result, the CLI's message.

    A write queued for approval is not a failure: a normal result that says it is pending."""
    if exc.code == "pending_approval":
        body = exc.to_dict(tool_argument, tool_name)
        return CallToolResult(content=[TextContent(type="text", text=f"pending: {exc.reason}")], structured_content=body)
    return CallToolResult(
        content=[TextContent(type="text", text=f"error: {exc.message_for(tool_argument, tool_name)}")],
        structured_content=exc.to_dict(tool_argument, tool_name),
        is_error=True,
    )
