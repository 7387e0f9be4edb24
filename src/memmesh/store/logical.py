"""The portable snapshot format (``memmesh-snapshot`` JSON Lines) and the file-level
snapshot a backend writes for a backup.

A backend that can copy its own database file in one consistent step (SQLite's online
backup API) does so; one that cannot (PostgreSQL) writes this logical dump instead, read
inside one consistent transaction. Either way the backend answers with a
:class:`SnapshotInfo`, so the backup code never has to guess the backend from a URL or
open the database behind the store's back. The reader lives in :mod:`memmesh.io.backup`.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from memmesh.clock import format_ts
from memmesh.model import Memory
from memmesh.store.base import Filter, SnapshotInfo, Store, key_rows
from memmesh.store.extra_tables import CARRIED, read_rows

__all__ = ["SnapshotInfo", "write_logical_snapshot"]  # SnapshotInfo lives in store.base; kept importable here

FORMAT_VERSION = 1
SNAPSHOT_FORMAT = "memmesh-snapshot"


def write_logical_snapshot(store: Store, out: Path, *, backend: str, node_id: str, now: datetime) -> SnapshotInfo:
    """Write every memory (history, vector), link, tombstone and archived memory of ``store``
    to ``out``, then the rows of the feature tables a restore carries (``"type": "row"``).
    The caller holds the store's consistent-read transaction around this, so the file is
    one moment. API keys and agents are never written, only their counts (the key count is
    :func:`~memmesh.store.base.key_rows`: a copy holding only the keys-required mark counts too)."""
    memories = links = 0
    with out.open("w", encoding="utf-8") as handle:
        _line(
            handle,
            {
                "type": "header",
                "format": SNAPSHOT_FORMAT,
                "version": FORMAT_VERSION,
                "schema_version": store.schema_version,
                "node_id": node_id,
                "created_at": format_ts(now),
                "api_keys": key_rows(store),  # a copy that holds only the keys-required mark restores closed too
                "agents": len(store.agents()),
            },
        )
        history: dict[str, list[dict[str, Any]]] = {}
        for entry in store.iter_history():
            history.setdefault(entry.memory_id, []).append(entry.model_dump(mode="json"))
        batch: list[Memory] = []
        for memory in store.iter_memories():
            batch.append(memory)
            if len(batch) == 500:
                memories += _memory_lines(handle, store, batch, history)
                batch = []
        memories += _memory_lines(handle, store, batch, history)
        for link in store.iter_links():
            _line(handle, {"type": "link", "link": link.model_dump(mode="json")})
            links += 1
        for tombstone in store.tombstones_since(0):
            _line(handle, {"type": "tombstone", "tombstone": tombstone.model_dump(mode="json"), "history": history.get(tombstone.id, [])})
        for item in store.archived(Filter(now=now, include_expired=True), 10**9):
            _line(handle, {"type": "archived", "archived": item.model_dump(mode="json")})
        for table in CARRIED:  # subscriptions, inboxes, extraction slots: see memmesh.io.extras
            for values in read_rows(store, table):
                _line(handle, {"type": "row", "table": table, "row": list(values)})
        handle.flush()
        os.fsync(handle.fileno())
    return SnapshotInfo(backend=backend, schema_version=store.schema_version, memories=memories, links=links)


def _memory_lines(handle: IO[str], store: Store, batch: list[Memory], history: dict[str, list[dict[str, Any]]]) -> int:
    vectors = {row.memory_id: row for row in store.get_vectors([m.id for m in batch])}
    for memory in batch:
        record: dict[str, Any] = {"type": "memory", "memory": memory.model_dump(mode="json"), "history": history.get(memory.id, [])}
        row = vectors.get(memory.id)
        if row is not None:
            data = np.ascontiguousarray(row.vector, dtype=np.float32).tobytes()
            record["vector"] = {"model": row.model, "float32": base64.b64encode(data).decode()}
        _line(handle, record)
    return len(batch)


def _line(handle: IO[str], record: dict[str, Any]) -> None:
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
