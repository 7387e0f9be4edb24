"""Import mem0: its exported memories (JSON) and its SQLite history database.

**Export** — what ``Memory.get_all()`` (or the platform client) returns, saved as JSON:
``{"results": [{"id", "memory", "hash", "metadata", "created_at", "updated_at", "user_id",
"agent_id", "run_id", "actor_id", "role", ...}]}``, or a plain list of such items (mem0
v1.0 and the platform API; the platform adds ``categories``). Each item becomes a memory
with id ``mem0:<digest of base>:<id>`` in ``<base>/<user_id>`` (else ``<base>/agents/<agent_id>``, else
``<base>/runs/<run_id>``, else ``<base>``); its metadata is kept, ``categories`` become
tags, ``memory_type: procedural_memory`` becomes kind ``procedure``, and mem0's own fields
(hash, times, run, actor, role) go to ``metadata.imported_from``.

**History db** — mem0's ``history.db`` (table ``history``: id, memory_id, old_memory,
new_memory, event, created_at, updated_at, is_deleted, actor_id, role), one row per ADD,
UPDATE or DELETE. The latest state of each memory (rows in insertion order) is imported
into ``<base>`` (the table records no user); a memory with a DELETE event is not imported,
and its copy is deleted if an earlier import (say, of the export) brought it in. The same
ids are used, so importing the export and then the history db into one base updates the
same memories in their user namespaces instead of duplicating them.

The base's digest in the ids keeps two bases' imports apart; an older version's
``mem0:<id>`` in the record's namespace (under the base, for the history db) is still found.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from memmesh.errors import InvalidInputError
from memmesh.io.importers.base import IMPORTED_FROM, Candidate, Item, Rejected, Removal, id_part, scoped_id, source_digest

FORMAT_EXPORT = "mem0"
FORMAT_HISTORY = "mem0-history"
DEFAULT_NAMESPACE = "mem0"
HISTORY_COLUMNS = ("memory_id", "old_memory", "new_memory", "event")
_OPTIONAL_HISTORY_COLUMNS = ("created_at", "updated_at", "is_deleted", "actor_id", "role")
_SOURCE_FIELDS = ("hash", "created_at", "updated_at", "run_id", "actor_id", "role", "user_id")


def memory_id(mem0_id: str, base: str) -> str:
    """The memmesh id of a mem0 memory imported under ``base`` (the same for the export and
    the history db): ``mem0:<digest of base>:<id part>``."""
    return scoped_id("mem0", base, id_part(mem0_id, 100))


def legacy_memory_id(mem0_id: str) -> str:
    """The id versions before namespace-derived ids gave a mem0 memory (found, not written)."""
    return f"mem0:{id_part(mem0_id, 100)}"


def export_records(data: Any) -> list[Any]:
    """The memory items of an export (``{"results": [...]}``, ``{"memories": [...]}`` or a list)."""
    if isinstance(data, dict):
        for key in ("results", "memories"):
            if isinstance(data.get(key), list):
                return list(data[key])
    if isinstance(data, list):
        return data
    raise InvalidInputError('not a mem0 export: expected {"results": [...]} or a list of memories')


def looks_like_export(data: Any) -> bool:
    """True when parsed JSON has mem0's export shape (used by format auto-detection): one
    record of the first 20 with an id and a ``memory`` is enough, so that an export with a bad
    record is still imported as mem0's, that record failed by its position (a whole-file JSON
    document is never memmesh's JSON Lines, which the other branch would have read it as)."""
    try:
        records = export_records(data)
    except InvalidInputError:
        return False
    return any(isinstance(r, dict) and "id" in r and "memory" in r for r in records[:20])


def namespace_for(base: str, record: dict[str, Any]) -> str:
    """Where a mem0 memory lands: by user, else agent, else run, else the base namespace."""
    for key, prefix in (("user_id", ""), ("agent_id", "agents/"), ("run_id", "runs/")):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return f"{base}/{prefix}{value.strip()}"
    return base


def plan_export(records: Iterable[Any], base: str, *, tier: str = "long") -> list[Item]:
    """One item per exported memory; malformed ones are Rejected with their position."""
    return [_export_item(record, number, base, tier) for number, record in enumerate(records, start=1)]


def _export_item(record: Any, number: int, base: str, tier: str) -> Item:
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"].strip():
        return Rejected(f"#{number}", base, "not a mem0 memory (needs a string id)")
    key = record["id"]
    namespace = namespace_for(base, record)
    text = record.get("memory")
    if not isinstance(text, str):
        return Rejected(key, namespace, "memory text is missing or not a string")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        return Rejected(key, namespace, "metadata is not a JSON object")
    categories = record.get("categories") or []
    tags = [c for c in categories if isinstance(c, str)] if isinstance(categories, list) else []
    kind = "procedure" if metadata.get("memory_type") == "procedural_memory" else "fact"
    agent = record.get("agent_id") if isinstance(record.get("agent_id"), str) else None
    sha = source_digest(namespace, text, tags, metadata, kind)
    origin = {"format": FORMAT_EXPORT, "id": key, "sha": sha, **{k: record[k] for k in _SOURCE_FIELDS if record.get(k) is not None}}
    fields = {
        "id": memory_id(key, base),
        "namespace": namespace,
        "content": text,
        "tier": tier,
        "kind": kind,
        "tags": tags,
        "source": "import",
        "agent_id": agent,
        "metadata": {**metadata, IMPORTED_FROM: origin},
    }
    return Candidate(key, namespace, fields, sha, legacy_id=legacy_memory_id(key))


def read_history(path: Path, base: str, *, tier: str = "long") -> list[Item]:
    """The latest state of every memory in a mem0 history db (read-only; the file is not changed)."""
    if not path.is_file():
        raise InvalidInputError(f"cannot read {path}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InvalidInputError(f"cannot open {path} as SQLite: {exc}") from None
    try:
        columns = _history_columns(conn, path)
        wanted = [*HISTORY_COLUMNS, *(c for c in _OPTIONAL_HISTORY_COLUMNS if c in columns)]
        rows = conn.execute(f"SELECT {', '.join(wanted)} FROM history ORDER BY rowid").fetchall()
    except sqlite3.Error as exc:
        raise InvalidInputError(f"cannot read the mem0 history in {path}: {exc}") from None
    finally:
        conn.close()
    return _latest_states([dict(zip(wanted, row, strict=True)) for row in rows], base, tier)


def has_history_table(path: Path) -> bool:
    """True when ``path`` is a SQLite file with mem0's ``history`` table (auto-detection)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return set(HISTORY_COLUMNS) <= {row[1] for row in conn.execute("PRAGMA table_info(history)")}
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def _history_columns(conn: sqlite3.Connection, path: Path) -> set[str]:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(history)")}
    missing = [c for c in HISTORY_COLUMNS if c not in columns]
    if missing:
        what = "has no history table" if not columns else f"history table lacks {', '.join(missing)}"
        raise InvalidInputError(f"{path} is not a mem0 history db: it {what}")
    return columns


def _latest_states(rows: list[dict[str, Any]], base: str, tier: str) -> list[Item]:
    states: dict[str, dict[str, Any]] = {}
    for row in rows:
        mem0_id = row["memory_id"]
        if not isinstance(mem0_id, str) or not mem0_id.strip():
            continue
        state = states.setdefault(mem0_id, {"deleted": False, "text": None, "row": row})
        event = str(row.get("event") or "").upper()
        if event == "DELETE" or row.get("is_deleted") in (1, "1", True):
            state["deleted"] = True
        elif event in ("ADD", "UPDATE") and isinstance(row.get("new_memory"), str):
            state["text"], state["row"] = row["new_memory"], row
    items: list[Item] = []
    for mem0_id, state in states.items():
        if state["deleted"]:
            items.append(Removal(mem0_id, base, memory_id(mem0_id, base), legacy_memory_id(mem0_id)))
        elif state["text"] is None:
            items.append(Rejected(mem0_id, base, "no ADD or UPDATE with memory text in its history"))
        else:
            items.append(_history_item(mem0_id, state["text"], state["row"], base, tier))
    return items


def _history_item(mem0_id: str, text: str, row: dict[str, Any], base: str, tier: str) -> Item:
    sha = source_digest(text)
    origin = {
        "format": FORMAT_HISTORY,
        "id": mem0_id,
        "sha": sha,
        "namespace_unknown": True,
        **{k: row[k] for k in ("created_at", "updated_at", "actor_id", "role") if row.get(k) is not None},
    }
    fields = {
        "id": memory_id(mem0_id, base),
        "namespace": base,
        "content": text,
        "tier": tier,
        "kind": "fact",
        "tags": [],
        "source": "import",
        "metadata": {IMPORTED_FROM: origin},
    }
    return Candidate(mem0_id, base, fields, sha, keep_namespace=True, legacy_id=legacy_memory_id(mem0_id))


__all__ = [
    "DEFAULT_NAMESPACE",
    "FORMAT_EXPORT",
    "FORMAT_HISTORY",
    "export_records",
    "has_history_table",
    "legacy_memory_id",
    "looks_like_export",
    "memory_id",
    "namespace_for",
    "plan_export",
    "read_history",
]
