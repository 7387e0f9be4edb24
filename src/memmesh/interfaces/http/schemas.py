"""Request and response bodies that only the HTTP face has; memories, hits, links and
stats are the :mod:`memmesh.model` values themselves, so every face returns the same JSON.

Every request body forbids unknown fields: a typo such as ``"namspace"`` is a 422 naming
the field, never a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from memmesh.model import Kind, NewMemory, Relation, Role, Tier


class Body(BaseModel):
    """Base of request bodies: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


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

    namespace: str | None = None
    tags: list[str] | None = None
    tier: Tier | None = None
    kind: Kind | None = None
    agent_id: str | None = None
    since: datetime | None = Field(None, description="created at or after")
    until: datetime | None = Field(None, description="created before")
    as_of: datetime | None = Field(None, description="only facts valid at this world time")


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

    query: str = Field(description="words or a question")
    filters: RecallFilters | None = None
    top_k: int | None = Field(None, ge=1, description="hits to return (default recall.default_top_k)")
    mode: Literal["hybrid", "keyword", "vector"] | None = None
    explain: bool = Field(False, description="include the parts of each score")
    budget_tokens: int | None = Field(None, ge=1, description="fill the answer up to this many tokens")
    touch: bool = Field(True, description="count as an access (false: inspect only)")


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
    valid_from: datetime | None = None
    valid_until: datetime | None = None


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

    agent_id: str
    display_name: str | None = None
    role: Role = "writer"
    namespaces: list[str] = Field(default_factory=lambda: ["*"])


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

    agent_id: str
    role: Role = "writer"
    namespaces: list[str] = Field(default_factory=lambda: ["*"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    """Readiness for anyone: no store location, no counts (issue 12)."""

    status: Literal["ok"] = "ok"
    schema_version: int
    peers: int | None = None
    """With --peers: how many peers this node has."""
    peers_up: int | None = None
    """With --peers: how many answered the last exchange."""


class BackupRequest(Body):
    """Take a snapshot now into the server's backup folder; optionally keep only the newest N."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"retain": 7}, {}]})

    retain: int | None = Field(default=None, ge=1, description="keep only the newest N snapshots")
