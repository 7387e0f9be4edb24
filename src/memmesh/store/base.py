"""The storage contract every backend implements (the URL → backend dispatch is
:mod:`memmesh.store.open`, so this contract never imports a backend).

A store keeps memories, their vectors, links, history, tombstones and the archive, and
nothing more: ids, hashes, versions, validation and rules are the service's job. Writes go
through :meth:`Store.write`, a serialised transaction (one writer at a time across every
process sharing the database), so the service can check-then-write atomically.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from memmesh.errors import InvalidInputError, StorageError
from memmesh.model import (
    NOT_UNICODE,
    Agent,
    ApiKey,
    ArchivedMemory,
    ArchiveStats,
    Conflict,
    HistoryEntry,
    Link,
    Memory,
    PeerState,
    Stats,
    StoredApiKey,
    Tombstone,
)


def not_unicode(exc: UnicodeEncodeError) -> InvalidInputError:
    """A value the driver could not encode (a lone UTF-16 surrogate in an id or a filter, which
    Python callers and JSON can carry): the caller's input, said so, instead of the driver's
    UnicodeEncodeError. Both backends raise it from their read and write blocks."""
    return InvalidInputError(f"a value given {NOT_UNICODE}; nothing was read or changed")


def closed_error(where: str) -> StorageError:
    """What any read or write of a store raises after its ``close()`` (both backends alike:
    not a retryable "server unavailable", since no retry reopens it)."""
    return StorageError(f"the store {where} is closed; open it again to use it")


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


@dataclass
class Changes:
    """One page of the change feed: replicated objects whose change number lies in
    ``(since, upto]``, each with that number. ``more`` says whether later changes exist."""

    memories: list[tuple[int, Memory]] = field(default_factory=list)
    tombstones: list[tuple[int, Tombstone]] = field(default_factory=list)
    links: list[tuple[int, Link]] = field(default_factory=list)
    conflicts: list[tuple[int, Conflict]] = field(default_factory=list)
    agents: list[tuple[int, Agent]] = field(default_factory=list)
    upto: int = 0
    more: bool = False
    bus: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """Bus chat conversations and messages (schema 21), as plain rows: ``{"conversation": {...}}``
    or ``{"message": {...}}``, conversations first (see :data:`memmesh.store.sql.reads.BUS_FEED`)."""

    def __len__(self) -> int:
        return len(self.memories) + len(self.tombstones) + len(self.links) + len(self.conflicts) + len(self.agents) + len(self.bus)


def cut_page(since: int, head: int, limit: int, pages: Sequence[Sequence[int]]) -> int | None:
    """The last change number a feed page may include.

    ``pages`` holds, per table, the change numbers of its first ``limit`` rows after
    ``since``. A full page may stop inside a change number shared by more rows, so the cut
    goes just before the last number of any full page; None means one change number alone
    holds more than ``limit`` rows (the caller then reads exactly that number, whole).
    """
    full = [seqs[-1] - 1 for seqs in pages if len(seqs) >= limit]
    if not full:
        return head
    cut = min(head, *full)
    return cut if cut > since else None


VISIBLE_LINK = "NOT EXISTS (SELECT 1 FROM tombstones dead WHERE dead.id = links.source_id OR dead.id = links.target_id)"
"""A link is kept when one of its ends is deleted (a concurrent update may revive that memory
on merge, and its links with it, identically on every node) but hidden while an end is a
tombstone; purging the tombstone removes the link for good."""


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot file holds: ``backend`` says how to read it back ("sqlite": a SQLite
    database file; anything else: a ``memmesh-snapshot`` JSON Lines file)."""

    backend: str
    schema_version: int
    memories: int
    links: int

    @property
    def suffix(self) -> str:
        """The file name ending that says how the snapshot is read back."""
        return ".db" if self.backend == "sqlite" else ".jsonl"


class WriteTx(Protocol):
    """Primitive operations inside one serialised write transaction."""

    @property
    def conn(self) -> Any:
        """The transaction's driver connection: core modules that keep SQL of their own
        beside the store (audit, bus, governance) write on it, inside this transaction."""
        ...

    def next_seq(self) -> int: ...
    def get(self, memory_id: str) -> Memory | None: ...
    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None: ...
    def lock_keys(self, keys: Sequence[tuple[str, ...]]) -> None: ...
    def held_ids(self, ids: Sequence[str]) -> set[str]: ...
    def held_hashes(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def bulk_cache(self) -> AbstractContextManager[None]:
        """A larger page cache while a bulk insert (a catch-up page) runs, where the store has one."""
        ...

    def history_of(self, ids: Sequence[str]) -> dict[str, builtins.list[HistoryEntry]]: ...
    def find_by_title(self, namespace: str, title: str) -> Memory | None: ...
    def insert_memory(self, memory: Memory, seq: int) -> None: ...
    def update_memory(self, memory: Memory, seq: int) -> None: ...
    def delete_memory(self, tombstone: Tombstone, seq: int) -> None: ...
    def tombstone(self, memory_id: str) -> Tombstone | None: ...
    def add_history(self, entry: HistoryEntry) -> None: ...
    def put_link(self, link: Link, seq: int) -> None: ...
    def delete_links(self, memory_id: str) -> int: ...
    def put_vector(self, memory_id: str, model: str, vector: np.ndarray, seq: int) -> None: ...
    def insert_memories(self, memories: Sequence[Memory], seq: int) -> None:
        """Bulk :meth:`insert_memory` (migration, restore): one round trip where the backend allows."""
        ...

    def add_history_many(self, entries: Sequence[HistoryEntry]) -> list[tuple[str | None, str | None]]:
        """Bulk :meth:`add_history`, entries kept in order; returns each entry's ``old`` and
        ``new`` as the JSON text stored (None for NULL), which the audit digest hashes."""
        ...

    def put_vectors(self, rows: Sequence[VectorRow], seq: int) -> None:
        """Bulk :meth:`put_vector`."""
        ...

    def mark_vectors_pending(self, ids: Sequence[str], seq: int) -> None:
        """These memories' vectors are owed (computed after commit); their old vectors go."""
        ...

    def pending_vector_ids(self, limit: int) -> list[str]:
        """Memories whose vector is owed, oldest write first."""
        ...

    def clear_vectors_pending(self, ids: Sequence[str]) -> None:
        """Forget owed vectors that no longer need computing."""
        ...

    def record_access(self, memory_id: str, at: datetime, expires_at: datetime | None) -> None: ...
    def expired(self, now: datetime, limit: int) -> list[Memory]: ...
    def archive(self, memory: Memory, at: datetime, reason: str) -> None: ...
    def purge_tombstones(self, before: datetime) -> int: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def get_agent(self, agent_id: str) -> Agent | None: ...
    def put_agent(self, agent: Agent) -> None: ...
    def insert_api_key(self, key: StoredApiKey) -> None: ...
    def revoke_api_key(self, key_id: str, at: datetime) -> bool: ...
    def count_writes(self, namespace: str, day: str, n: int) -> int:
        """Add ``n`` to the namespace's write count for ``day`` (YYYY-MM-DD) and return the new total."""
        ...

    def take_archived(self, memory_id: str) -> ArchivedMemory | None:
        """Remove one memory from the archive and return it (None when it is not there)."""
        ...

    def purge_archive(self, flt: Filter, before: datetime | None = None) -> int:
        """Delete archived memories in ``flt``'s namespace/scopes/ids, archived before ``before``."""
        ...

    def get_link(self, source_id: str, target_id: str, relation: str) -> Link | None: ...
    def put_conflict(self, conflict: Conflict, seq: int) -> bool:
        """Record a conflict unless its id is already recorded; True when it was new."""
        ...

    def peer(self, node_id: str) -> PeerState | None: ...
    def put_peer(self, state: PeerState) -> None: ...


class Store(Protocol):
    """A memmesh database. Reads see committed data; writes go through :meth:`write`."""

    url: str
    schema_version: int
    created: bool
    """True when opening this store created it (a new file or schema); faces say so once."""

    def write(self) -> AbstractContextManager[WriteTx]: ...
    def reading(self) -> AbstractContextManager[Any]:
        """A read connection of committed data (the backend's driver connection), for core
        modules that run SQL of their own beside the store (audit, bus, sessions)."""
        ...

    def get(self, memory_id: str, now: datetime | None = None) -> Memory | None: ...
    def get_many(self, ids: Sequence[str]) -> builtins.list[Memory]: ...
    def list(self, flt: Filter, limit: int, after: tuple[str, str] | None = None) -> builtins.list[Memory]: ...
    def keyword_search(self, terms: Sequence[str], flt: Filter, limit: int) -> builtins.list[tuple[Memory, float]]: ...
    def keyword_scores(self, terms: Sequence[str], flt: Filter, limit: int) -> dict[str, float]:
        """Like :meth:`keyword_search` but only id → BM25 score (higher is better), without
        loading the memories; with ``flt.ids`` it scores exactly those that match a term."""
        ...

    def matching_ids(self, flt: Filter) -> set[str]: ...
    def history(self, memory_id: str) -> builtins.list[HistoryEntry]: ...
    def history_many(self, ids: Sequence[str]) -> dict[str, builtins.list[HistoryEntry]]: ...
    def links(self, memory_id: str) -> builtins.list[Link]: ...
    def tombstones_since(self, seq: int) -> builtins.list[Tombstone]: ...
    def vector_changes(self, since_seq: int) -> VectorChanges: ...
    def vector_models(self) -> dict[str, int]: ...
    def get_vectors(self, ids: Sequence[str]) -> builtins.list[VectorRow]:
        """The stored vectors (any model) of these memories, for copying between stores."""
        ...

    def ids_missing_vectors(self, model: str) -> builtins.list[str]: ...
    def neighbours(self, ids: Sequence[str], span: int, window_s: float) -> dict[str, builtins.list[tuple[str, int]]]:
        """For each id, up to ``span`` memories written just before (distance -1, -2, …) and
        after (+1, +2, …) it in its namespace, in (created_at, id) order, created at most
        ``window_s`` seconds apart from it. Unfiltered: the caller applies its Filter."""
        ...

    def stats(self, now: datetime, soon: datetime) -> Stats: ...
    def iter_memories(self, batch: int = 500) -> Iterator[Memory]: ...
    def iter_links(self) -> Iterator[Link]: ...
    def links_among(self, ids: Collection[str]) -> builtins.list[Link]:
        """The visible links whose source and target are both among ``ids``, read through the
        link key: a question about one namespace (a curator run, a scoped key's stats) costs
        what its memories have, not every link of the store."""
        ...

    def iter_history(self) -> Iterator[HistoryEntry]: ...
    def version_rows(self) -> builtins.list[tuple[str, str, str, dict[str, Any]]]: ...
    def bus_version_rows(self) -> builtins.list[tuple[str, str, str, str]]:
        """``(kind, conversation id, id, stamp)`` of every replicated bus conversation and message."""
        ...

    def bus_items(self, conversation_ids: Sequence[str], message_ids: Sequence[str]) -> builtins.list[dict[str, Any]]:
        """The replicated bus conversations and messages with these ids, as feed items carry them."""
        ...

    def node_id(self) -> str: ...
    def integrity_check(self) -> str: ...
    def change_counter(self) -> int: ...
    def agents(self) -> builtins.list[Agent]: ...
    def api_keys(self, include_revoked: bool = False) -> builtins.list[ApiKey]: ...
    def api_key(self, key_id: str) -> StoredApiKey | None: ...
    def has_api_keys(self) -> bool:
        """True when at least one unrevoked API key exists (the server then requires keys)."""
        ...

    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None:
        """The memory with this content hash in this namespace, expired or not (exact-duplicate check)."""
        ...

    def find_by_title(self, namespace: str, title: str) -> Memory | None:
        """The newest memory with this title in this namespace (the one a store with
        ``on_conflict="update"`` would update), expired or not."""
        ...

    def archived(self, flt: Filter, limit: int) -> builtins.list[ArchivedMemory]:
        """Archived memories in ``flt``'s namespace/scopes/ids, most recently archived first."""
        ...

    def archive_stats(self, flt: Filter) -> ArchiveStats: ...
    def write_counts(self, day: str) -> dict[str, int]:
        """Writes per namespace counted against the daily quota on ``day`` (YYYY-MM-DD)."""
        ...

    def changes_since(self, since: int, limit: int, skip_node: str | None = None) -> Changes:
        """The change feed: replicated objects changed after change number ``since``, oldest
        first, about ``limit`` rows a page (a change number is never split across pages);
        ``skip_node`` leaves out the memories and tombstones that node wrote last."""
        ...

    def conflicts(self, memory_id: str | None = None) -> builtins.list[Conflict]: ...
    def peers(self) -> builtins.list[PeerState]: ...
    def meta_value(self, key: str) -> str | None:
        """One ``meta`` value (None when absent), read without a write transaction: a migrate's
        source may be a read-only replica."""
        ...

    def purged_seq(self) -> int:
        """The highest change number of a tombstone gc purged: a peer that last synced before
        it may hold memories whose delete it can no longer learn incrementally."""
        ...

    def snapshot_to(self, dest: Path, *, node_id: str, now: datetime) -> SnapshotInfo:
        """Write one consistent copy of the whole store to the new file ``dest`` while other
        writers carry on (backups). Each backend picks its cheapest exact form (SQLite: its
        online backup API; PostgreSQL: a logical dump read in one REPEATABLE READ
        transaction) and says which in the returned :class:`SnapshotInfo`. A ``dest`` that
        cannot be written (a full disk, a read-only folder) raises :class:`OSError`."""
        ...

    def close(self) -> None: ...


KEYS_REQUIRED_META = "keys_required"
"""Meta key a restore or migrate sets (to the number of key rows the source held) so that the
copy requires keys from the start: key rows are never copied (a tampered snapshot could plant
an admin key), yet a store that had keys must not come back open."""


def key_rows(store: Store) -> int:
    """How many API key rows ``store`` holds (revoked included) or, for a store that holds none
    because it was itself restored or migrated from one that did, the count recorded then: a
    copy of a store that required keys must require them too (0: the store was never closed).

    Why the recorded count too: key rows are never copied, so without it a restored store's
    own backup or migration would hand on an open copy."""
    rows = len(store.api_keys(include_revoked=True))
    if rows:
        return rows
    recorded = store.meta_value(KEYS_REQUIRED_META)  # a read: a migrate's source may be a read-only replica
    if not recorded:
        return 0
    return int(recorded) if recorded.isdigit() and int(recorded) > 0 else 1


def latest_schema(url: str) -> int:
    """The newest schema version this memmesh makes for the backend ``url`` names (what a
    store opened here will have), known without opening or creating anything."""
    backend = "sqlite" if url.startswith("sqlite://") else "postgres"
    folder = resources.files("memmesh.store.migrations") / backend
    return max(int(entry.name.split("_", 1)[0]) for entry in folder.iterdir() if entry.name.endswith(".sql"))
