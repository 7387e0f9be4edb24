"""The values that cross layers: memories, links, history, hits, stats.

Static rules (namespace syntax, tag normalisation, ranges) live on these pydantic models,
so every face gets the same checks; limits that come from configuration (content size,
page size) are checked by the service. This module imports nothing of memmesh but errors.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from memmesh.errors import InvalidInputError

NAMESPACE_SEGMENT = re.compile(r"^[A-Za-z0-9._:@-]+$")
MAX_NAMESPACE_SEGMENTS = 8
MAX_NAMESPACE_CHARS = 255
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_TITLE_CHARS = 512
MAX_METADATA_BYTES = 16 * 1024
DEFAULT_NAMESPACE = "default"

ModelT = TypeVar("ModelT", bound=BaseModel)


class Tier(StrEnum):
    """Retention tier; each has a default TTL (short 6 h, mid 7 days, long never)."""

    short = "short"
    mid = "mid"
    long = "long"


class Kind(StrEnum):
    """What sort of thing a memory records."""

    fact = "fact"
    episode = "episode"
    preference = "preference"
    procedure = "procedure"
    summary = "summary"
    message = "message"


class Relation(StrEnum):
    """Typed, directed link between two memories."""

    related_to = "related_to"
    supersedes = "supersedes"
    contradicts = "contradicts"
    derived_from = "derived_from"
    part_of = "part_of"
    caused_by = "caused_by"
    mentions = "mentions"


class HistoryEvent(StrEnum):
    add = "add"
    update = "update"
    delete = "delete"
    promote = "promote"
    merge = "merge"
    restore = "restore"
    archive = "archive"


OnConflict = Literal["error", "update", "version"]


def normalize_namespace(value: str) -> str:
    """Check a ``/``-separated namespace and return it trimmed; raise with what to fix."""
    if not isinstance(value, str):
        raise InvalidInputError("namespace must be a string such as 'team/project'")
    ns = value.strip()
    if not ns:
        raise InvalidInputError("namespace is empty: give a path such as 'team/project'")
    if len(ns) > MAX_NAMESPACE_CHARS:
        raise InvalidInputError(f"namespace is {len(ns)} characters; the limit is {MAX_NAMESPACE_CHARS}")
    segments = ns.split("/")
    if len(segments) > MAX_NAMESPACE_SEGMENTS:
        raise InvalidInputError(f"namespace {ns!r} has {len(segments)} segments; the limit is {MAX_NAMESPACE_SEGMENTS}")
    for segment in segments:
        if not NAMESPACE_SEGMENT.match(segment):
            raise InvalidInputError(
                f"invalid namespace {ns!r}: each '/'-separated segment must be non-empty and use only letters, digits and . _ : @ -"
            )
    return ns


def normalize_tags(values: list[str] | None) -> list[str]:
    """Lower-case, trim and de-duplicate tags (order kept); enforce count and length."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [part for part in values.split(",")]
    if not isinstance(values, list | tuple):
        raise InvalidInputError('tags must be a list of strings, e.g. ["project", "urgent"]')
    seen: dict[str, None] = {}
    for raw in values:
        if not isinstance(raw, str):
            raise InvalidInputError(f"tag {raw!r} is not a string")
        tag = raw.strip().lower()
        if not tag:
            continue
        if len(tag) > MAX_TAG_CHARS:
            raise InvalidInputError(f"tag {tag[:20]!r}… is {len(tag)} characters; the limit is {MAX_TAG_CHARS}")
        seen[tag] = None
    if len(seen) > MAX_TAGS:
        raise InvalidInputError(f"{len(seen)} tags given; the limit is {MAX_TAGS}")
    return list(seen)


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any]:
    """Metadata must be a JSON object of at most 16 KiB once serialised."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError('metadata must be a JSON object, e.g. {"source_url": "..."}')
    try:
        size = len(json.dumps(value, ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata is not JSON-serialisable: {exc}") from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidInputError(f"metadata is {size} bytes serialised; the limit is {MAX_METADATA_BYTES}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class Version(BaseModel):
    """Replication version: vector clock, writing node and hybrid logical timestamp."""

    clock: dict[str, int] = Field(default_factory=dict)
    node: str = ""
    hlc: str = Field(default="", pattern=r"^(\d{13}\.\d{5})?$")


class NewMemory(_Strict):
    """What a caller may send to store a memory."""

    content: str
    namespace: str = DEFAULT_NAMESPACE
    title: str | None = None
    tier: Tier | None = None
    kind: Kind = Kind.fact
    tags: list[str] = Field(default_factory=list)
    priority: int = Field(default=5, ge=1, le=10)
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    source: str = "user"
    agent_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    ttl_seconds: int | None = Field(default=None, ge=1)
    on_conflict: OnConflict = "error"

    @field_validator("namespace")
    @classmethod
    def _ns(cls, value: str) -> str:
        return normalize_namespace(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str]:
        return normalize_tags(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _meta(cls, value: dict[str, Any] | None) -> dict[str, Any]:
        return check_metadata(value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if len(value) > MAX_TITLE_CHARS:
            raise ValueError(f"title is {len(value)} characters; the limit is {MAX_TITLE_CHARS}")
        return value or None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or len(value) > 128 or not re.match(r"^[A-Za-z0-9._:@-]+$", value):
            raise ValueError("id must be 1-128 characters of letters, digits and . _ : @ -")
        return value


class MemoryPatch(_Strict):
    """Fields an update may change; ``None`` means leave as is."""

    content: str | None = None
    title: str | None = None
    namespace: str | None = None
    tier: Tier | None = None
    kind: Kind | None = None
    tags: list[str] | None = None
    priority: int | None = Field(default=None, ge=1, le=10)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    metadata: dict[str, Any] | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None

    @field_validator("namespace")
    @classmethod
    def _ns(cls, value: str | None) -> str | None:
        return None if value is None else normalize_namespace(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else normalize_tags(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _meta(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_metadata(value)


class Memory(BaseModel):
    """A stored memory, as every face returns it."""

    id: str
    namespace: str
    title: str | None = None
    content: str
    tier: Tier
    kind: Kind
    tags: list[str] = Field(default_factory=list)
    priority: int
    confidence: float
    source: str
    agent_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    access_count: int = 0
    last_accessed_at: datetime | None = None
    content_hash: str
    version: Version = Field(default_factory=Version)


class Link(BaseModel):
    """A directed, typed edge with world-time validity."""

    source_id: str
    target_id: str
    relation: Relation = Relation.related_to
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    observed_by: str | None = None
    created_at: datetime


class HistoryEntry(BaseModel):
    """One change to a memory: what it was, what it became, who did it and when."""

    memory_id: str
    event: HistoryEvent
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    actor: str | None = None
    at: datetime


class Tombstone(BaseModel):
    """What is left of a deleted memory, so replicas and backups agree it is gone."""

    id: str
    namespace: str
    deleted_at: datetime
    actor: str | None = None
    version: Version = Field(default_factory=Version)


class Hit(BaseModel):
    """A recall result: the memory, its score and optionally the parts of the score."""

    memory: Memory
    score: float
    explain: dict[str, float] | None = None


class Page(BaseModel):
    """One page of a listing; pass ``next_cursor`` back to get the next one."""

    items: list[Memory]
    next_cursor: str | None = None


class TierCount(BaseModel):
    tier: Tier
    count: int


class NamespaceCount(BaseModel):
    namespace: str
    count: int


class Stats(BaseModel):
    """The SPEC §4 stats shape."""

    total: int
    by_tier: list[TierCount]
    by_namespace: list[NamespaceCount]
    expiring_soon: int
    links_count: int
    db_size_bytes: int


class GcReport(BaseModel):
    """What one garbage collection did."""

    archived: int
    tombstones_purged: int


def parse_model(model: type[ModelT], data: Any) -> ModelT:
    """Validate ``data`` into ``model``; pydantic errors become one clear InvalidInputError."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "input"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


class RecallResult(BaseModel):
    """What recall returns: ranked hits, how many were dropped by the token budget, notices."""

    query: str
    mode: Literal["hybrid", "keyword", "vector"]
    hits: list[Hit]
    dropped: int = 0
    notices: list[str] = Field(default_factory=list)


Role = Literal["reader", "writer", "admin", "peer"]
_ROLE_RANK = {"peer": -1, "reader": 0, "writer": 1, "admin": 2}
"""``peer`` is outside the reader < writer < admin order: a peer node's key may only use the
sync routes (which apply changes in every namespace), and only an admin may hand one out."""


class Principal(BaseModel):
    """Who is calling: an agent with a role and the namespace patterns it may touch.

    Patterns: ``*`` is everything; ``team`` or ``team/*`` is ``team`` and everything below it.
    The service enforces these on every call, so no face can leak across namespaces.
    """

    agent_id: str | None = None
    role: Role = "admin"
    namespaces: list[str] = Field(default_factory=lambda: ["*"])
    key_id: str | None = None
    """The API key this caller authenticated with (None for local callers); rate limits count per key."""

    def prefixes(self) -> tuple[str, ...] | None:
        """Namespace roots this principal may see, or None when unrestricted."""
        roots = []
        for pattern in self.namespaces:
            root = pattern.removesuffix("/*").removesuffix("*").rstrip("/")
            if not root:
                return None
            roots.append(root)
        return tuple(roots)

    def covers(self, namespace: str) -> bool:
        roots = self.prefixes()
        return roots is None or any(namespace == r or namespace.startswith(r + "/") for r in roots)

    def has_role(self, role: Role) -> bool:
        if role == "peer":
            return self.role in ("peer", "admin")
        return _ROLE_RANK[self.role] >= _ROLE_RANK[role]


LOCAL_PRINCIPAL = Principal()
"""The embedded caller (Python API, CLI): every role, every namespace."""


class Agent(BaseModel):
    """A registered identity: the agent id keys map to, its role and the namespaces it may touch."""

    agent_id: str
    display_name: str
    role: Role
    namespaces: list[str]
    created_at: datetime
    updated_at: datetime


class ApiKey(BaseModel):
    """An API key as listed: never the secret, only its id (also the key's visible prefix)."""

    id: str
    agent_id: str
    role: Role
    namespaces: list[str]
    created_at: datetime
    revoked_at: datetime | None = None

    def principal(self) -> Principal:
        """The caller this key stands for."""
        return Principal(agent_id=self.agent_id, role=self.role, namespaces=list(self.namespaces), key_id=self.id)


class StoredApiKey(ApiKey):
    """An API key as the store keeps it: with the sha256 of its secret, never the secret."""

    key_hash: str


class CreatedKey(ApiKey):
    """A new API key, the only time its full text (``key``) is ever shown."""

    key: str


class ArchivedMemory(BaseModel):
    """A memory moved to the archive (by gc when its TTL ran out): listable, restorable, purgeable."""

    memory: Memory
    archived_at: datetime
    reason: str


class ArchiveStats(BaseModel):
    """How much sits in the archive, per namespace, and its age range."""

    total: int
    by_namespace: list[NamespaceCount]
    oldest: datetime | None = None
    newest: datetime | None = None


class Conflict(BaseModel):
    """A version replication overwrote while it was concurrent with the winner, kept for review.

    Its ``id`` is derived from the memory id and the loser's stamp, so every node that sees
    the same conflict records it under the same id, and the record itself replicates.
    """

    id: str
    memory_id: str
    namespace: str
    loser: dict[str, Any]
    """The overwritten version's fields (``{"deleted": true, ...}`` for a delete)."""
    version: Version
    """The overwritten version."""


class PeerState(BaseModel):
    """What this node knows of one peer: replication cursors and the last time it answered."""

    node_id: str
    url: str | None = None
    sent_seq: int = 0
    """Our change counter up to which the peer acknowledged our pushes."""
    recv_seq: int = 0
    """The peer's change counter up to which we applied its changes."""
    last_contact: datetime | None = None
    last_error: str | None = None
