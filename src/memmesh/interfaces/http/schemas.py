"""Request and response bodies that only the HTTP face has; memories, hits, links and
stats are the :mod:`memmesh.model` values themselves, so every face returns the same JSON.

Every request body is a :class:`memmesh.model.Input`: an unknown field (a typo such as
``"namspace"``) is a 422 naming the field, never a silently ignored option; no text may
hold a lone surrogate; integers and booleans are strict (``"retain": true`` is refused, not
read as 1). The constraints the service enforces (lengths, ranges, patterns) are in the
schemas too, so the OpenAPI document describes what the server accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from memmesh.model import (
    ID_PATTERN,
    MAX_AGENT_ID_CHARS,
    MAX_NAMESPACE_CHARS,
    NAMESPACE_GRANT_PATTERN,
    NAMESPACE_PATTERN,
    NON_BLANK_PATTERN,
    Input,
    Kind,
    Link,
    Memory,
    NamespaceText,
    NewMemory,
    PositiveInt,
    Relation,
    Role,
    StrictBool,
    TagList,
    Tier,
    Timestamp,
)

AgentIdText = Annotated[str, Field(json_schema_extra={"maxLength": MAX_AGENT_ID_CHARS, "pattern": ID_PATTERN})]
NamespacePatterns = Annotated[
    list[Annotated[str, Field(json_schema_extra={"pattern": NAMESPACE_GRANT_PATTERN})]],
    Field(description="'*', 'team' or 'team/*'", json_schema_extra={"minItems": 1}),
]
MemoryIdText = Annotated[str, Field(description="a memory id", json_schema_extra={"pattern": ID_PATTERN})]


class Body(Input):
    """Base of request bodies: unknown fields are an error, types are strict."""


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine code, e.g. not_found, invalid_input, rate_limited")
    message: str = Field(description="one line for a person: what is wrong and how to fix it")
    details: dict[str, Any] = Field(default_factory=dict, description="structured extras, e.g. retry_after, errors")


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message", "details"}}``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"error": {"code": "not_found", "message": "no memory with id 0190…", "details": {}}},
            ]
        }
    )

    error: ErrorDetail


class RecallFilters(Body):
    """Which memories a recall, search or listing may return; a namespace matches its subtree."""

    namespace: NamespaceText | None = None
    tags: TagList | None = None
    tier: Tier | None = None
    kind: Kind | None = None
    agent_id: str | None = Field(None, max_length=MAX_AGENT_ID_CHARS)
    since: Timestamp | None = Field(None, description="created at or after")
    until: Timestamp | None = Field(None, description="created before")
    as_of: Timestamp | None = Field(None, description="only facts valid at this world time")


class RecallRequest(Body):
    """A recall: hybrid (keyword + semantic) by default; counts as an access."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "what does alice drink?", "filters": {"namespace": "people"}, "top_k": 5, "explain": True},
            ]
        },
    )

    query: str = Field(description="words or a question", json_schema_extra={"minLength": 1, "pattern": NON_BLANK_PATTERN})
    filters: RecallFilters | None = None
    top_k: PositiveInt | None = Field(None, description="hits to return (default recall.default_top_k)")
    mode: Literal["hybrid", "keyword", "vector"] | None = None
    explain: StrictBool = Field(False, description="include the parts of each score")
    budget_tokens: PositiveInt | None = Field(None, description="fill the answer up to this many tokens")
    touch: StrictBool = Field(True, description="count as an access (false: inspect only)")


class BatchRequest(Body):
    """Several memories stored in one transaction: all or nothing."""

    items: list[NewMemory] = Field(min_length=1, max_length=1000)


class LinkTo(Body):
    """A link from the memory being stored to one already stored."""

    target_id: MemoryIdText
    relation: Relation = Relation.related_to


class NewMemoryRequest(NewMemory):
    """A memory to store, optionally with links from it (stored in the same transaction)."""

    links: list[LinkTo] | None = Field(
        default=None,
        max_length=1000,
        description="links from the new memory: all commit with it, or (a missing or unreadable target) nothing is stored",
    )

    def memory(self) -> NewMemory:
        """The memory part, as the service takes it (same values, same fields given)."""
        fields = {name: getattr(self, name) for name in NewMemory.model_fields}
        made = NewMemory.model_construct(_fields_set=self.model_fields_set - {"links"}, **fields)
        assert isinstance(made, NewMemory)  # Input types model_construct as its own class
        return made


class StoredMemory(Memory):
    """A stored memory, saying whether it was already there (then the answer is 200, not 201)."""

    existed: bool = Field(description="true when the same content was already stored in the namespace (nothing new was created)")
    links: list[Link] | None = Field(default=None, description="the links stored with it, when the request gave links")


class LinkRequest(Body):
    """A typed, directed link between two memories."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"source_id": "0190a…", "target_id": "0190b…", "relation": "supersedes"},
            ]
        },
    )

    source_id: MemoryIdText
    target_id: MemoryIdText
    relation: Relation = Relation.related_to
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None


class DeleteAllResult(BaseModel):
    deleted: int


class AgentRequest(Body):
    """Register or update an agent identity."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"agent_id": "planner", "display_name": "Planner bot", "role": "writer", "namespaces": ["team/*"]},
            ]
        },
    )

    agent_id: AgentIdText
    display_name: str | None = Field(None, max_length=256)
    role: Role = "writer"
    namespaces: NamespacePatterns = Field(default_factory=lambda: ["*"])


class KeyRequest(Body):
    """Create an API key for an agent; the response holds the key's text, shown only once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"agent_id": "planner", "role": "writer", "namespaces": ["team/*"]},
            ]
        },
    )

    agent_id: AgentIdText
    role: Role = "writer"
    namespaces: NamespacePatterns = Field(default_factory=lambda: ["*"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ComponentHealth(BaseModel):
    status: Literal["ok", "degraded", "down"]
    reason: str | None = None
    """Why it is not ok (absent when it is)."""


class Ready(BaseModel):
    """Readiness for anyone: each component's health, no store location, no counts (issue 12)."""

    status: Literal["ok", "degraded", "down"] = "ok"
    """down: the store cannot be reached (HTTP 503); degraded: it serves, but a component named in ``components`` is not ok."""
    schema_version: int | None = None
    components: dict[str, ComponentHealth] = Field(default_factory=dict)
    peers: int | None = None
    """With --peers: how many peers this node has."""
    peers_up: int | None = None
    """With --peers: how many answered the last exchange."""


class BackupRequest(Body):
    """Take a snapshot now into the server's backup folder; optionally keep only the newest N."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"retain": 7}, {}]})

    retain: PositiveInt | None = Field(default=None, description="keep only the newest N snapshots")


_QUERY_RULES: dict[str, dict[str, Any]] = {
    "namespace": {"maxLength": MAX_NAMESPACE_CHARS, "pattern": NAMESPACE_PATTERN},
    "q": {"minLength": 1, "pattern": NON_BLANK_PATTERN},
    "agent_id": {"maxLength": MAX_AGENT_ID_CHARS},
}


def document_limits(openapi: dict[str, Any], *, max_page_size: int, max_content_bytes: int) -> dict[str, Any]:
    """Write this server's configured limits into its OpenAPI document, so a request the
    schema calls valid is one the server accepts: the page-size maximum of ``limit`` and
    ``top_k``, a content length that always fits ``limits.max_content_bytes`` (4 bytes per
    character at worst), and the namespace and query rules of the query parameters."""
    for path in openapi.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                schema = parameter.get("schema", {})
                target = next((s for s in schema.get("anyOf", []) if s.get("type") == "string"), schema)
                if parameter.get("in") == "query" and parameter["name"] in ("limit", "top_k"):
                    _set_maximum(schema, max_page_size)
                elif parameter.get("in") == "query" and parameter["name"] in _QUERY_RULES:
                    target.update(_QUERY_RULES[parameter["name"]])
    schemas = openapi.get("components", {}).get("schemas", {})
    for name in ("NewMemory", "NewMemoryRequest", "MemoryPatch"):
        content = schemas.get(name, {}).get("properties", {}).get("content")
        if content is not None:
            text = next((s for s in content.get("anyOf", []) if s.get("type") == "string"), content)
            text["maxLength"] = max(1, max_content_bytes // 4)
    top_k = schemas.get("RecallRequest", {}).get("properties", {}).get("top_k")
    if top_k is not None:
        _set_maximum(top_k, max_page_size)
    return openapi


def _set_maximum(schema: dict[str, Any], maximum: int) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            option["maximum"] = maximum
