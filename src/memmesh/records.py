"""The write rules, applied to whole records that arrive without a write: restored snapshots.

A write builds its record from checked input, so a stored memory always satisfies the
rules of :mod:`memmesh.model` and :class:`memmesh.service.Service`. A snapshot hands over
finished records instead, and a snapshot can be edited (its manifest recomputed to match).
:func:`memory_problems` and friends hold such a record to the same rules a write follows
(namespace syntax, text, sizes, ranges, a ``content_hash`` that matches the content) plus
one a write gets for free: no clock in the future. A record stamped ``updated_at: 2999``
would win every later merge, so a time more than ``max_clock_skew`` ahead of now is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from memmesh.errors import InvalidInputError
from memmesh.kernel import content_hash
from memmesh.model import (
    ID_CHARS,
    MAX_AGENT_ID_CHARS,
    MAX_SOURCE_CHARS,
    MAX_TITLE_CHARS,
    ArchivedMemory,
    HistoryEntry,
    Link,
    Memory,
    Tombstone,
    Version,
    check_metadata,
    normalize_namespace,
    normalize_tags,
    text_problem,
)

HLC_TEXT = re.compile(r"[0-9]{13}\.[0-9]{5}")


@dataclass(frozen=True)
class RecordRules:
    """The limits a restored record is held to (from configuration, like a write's)."""

    now: datetime
    max_content_bytes: int = 65_536
    max_clock_skew: timedelta = timedelta(minutes=5)

    @property
    def latest(self) -> datetime:
        """The latest time a record may carry."""
        return self.now + self.max_clock_skew


def memory_problems(memory: Memory, rules: RecordRules) -> list[str]:
    """Every rule ``memory`` breaks, each said so a person can see what is wrong (empty: fine)."""
    problems = _id_problems(memory.id) + _namespace_problems(memory.namespace)
    for name in ("content", "title", "source", "agent_id", "tags"):
        problem = text_problem(getattr(memory, name))
        if problem:
            problems.append(f"{name} {problem}")
    if not memory.content.strip():
        problems.append("content is empty")
    size = len(memory.content.encode("utf-8", "surrogatepass"))
    if size > rules.max_content_bytes:
        problems.append(f"content is {size} bytes; the limit is {rules.max_content_bytes} (limits.max_content_bytes)")
    if memory.title is not None and len(memory.title) > MAX_TITLE_CHARS:
        problems.append(f"title is {len(memory.title)} characters; the limit is {MAX_TITLE_CHARS}")
    if len(memory.source) > MAX_SOURCE_CHARS:
        problems.append(f"source is {len(memory.source)} characters; the limit is {MAX_SOURCE_CHARS}")
    if memory.agent_id is not None and len(memory.agent_id) > MAX_AGENT_ID_CHARS:
        problems.append(f"agent_id is {len(memory.agent_id)} characters; the limit is {MAX_AGENT_ID_CHARS}")
    problems += _tag_problems(memory.tags) + _metadata_problems(memory.metadata)
    if not 1 <= memory.priority <= 10:
        problems.append(f"priority {memory.priority} is outside 1-10")
    if not 0.0 <= memory.confidence <= 1.0:
        problems.append(f"confidence {memory.confidence} is outside 0-1")
    if not problems and memory.content_hash != content_hash(memory.namespace, memory.content):
        problems.append("content_hash does not match the namespace and content (the record was edited)")
    times = {"created_at": memory.created_at, "updated_at": memory.updated_at, "last_accessed_at": memory.last_accessed_at}
    return problems + _future(times, rules) + _version_problems(memory.version, rules)


def tombstone_problems(tombstone: Tombstone, rules: RecordRules) -> list[str]:
    """The rules a deletion record breaks."""
    problems = _id_problems(tombstone.id) + _namespace_problems(tombstone.namespace)
    return problems + _future({"deleted_at": tombstone.deleted_at}, rules) + _version_problems(tombstone.version, rules)


def link_problems(link: Link, rules: RecordRules) -> list[str]:
    """The rules a link breaks (its ends are checked as memories)."""
    problems = _id_problems(link.source_id) + _id_problems(link.target_id)
    if link.source_id == link.target_id:
        problems.append("a memory cannot link to itself")
    return problems + _future({"created_at": link.created_at}, rules)


def history_problems(entry: HistoryEntry, rules: RecordRules) -> list[str]:
    """The rules a history entry breaks."""
    problem = text_problem([entry.old, entry.new, entry.actor])
    return ([f"text {problem}"] if problem else []) + _future({"at": entry.at}, rules)


def archived_problems(item: ArchivedMemory, rules: RecordRules) -> list[str]:
    """The rules an archived memory breaks: those of a memory, and a sane archive time."""
    return memory_problems(item.memory, rules) + _future({"archived_at": item.archived_at}, rules)


def _id_problems(value: str) -> list[str]:
    return [] if ID_CHARS.fullmatch(value) else [f"id {value[:40]!r} is not 1-128 characters of ASCII letters, digits and . _ : @ -"]


def _namespace_problems(namespace: str) -> list[str]:
    try:
        if normalize_namespace(namespace) != namespace:
            return [f"namespace {namespace!r} has surrounding spaces"]
    except InvalidInputError as exc:
        return [exc.message]
    return []


def _tag_problems(tags: list[str]) -> list[str]:
    try:
        if normalize_tags(list(tags)) != list(tags):
            return ["tags are not normalised (lower-case, trimmed, unique)"]
    except InvalidInputError as exc:
        return [exc.message]
    return []


def _metadata_problems(metadata: dict[str, object]) -> list[str]:
    try:
        check_metadata(metadata)
    except InvalidInputError as exc:
        return [exc.message]
    problem = text_problem(metadata)
    return [f"metadata {problem}"] if problem else []


def _future(times: dict[str, datetime | None], rules: RecordRules) -> list[str]:
    latest = rules.latest
    problems = []
    for name, moment in times.items():
        if moment is None:
            continue
        if moment.tzinfo is None or moment.utcoffset() is None:  # comparing it would raise TypeError
            problems.append(f"{name} {moment.isoformat()} has no UTC offset; every time must carry one (e.g. +00:00)")
        elif moment > latest:
            problems.append(
                f"{name} {moment.isoformat()} is in the future (more than {rules.max_clock_skew} after now); it would win every later merge"
            )
    return problems


def _version_problems(version: Version, rules: RecordRules) -> list[str]:
    if not version.hlc:
        return []
    if not HLC_TEXT.fullmatch(version.hlc):
        return [f"version.hlc {version.hlc[:40]!r} is not a hybrid logical timestamp (<ms:13>.<counter:5>)"]
    if int(version.hlc.partition(".")[0]) > int(rules.latest.timestamp() * 1000):
        return [f"version.hlc {version.hlc} is in the future (more than {rules.max_clock_skew} after now); it would win every later merge"]
    return []
