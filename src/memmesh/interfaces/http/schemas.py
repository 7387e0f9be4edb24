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
    NON_BLANK_PATTERN,
    Input,
    Kind,
    NamespaceText,
    NewMemory,
    Relation,
    Role,
    StrictBool,
    StrictInt,
    TagList,
    Tier,
    Timestamp,
)

AgentIdText = Annotated[str, Field(json_schema_extra={"maxLength": MAX_AGENT_ID_CHARS, "pattern": ID_PATTERN})]
NamespacePatterns = Annotated[list[str], Field(description="'*', 'team' or 'team/*'", json_schema_extra={"minItems": 1})]


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
    top_k: StrictInt | None = Field(None, ge=1, description="hits to return (default recall.default_top_k)")
    mode: Literal["hybrid", "keyword", "vector"] | None = None
    explain: StrictBool = Field(False, description="include the parts of each score")
    budget_tokens: StrictInt | None = Field(None, ge=1, description="fill the answer up to this many tokens")
    touch: StrictBool = Field(True, description="count as an access (false: inspect only)")


class BatchRequest(Body):
    """Several memories stored in one transaction: all or nothing."""

    items: list[NewMemory] = Field(min_length=1, max_length=1000)


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

    source_id: str
    target_id: str
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


class Ready(BaseModel):
    status: Literal["ok"] = "ok"
    store: str
    schema_version: int
    changes: int


class BackupRequest(Body):
    """Take a snapshot now into the server's backup folder; optionally keep only the newest N."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"retain": 7}, {}]})

    retain: StrictInt | None = Field(default=None, ge=1, description="keep only the newest N snapshots")
