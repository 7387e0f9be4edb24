"""The values that cross layers: memories, links, history, hits, stats.

Static rules (namespace syntax, tag normalisation, ranges) live on these pydantic models,
so every face gets the same checks; limits that come from configuration (content size,
page size) are checked by the service. This module imports nothing of memmesh but errors.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, field_validator

from memmesh.errors import InvalidInputError

NAMESPACE_SEGMENT = re.compile(r"[A-Za-z0-9._:@-]+")
"""One namespace segment, always used with ``fullmatch`` (``$`` would let ``"a\\n"`` through)."""
DOT_SEGMENTS = (".", "..")
MAX_NAMESPACE_SEGMENTS = 8
MAX_NAMESPACE_CHARS = 255
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_TITLE_CHARS = 512
MAX_SOURCE_CHARS = 256
MAX_AGENT_ID_CHARS = 128
NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
"""A node's id, as version vectors, peers' cursors and ``--node-id`` carry it."""
BUS_AGENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
"""A bus participant's name (sender, recipient, inbox owner), wherever one is checked or carried."""
NODE_ID_RULE = "use letters, digits, '.', '_', ':' or '-' (at most 64)"
"""What :data:`NODE_ID_PATTERN` asks for, in the words of an error."""
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 32
"""Objects and lists nested inside metadata, at most. JSON parsers take ~1,000 levels, but a
memory's metadata is dumped again inside history entries, exports, snapshots and the sync feed,
whose serialiser stops at 255 levels in all: 255 levels of ``[`` (0.5 KB, far under the size
limit) made one memory's history, every export, restore and migration of the store and its
peers' sync fail."""
MAX_TTL_SECONDS = 100 * 366 * 86400
"""A TTL of about a century; longer would overflow date arithmetic (and means: keep it, tier long)."""
DEFAULT_NAMESPACE = "default"
ID_CHARS = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
"""A client-chosen memory id, always used with ``fullmatch``."""

_SEGMENT_PATTERN = r"(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\.\.[A-Za-z0-9._:@-]+)"
NAMESPACE_PATTERN = rf"^{_SEGMENT_PATTERN}(?:/{_SEGMENT_PATTERN}){{0,{MAX_NAMESPACE_SEGMENTS - 1}}}$"
"""The namespace rule as a JSON-schema pattern (no look-ahead, so every engine reads it):
1-8 segments, none of them ``.`` or ``..``. :func:`normalize_namespace` is the check itself."""
ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
_TAG_UNSAFE_CHARS = r"\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff"
TAG_PATTERN = rf"^[^{_TAG_UNSAFE_CHARS}]*$"
"""A new tag's characters as a JSON-schema pattern: no C0/C1 control (line breaks, ESC), bidi
mark or override, zero-width space, word joiner or line/paragraph separator."""
_TAG_UNSAFE = re.compile(rf"[{_TAG_UNSAFE_CHARS}]")
NON_BLANK_PATTERN = r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
"""Holds a character that is white space neither to Python's ``str.strip`` (which the service
uses: it counts \\x1c-\\x1f as space) nor to JSON Schema's ECMA ``\\s``: not blank."""
NAMESPACE_GRANT_PATTERN = rf"^(?:\*|{_SEGMENT_PATTERN}(?:/{_SEGMENT_PATTERN}){{0,{MAX_NAMESPACE_SEGMENTS - 1}}}(?:/\*)?)$"
"""A namespace pattern of a key or agent: ``*``, ``team`` or ``team/*``."""

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


TURN_PREFIX_RE = re.compile(r"\[turn (\d+)\] ([a-z][a-z0-9_-]{0,31}): ", re.S)
"""How a session turn's memory (kind ``message``) begins: ``[turn 12] user: `` then the words.
The number keeps two identical turns apart; it is not part of what the turn says."""


def turn_words(content: str) -> str:
    """What a session turn says, without its ``[turn N] role:`` prefix (other text as it is)."""
    match = TURN_PREFIX_RE.match(content)
    return content[match.end() :] if match else content


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
        raise InvalidInputError("namespace must be a string such as 'team/project'", field="namespace")
    ns = value.strip()
    if not ns:
        raise InvalidInputError("namespace is empty: give a path such as 'team/project'", field="namespace")
    if len(ns) > MAX_NAMESPACE_CHARS:
        raise InvalidInputError(f"namespace is {len(ns)} characters; the limit is {MAX_NAMESPACE_CHARS}", field="namespace")
    segments = ns.split("/")
    if len(segments) > MAX_NAMESPACE_SEGMENTS:
        raise InvalidInputError(f"namespace {ns!r} has {len(segments)} segments; the limit is {MAX_NAMESPACE_SEGMENTS}", field="namespace")
    for segment in segments:
        if not NAMESPACE_SEGMENT.fullmatch(segment):
            raise InvalidInputError(
                f"namespace {ns!r} is invalid: each '/'-separated segment must be non-empty "
                "and use only ASCII letters, digits and . _ : @ -",
                field="namespace",
            )
        if segment in DOT_SEGMENTS:
            raise InvalidInputError(
                f"namespace {ns!r} is invalid: a segment may not be '.' or '..' (namespaces are names, not paths)", field="namespace"
            )
    return ns


def text_problem(value: Any) -> str | None:
    """What makes ``value`` (a string, or strings inside lists and objects) unstorable, or None.

    A lone UTF-16 surrogate (JSON ``"\\ud800"``) is not Unicode text: UTF-8, SQLite and
    PostgreSQL all refuse it, so it is refused here, at the boundary, with the field named,
    instead of failing deep in a write. NUL is refused for the same reason (PostgreSQL text).
    """
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\u0000), which memmesh text may not hold (PostgreSQL cannot store it); remove it"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            where = f"(\\u{ord(bad):04x}) at position {exc.start}"
            return f"contains a lone UTF-16 surrogate {where}, which is not valid Unicode text; send UTF-8 text"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key) or text_problem(item)
            if problem:
                return f"{key!r}: {problem}" if isinstance(key, str) and not text_problem(key) else problem
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = text_problem(item)
            if problem:
                return f"item {index} {problem}"
    return None


def check_text(value: Any, name: str) -> Any:
    """``value`` unchanged, or an InvalidInputError naming ``name`` when it holds unstorable text."""
    problem = text_problem(value)
    if problem:
        raise InvalidInputError(f"{name} {problem}", field=name)
    return value


NOT_UNICODE = "is not valid Unicode text (it holds a lone UTF-16 surrogate such as \\ud800); send UTF-8 text"
"""What pydantic's ``string_unicode`` error means, said so a caller knows what to fix."""


_NUMBER_TEXT = re.compile(r"\s*[-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?\s*")
"""Text pydantic would read as a Unix timestamp ("0" = 1970): refused like a number."""


def _not_a_number(value: Any) -> Any:
    """Times are RFC 3339 text (or datetimes): a bare number such as 0 is refused, not read as 1970."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and _NUMBER_TEXT.fullmatch(value)):
        raise ValueError("give an RFC 3339 time such as 2026-01-31T12:00:00Z, not a number")
    return value


def _in_utc(value: datetime) -> datetime:
    """Naive times are taken as UTC (as everywhere in memmesh); all times are kept in UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Timestamp = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(_in_utc)]
"""A time given by a caller: RFC 3339 text or a datetime, never a number; returned in UTC."""


def _json_number(value: Any) -> Any:
    """Numbers must arrive as JSON numbers: ``true`` and ``"5"`` are refused, not coerced."""
    if isinstance(value, bool):
        raise ValueError("give a number, not true/false")
    if isinstance(value, str | bytes):
        raise ValueError("give a number, not text")
    return value


# JSON integers and numbers with their ranges: ``true`` and ``"5"`` are refused (``retain:
# true`` must not mean 1); ``5.0`` is 5, as JSON Schema counts it an integer; ``5.5`` is not.
# The range goes before the validator in each chain: placed after it (or on the field),
# pydantic writes it to the JSON schema as "ge"/"le", which no client reads.
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_json_number)]
Priority = Annotated[int, Field(ge=1, le=10), BeforeValidator(_json_number)]
Confidence = Annotated[float, Field(ge=0.0, le=1.0), BeforeValidator(_json_number)]
TtlSeconds = Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS), BeforeValidator(_json_number)]
JsonNumber = BeforeValidator(_json_number)
"""The same refusal for a range of a face's own: ``Annotated[int, Field(ge=1, le=N), JsonNumber]``."""
StrictBool = Annotated[bool, Strict()]
"""``true`` or ``false`` only: ``1`` and ``"yes"`` are refused."""


def normalize_tags(values: list[str] | None) -> list[str]:
    """Lower-case, trim and de-duplicate tags (order kept); enforce count and length."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [part for part in values.split(",")]
    return _normalize_tag_list(values)


def _normalize_tag_list(values: Any) -> list[str]:
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


def _json_problem(value: Any, path: str, depth: int = 0) -> str | None:
    """What is wrong with the first infinite or NaN number, or the first container nested
    deeper than MAX_METADATA_DEPTH, inside ``value`` (named by its path), if anything."""
    if isinstance(value, float) and not math.isfinite(value):  # JSON has none: 1e400 parses as inf, stored as null
        return f"{path} is {value!r}, not a finite number; JSON numbers must be finite (no 1e400, Infinity or NaN)"
    if isinstance(value, dict):
        items: Any = ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    if depth > MAX_METADATA_DEPTH:
        return f"{path} is nested {depth} levels deep; metadata may nest objects and lists {MAX_METADATA_DEPTH} levels at most"
    for where, item in items:
        found = _json_problem(item, where, depth + 1)
        if found is not None:
            return found
    return None


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any]:
    """Metadata must be a JSON object of at most 16 KiB once serialised, nested at most
    MAX_METADATA_DEPTH levels."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError('metadata must be a JSON object, e.g. {"source_url": "..."}')
    bad = _json_problem(value, "metadata")
    if bad is not None:
        raise InvalidInputError(bad)
    try:
        size = len(json.dumps(value, ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata is not JSON-serialisable: {exc}") from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidInputError(f"metadata is {size} bytes serialised; the limit is {MAX_METADATA_BYTES}")
    return value


class Input(BaseModel):
    """Base of every input model (service inputs and the HTTP bodies): an unknown field is an
    error, never silently ignored, and no text anywhere in it may hold a lone surrogate or NUL."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _not_bytes(cls, value: Any) -> Any:
        if isinstance(value, bytes | bytearray):
            raise ValueError(BYTES_NOT_TEXT)
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
        return value


_Strict = Input

BYTES_NOT_TEXT = "bytes, not text: pass a str (decode the bytes first, e.g. data.decode('utf-8'))"
"""Why a bytes value is refused where text is expected: pydantic would decode it silently,
storing whatever the bytes spell in UTF-8; the caller decides how they are text."""


def batch_items(items: Any) -> list[Any]:
    """The items of an ``add_many``: a list (any iterable but a string, bytes or one dict) of
    texts and dicts (or :class:`NewMemory`); a text stands for ``{"content": text}``. A string
    given whole would otherwise be stored one character per memory."""
    if isinstance(items, str | bytes | bytearray | Mapping | BaseModel) or not hasattr(items, "__iter__"):
        raise InvalidInputError(
            f"add_many takes a list of texts or dicts with 'content' (got {type(items).__name__}); "
            "to store one text, call add() or pass [text]",
            usage=True,
        )
    out: list[Any] = []
    for n, item in enumerate(items):
        if isinstance(item, bytes | bytearray):
            raise InvalidInputError(f"add_many item {n} is {BYTES_NOT_TEXT}")
        if not isinstance(item, str | Mapping | BaseModel):
            raise InvalidInputError(f"add_many item {n} is of type {type(item).__name__}: give a text or a dict with 'content'")
        out.append({"content": item} if isinstance(item, str) else item)
    return out


def _tag_list(value: Any) -> list[str]:
    """Tags of a memory: a JSON list of strings; a bare string is refused, not split."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidInputError('tags must be a list of strings, e.g. ["project", "urgent"]')
    tags = _normalize_tag_list(value)
    for tag in tags:
        _check_tag_characters(tag)
    return tags


def _check_tag_characters(tag: str) -> None:
    """Refuse control, line-separator and invisible format characters in a new tag.

    A tag is a label shown on one line (CLI tables, the inspector, logs) and matched
    exactly: a line break, an escape sequence or a bidi override (U+202E) in it forges
    output or makes two tags that look the same differ. Only new writes are checked, so
    backups and replicas holding such a tag still restore. Zero-width joiners stay allowed
    (emoji sequences and Indic scripts need them)."""
    check_one_line(tag, f"tag {tag[:20]!r}", "tags are one-line labels")


def check_one_line(text: str, what: str, why: str) -> None:
    """Refuse a control, line-separator or invisible format character in ``text`` (a label
    shown on one line: a tag, a speaker's name), naming ``what`` and saying ``why``."""
    found = _TAG_UNSAFE.search(text)
    if found is not None:
        raise InvalidInputError(
            f"{what} contains the control or invisible character U+{ord(found.group()):04X} at position {found.start()}; {why}: remove it"
        )


def _check_title(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_TITLE_CHARS:
        raise ValueError(f"title is {len(value)} characters; the limit is {MAX_TITLE_CHARS}")
    return value or None


Content = Annotated[str, Field(description="the text to remember", json_schema_extra={"minLength": 1, "pattern": NON_BLANK_PATTERN})]
NamespaceText = Annotated[
    str,
    Field(
        description="'/'-separated namespace, e.g. team/project",
        json_schema_extra={"maxLength": MAX_NAMESPACE_CHARS, "pattern": NAMESPACE_PATTERN},
    ),
]
TitleText = Annotated[str, Field(json_schema_extra={"maxLength": MAX_TITLE_CHARS})]
TagList = Annotated[
    list[Annotated[str, Field(json_schema_extra={"maxLength": MAX_TAG_CHARS, "pattern": TAG_PATTERN})]],
    Field(json_schema_extra={"maxItems": MAX_TAGS}),
]


class Version(BaseModel):
    """Replication version: vector clock, writing node and hybrid logical timestamp."""

    clock: dict[str, int] = Field(default_factory=dict)
    node: str = ""
    hlc: str = Field(default="", pattern=r"^(\d{13}\.\d{5})?$")


class NewMemory(_Strict):
    """What a caller may send to store a memory."""

    content: Content
    namespace: NamespaceText = DEFAULT_NAMESPACE
    title: TitleText | None = None
    tier: Tier | None = None
    kind: Kind = Kind.fact
    tags: TagList = Field(default_factory=list)
    priority: Priority = 5
    confidence: Confidence = 1.0
    source: str = Field(default="user", max_length=MAX_SOURCE_CHARS)
    agent_id: str | None = Field(default=None, max_length=MAX_AGENT_ID_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, json_schema_extra={"pattern": ID_PATTERN})
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    ttl_seconds: TtlSeconds | None = None
    on_conflict: OnConflict = "error"

    @field_validator("namespace")
    @classmethod
    def _ns(cls, value: str) -> str:
        return normalize_namespace(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str]:
        return _tag_list(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _meta(cls, value: dict[str, Any] | None) -> dict[str, Any]:
        return check_metadata(value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        return _check_title(value)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not ID_CHARS.fullmatch(value):
            raise ValueError("id must be 1-128 characters of ASCII letters, digits and . _ : @ -")
        return value


class MemoryPatch(_Strict):
    """Fields an update may change; ``None`` means leave as is."""

    content: Content | None = None
    title: TitleText | None = None
    namespace: NamespaceText | None = None
    tier: Tier | None = None
    kind: Kind | None = None
    tags: TagList | None = None
    priority: Priority | None = None
    confidence: Confidence | None = None
    metadata: dict[str, Any] | None = None
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    expires_at: Timestamp | None = None

    @field_validator("namespace")
    @classmethod
    def _ns(cls, value: str | None) -> str | None:
        return None if value is None else normalize_namespace(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _tag_list(value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        if value is not None and len(value.strip()) > MAX_TITLE_CHARS:
            raise ValueError(f"title is {len(value.strip())} characters; the limit is {MAX_TITLE_CHARS}")
        return value

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
    """Counts of the store (``GET /api/v1/stats``, ``memmesh stats``; docs/http.md)."""

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
    retention_forgotten: int = 0
    """Memories deleted because their namespace standard's retention_days had passed."""


def parse_model(model: type[ModelT], data: Any, names: Mapping[str, str] | None = None) -> ModelT:
    """Validate ``data`` into ``model``; pydantic errors become one clear InvalidInputError.
    ``names`` spells a field the way the caller set it (``{"on_conflict": "--on-conflict"}``).
    The error's ``field`` is the first bad field as spelt there, so the CLI reports a flag's bad
    value as a usage error whatever pydantic found wrong with it."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc = exc.errors(include_url=False)[0]["loc"]  # the message starts with the first bad field: the error names it
        first = loc[0] if loc else None
        field = (names or {}).get(first, first) if isinstance(first, str) and first in model.model_fields else None
        raise InvalidInputError(describe_validation_error(exc, names), usage=is_usage_error(exc), field=field) from None


USAGE_ERROR_TYPES = frozenset(
    {"enum", "literal_error", "greater_than", "greater_than_equal", "less_than", "less_than_equal", "int_parsing", "float_parsing"}
)
"""Pydantic error types that mean a parameter got a value it never takes (not one of its
choices, out of its range, not a number): a malformed call, not bad data."""


DATETIME_ERROR_TYPES = frozenset(
    {"datetime_parsing", "datetime_from_date_parsing", "datetime_type", "date_parsing", "date_from_datetime_parsing"}
)
"""Pydantic's errors for a time it could not read: said with the format to use instead of its
own words ("input is too short")."""


def is_usage_error(exc: ValidationError) -> bool:
    """Whether every error in ``exc`` is of a :data:`USAGE_ERROR_TYPES` type."""
    return all(err["type"] in USAGE_ERROR_TYPES for err in exc.errors(include_url=False))


def error_words(err: Mapping[str, Any]) -> str:
    """What one pydantic error says, in memmesh's words where pydantic's do not say what to
    fix (every face words a validation error with this)."""
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_unicode":
        return NOT_UNICODE
    if kind in DATETIME_ERROR_TYPES:
        shown = repr(err.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "…"
        return f"{shown} is not a date or time; use ISO 8601, e.g. 2026-12-03 or 2026-12-03T09:30:00Z"
    return str(err.get("msg", "")).removeprefix("Value error, ")


def describe_validation_error(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """One line naming each bad field and what is wrong with it; ``names`` renames top-level
    fields (a command's flags: ``--on-conflict`` for ``on_conflict``)."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        named = ".".join(loc)
        if loc and names and loc[0] in names:
            loc[0] = names[loc[0]]
        where = ".".join(loc) or "input"
        message = error_words(err)
        if named and message.startswith(f"{named} "):  # a rule's own message names the field: not "namespace: namespace 'x' …"
            parts.append(where + message[len(named) :])
        else:
            parts.append(f"{where}: {message}")
    return "; ".join(parts)


class RecallResult(BaseModel):
    """What recall returns: ranked hits, how many were dropped by the token budget, notices."""

    query: str
    mode: Literal["hybrid", "keyword", "vector"]
    hits: list[Hit]
    dropped: int = 0
    notices: list[str] = Field(default_factory=list)


Role = Literal["reader", "writer", "approver", "admin", "peer"]
_ROLE_RANK = {"peer": -1, "reader": 0, "writer": 1, "approver": 2, "admin": 3}
"""``approver`` is a writer that may also approve or reject pending actions in its
namespaces (governance), without the admin's rights over keys and standards."""
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
    created_by: str | None = None
    """The id of the key that created this one: None when the local caller (the store's owner,
    with no key) made it, or for a key made before memmesh recorded it (lineage unknown). An
    approval is refused when the approver's key descends from a key of the requester."""

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
