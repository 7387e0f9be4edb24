"""Column lists and row ↔ model mapping, shared by both SQL backends.

Each mapper takes the backend's :class:`~memmesh.store.sql.dialect.Dialect`, which knows how
its driver returns JSON and timestamps (SQLite: text; psycopg: decoded values); pydantic
parses either form of timestamp, so only JSON needs the dialect.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from memmesh.model import Agent, ArchivedMemory, Conflict, HistoryEntry, Link, Memory, PeerState, Tombstone
from memmesh.store.sql.dialect import Dialect
from memmesh.store.sql.history_codec import pack, unpack

MEMORY_FIELDS = (
    "id",
    "namespace",
    "title",
    "content",
    "tier",
    "kind",
    "tags",
    "priority",
    "confidence",
    "source",
    "agent_id",
    "metadata",
    "created_at",
    "updated_at",
    "expires_at",
    "valid_from",
    "valid_to",
    "access_count",
    "last_accessed_at",
    "content_hash",
    "version",
)
MEMORY_COLUMNS = ", ".join(MEMORY_FIELDS)
N_MEMORY = len(MEMORY_FIELDS)
"""Rows selected with MEMORY_COLUMNS carry any extra column (rowid, rank) at this index."""
_JSON_FIELDS = ("tags", "metadata", "version")
LINK_FIELDS = ("source_id", "target_id", "relation", "valid_from", "valid_until", "observed_by", "created_at")
LINK_COLUMNS = ", ".join(LINK_FIELDS)
LINK_KEY = ("source_id", "target_id", "relation")
LINK_ORDER = "seq, source_id, target_id, relation"
"""Links in change order; links of one change number by their key (deterministic on both backends)."""
TOMBSTONE_FIELDS = ("id", "namespace", "deleted_at", "actor", "version")
TOMBSTONE_COLUMNS = ", ".join(TOMBSTONE_FIELDS)
HISTORY_FIELDS = ("memory_id", "event", "old", "new", "actor", "at")
HISTORY_COLUMNS = ", ".join(HISTORY_FIELDS)
AGENT_FIELDS = ("agent_id", "display_name", "role", "namespaces", "created_at", "updated_at")
AGENT_COLUMNS = ", ".join(AGENT_FIELDS)
KEY_FIELDS = ("id", "agent_id", "role", "namespaces", "created_at", "revoked_at", "created_by")
KEY_COLUMNS = ", ".join(KEY_FIELDS)
PEER_FIELDS = ("node_id", "url", "sent_seq", "recv_seq", "last_contact", "last_error")
PEER_COLUMNS = ", ".join(PEER_FIELDS)
CONFLICT_FIELDS = ("id", "memory_id", "namespace", "loser", "version")
CONFLICT_COLUMNS = ", ".join(CONFLICT_FIELDS)
ARCHIVE_FIELDS = ("id", "namespace", "archived_at", "reason", "data")


def prefixed(alias: str) -> str:
    """MEMORY_COLUMNS qualified by a table alias."""
    return ", ".join(f"{alias}.{name}" for name in MEMORY_FIELDS)


def memory_params(memory: Memory, d: Dialect) -> list[Any]:
    """Column values of a Memory in MEMORY_FIELDS order."""
    return [
        memory.id,
        memory.namespace,
        memory.title,
        memory.content,
        memory.tier.value,
        memory.kind.value,
        d.tags(memory.tags),
        memory.priority,
        memory.confidence,
        memory.source,
        memory.agent_id,
        d.jsonb(memory.metadata),
        d.ts(memory.created_at),
        d.ts(memory.updated_at),
        d.ts(memory.expires_at),
        d.ts(memory.valid_from),
        d.ts(memory.valid_to),
        memory.access_count,
        d.ts(memory.last_accessed_at),
        memory.content_hash,
        d.model_json(memory.version),
    ]


def row_to_memory(row: Sequence[Any], d: Dialect) -> Memory:
    """A Memory from a row selected with MEMORY_COLUMNS (in that order; extra columns ignored)."""
    data = dict(zip(MEMORY_FIELDS, tuple(row)[:N_MEMORY], strict=True))
    for name in _JSON_FIELDS:
        data[name] = d.load_json(data[name])
    return Memory.model_validate(data)


def row_to_link(row: Sequence[Any]) -> Link:
    return Link.model_validate(dict(zip(LINK_FIELDS, row, strict=True)))


def link_params(link: Link, seq: int, d: Dialect) -> list[Any]:
    """LINK_FIELDS values, then ``seq``."""
    return [
        link.source_id,
        link.target_id,
        link.relation.value,
        d.ts(link.valid_from),
        d.ts(link.valid_until),
        link.observed_by,
        d.ts(link.created_at),
        seq,
    ]


def row_to_tombstone(row: Sequence[Any], d: Dialect) -> Tombstone:
    mid, namespace, deleted_at, actor, version = row
    return Tombstone(id=mid, namespace=namespace, deleted_at=deleted_at, actor=actor, version=d.load_json(version))


def row_to_history(row: Sequence[Any], d: Dialect) -> HistoryEntry:
    """A history row as written: a packed snapshot (schema 19) is unpacked (store.sql.history_codec)."""
    memory_id, event, old, new, actor, at = row
    when = d.load_ts(at)
    return HistoryEntry(
        memory_id=memory_id,
        event=event,
        old=unpack(d.load_json(old), memory_id, when),
        new=unpack(d.load_json(new), memory_id, when),
        actor=actor,
        at=when,
    )


def history_params(entry: HistoryEntry, d: Dialect) -> tuple[Any, ...]:
    """The INSERT values of a history entry; snapshots packed when that loses nothing."""
    return history_row(entry, d)[0]


def history_row(entry: HistoryEntry, d: Dialect) -> tuple[tuple[Any, ...], str | None, str | None]:
    """The INSERT values of a history entry and the JSON text stored for ``old`` and ``new``
    (None for NULL). Encoded once here and bound as text (``json_raw``), so the audit's
    digest of the change hashes these very bytes instead of encoding the change again."""
    stored_at = d.ts(entry.at)
    back = d.load_ts(stored_at)  # ``at`` as reads will see it: what the packed form rebuilds from
    old, new = (_json_text(pack(value, entry.memory_id, back)) for value in (entry.old, entry.new))
    params = (entry.memory_id, entry.event.value, _raw(d, old), _raw(d, new), entry.actor, stored_at)
    return params, old, new


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if not value and type(value) in (list, dict):
        return "[]" if type(value) is list else "{}"
    return json.dumps(value, ensure_ascii=False, default=str)


def _raw(d: Dialect, text: str | None) -> Any:
    return None if text is None else d.json_raw(text)


def row_to_agent(row: Sequence[Any], d: Dialect) -> Agent:
    agent_id, display_name, role, namespaces, created_at, updated_at = row
    return Agent(
        agent_id=agent_id,
        display_name=display_name,
        role=role,
        namespaces=d.load_json(namespaces),
        created_at=created_at,
        updated_at=updated_at,
    )


def key_fields(row: Sequence[Any], d: Dialect) -> dict[str, Any]:
    """The ApiKey fields of a row selected with KEY_COLUMNS (its first columns)."""
    fields = dict(zip(KEY_FIELDS, tuple(row)[: len(KEY_FIELDS)], strict=True))
    return {**fields, "namespaces": d.load_json(fields["namespaces"])}


def row_to_peer(row: Sequence[Any]) -> PeerState:
    return PeerState.model_validate(dict(zip(PEER_FIELDS, row, strict=True)))


def row_to_conflict(row: Sequence[Any], d: Dialect) -> Conflict:
    cid, memory_id, namespace, loser, version = row
    return Conflict(id=cid, memory_id=memory_id, namespace=namespace, loser=d.load_json(loser), version=d.load_json(version))


def row_to_archived(row: Sequence[Any], d: Dialect) -> ArchivedMemory:
    """From ``data, archived_at, reason``."""
    data, archived_at, reason = row
    return ArchivedMemory(memory=Memory.model_validate(d.load_json(data)), archived_at=archived_at, reason=reason)
