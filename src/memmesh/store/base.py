"""The storage contract every backend implements, and the URL → backend dispatch.

A store keeps memories, their vectors, links, history, tombstones and the archive, and
nothing more: ids, hashes, versions, validation and rules are the service's job. Writes go
through :meth:`Store.write`, a serialised transaction (one writer at a time across every
process sharing the database), so the service can check-then-write atomically.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from memmesh.errors import InvalidInputError
from memmesh.model import HistoryEntry, Link, Memory, Stats, Tombstone


@dataclass(frozen=True)
class Filter:
    """Which memories a read may see.

    ``namespace`` matches itself and everything below it; ``scopes`` (the caller's allowed
    namespace roots, None = all) does the same for any of several roots.
    """

    now: datetime
    namespace: str | None = None
    scopes: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    tier: str | None = None
    kind: str | None = None
    agent_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    as_of: datetime | None = None
    include_expired: bool = False
    ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class VectorRow:
    """A stored embedding and the change sequence number it was written at."""

    memory_id: str
    model: str
    vector: np.ndarray


@dataclass
class VectorChanges:
    """What changed in the vector table since a sequence number, for keeping an index in step."""

    upserts: list[VectorRow] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seq: int = 0


class WriteTx(Protocol):
    """Primitive operations inside one serialised write transaction."""

    def next_seq(self) -> int: ...
    def get(self, memory_id: str) -> Memory | None: ...
    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None: ...
    def find_by_title(self, namespace: str, title: str) -> Memory | None: ...
    def insert_memory(self, memory: Memory, seq: int) -> None: ...
    def update_memory(self, memory: Memory, seq: int) -> None: ...
    def delete_memory(self, tombstone: Tombstone, seq: int) -> None: ...
    def tombstone(self, memory_id: str) -> Tombstone | None: ...
    def add_history(self, entry: HistoryEntry) -> None: ...
    def put_link(self, link: Link, seq: int) -> None: ...
    def delete_links(self, memory_id: str) -> int: ...
    def put_vector(self, memory_id: str, model: str, vector: np.ndarray, seq: int) -> None: ...
    def record_access(self, memory_id: str, at: datetime, expires_at: datetime | None) -> None: ...
    def expired(self, now: datetime, limit: int) -> list[Memory]: ...
    def archive(self, memory: Memory, at: datetime, reason: str) -> None: ...
    def purge_tombstones(self, before: datetime) -> int: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


class Store(Protocol):
    """A memmesh database. Reads see committed data; writes go through :meth:`write`."""

    url: str
    schema_version: int

    def write(self) -> AbstractContextManager[WriteTx]: ...
    def get(self, memory_id: str, now: datetime | None = None) -> Memory | None: ...
    def get_many(self, ids: Sequence[str]) -> list[Memory]: ...
    def list(self, flt: Filter, limit: int, after: tuple[str, str] | None = None) -> list[Memory]: ...
    def keyword_search(self, terms: Sequence[str], flt: Filter, limit: int) -> list[tuple[Memory, float]]: ...
    def matching_ids(self, flt: Filter) -> set[str]: ...
    def history(self, memory_id: str) -> list[HistoryEntry]: ...
    def links(self, memory_id: str) -> list[Link]: ...
    def tombstones_since(self, seq: int) -> list[Tombstone]: ...
    def vector_changes(self, since_seq: int) -> VectorChanges: ...
    def vector_models(self) -> dict[str, int]: ...
    def ids_missing_vectors(self, model: str) -> list[str]: ...
    def stats(self, now: datetime, soon: datetime) -> Stats: ...
    def iter_memories(self, batch: int = 500) -> Iterator[Memory]: ...
    def iter_links(self) -> Iterator[Link]: ...
    def iter_history(self) -> Iterator[HistoryEntry]: ...
    def node_id(self) -> str: ...
    def integrity_check(self) -> str: ...
    def change_counter(self) -> int: ...
    def close(self) -> None: ...


def open_store(url: str, *, busy_timeout_ms: int = 15_000, synchronous: str = "NORMAL") -> Store:
    """Open (creating and migrating if needed) the store a URL names."""
    if url.startswith("sqlite://"):
        from memmesh.store.sqlite import SQLiteStore

        return SQLiteStore(url, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        raise InvalidInputError(
            f"store URL {url.split('@')[-1]!r}: the PostgreSQL backend is not available in this version yet; "
            "use sqlite:///path/to/memmesh.db"
        )
    raise InvalidInputError(
        f"unsupported store URL {url!r}: use sqlite:///path/to/file.db, sqlite:///:memory: or postgresql://…"
    )
