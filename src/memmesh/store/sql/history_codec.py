"""How a history entry's ``old``/``new`` snapshot is stored: a positional array, not a keyed copy.

Why: the ``add`` event (and ``delete``, ``archive``, ``restore``) records the whole memory,
and as a keyed JSON object that was ~820 bytes per memory, a third of the store's disk
(issue 21). Most of those bytes are predictable: the 18 key names, the id (it is the entry's
``memory_id``), the content hash (sha256 of namespace and content), ``updated_at`` (equal to
``created_at`` on an add) and ``created_at`` (equal to the entry's ``at`` on a local add).

The packed form is a JSON array ``[1, id, namespace, …, content_hash]`` holding the values of
:data:`SNAPSHOT_KEYS` in order, ``0`` standing for a value rebuilt from the entry, plus one
trailing object when the snapshot carries keys after those (``restored_from``). ``old`` and
``new`` are always objects in the model, so an array is unambiguous, and plain objects (every
row written before schema 19, and every value that does not fit) are read as they are.

The rule that keeps answers exact: a value is packed only when unpacking it gives back the
very same dict, key order included (checked at write time, with ``at`` as the store will
return it). Anything else is stored as before. So every reader (``history``, the feed's
``SyncItem.history``, backup, migrate, the audit digest) sees what was written, byte for byte
once serialised, and the codec is a storage detail of ``store.sql`` alone.

The key list is frozen as format ``1``: a field added to ``Memory`` later makes new snapshots
not match it (they are stored keyed, still exact) until a format ``2`` is added here.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from memmesh.clock import parse_ts

FORMAT = 1
SNAPSHOT_KEYS = (
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
    "content_hash",
)
"""The keys of a memory snapshot (``kernel.snapshot``) in the order it writes them (format 1)."""

_ID, _NAMESPACE, _CONTENT = 1, 2, 4
_CREATED, _UPDATED, _HASH = 13, 14, 18
_WIDTH = len(SNAPSHOT_KEYS) + 1
_SAME = 0
"""Stands for a value rebuilt from the entry: every field it replaces holds a string."""

_dump_datetime = TypeAdapter(datetime).dump_python


def iso_at(at: datetime) -> str:
    """An entry's ``at`` as a snapshot writes a UTC timestamp (pydantic's JSON form)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # what every backend takes a naive timestamp for
    return str(_dump_datetime(at.astimezone(UTC), mode="json"))


def _content_hash(namespace: Any, content: Any) -> str | None:
    if not isinstance(namespace, str) or not isinstance(content, str):
        return None
    return hashlib.sha256(f"{namespace}\n{content}".encode()).hexdigest()


_text = json.JSONEncoder(ensure_ascii=False, default=str).encode


def _is_same(value: Any) -> bool:
    return type(value) is int and value == _SAME


def unpack(value: Any, memory_id: str, at: datetime) -> Any:
    """The stored ``old``/``new`` value as the dict that was written (a plain value as is)."""
    if not isinstance(value, list) or len(value) not in (_WIDTH, _WIDTH + 1) or value[0] != FORMAT:
        return value
    fields = list(value[1:_WIDTH])
    if _is_same(fields[_ID - 1]):
        fields[_ID - 1] = memory_id
    if _is_same(fields[_CREATED - 1]):
        fields[_CREATED - 1] = iso_at(at)
    if _is_same(fields[_UPDATED - 1]):
        fields[_UPDATED - 1] = fields[_CREATED - 1]
    if _is_same(fields[_HASH - 1]):
        fields[_HASH - 1] = _content_hash(fields[_NAMESPACE - 1], fields[_CONTENT - 1])
    snapshot = dict(zip(SNAPSHOT_KEYS, fields, strict=True))
    if len(value) > _WIDTH and isinstance(value[_WIDTH], dict):
        snapshot.update(value[_WIDTH])
    return snapshot


def pack(value: dict[str, Any] | None, memory_id: str, at: datetime) -> Any:
    """The value to store for a snapshot: packed when that gives back exactly ``value``.

    ``at`` must be the entry's time as the store will return it: ``created_at`` is left
    out only when it equals that (a naive ``at`` never counts: backends differ on its zone).
    """
    if not isinstance(value, dict) or len(value) < len(SNAPSHOT_KEYS):
        return value
    keys = list(value)
    if tuple(keys[: len(SNAPSHOT_KEYS)]) != SNAPSHOT_KEYS:
        return value
    fields = [value[key] for key in SNAPSHOT_KEYS]
    if fields[_ID - 1] == memory_id:
        fields[_ID - 1] = _SAME
    if fields[_HASH - 1] == _content_hash(value["namespace"], value["content"]):
        fields[_HASH - 1] = _SAME
    if value["updated_at"] == value["created_at"]:
        fields[_UPDATED - 1] = _SAME
    if at.tzinfo is not None and value["created_at"] == iso_at(at):
        fields[_CREATED - 1] = _SAME
    packed: list[Any] = [FORMAT, *fields]
    extras = {key: value[key] for key in keys[len(SNAPSHOT_KEYS) :]}
    if extras:
        packed.append(extras)
    unpacked = unpack(packed, memory_id, at)
    if _text(unpacked) != _text(value):  # JSON text, not ==: 1 == 1.0 == True would pass
        return value  # something about it does not fit the format: keep the keyed copy
    return packed


def repack_text(memory_id: str, at: str, text: str | None) -> str | None:
    """A stored keyed snapshot (SQLite JSON text) packed, for migration 0019; other text as is.

    The SQL function ``memmesh_history_pack`` memmesh registers on its SQLite connections.
    """
    if not text or not text.startswith("{"):
        return text
    value = json.loads(text)
    packed = pack(value, memory_id, parse_ts(at))
    return text if packed is value else json.dumps(packed, ensure_ascii=False, default=str)
