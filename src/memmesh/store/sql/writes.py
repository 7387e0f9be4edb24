"""The write primitives both SQL backends share, written once (``?`` placeholders).

:class:`SQLWrites` is mixed into each backend's write transaction, which provides ``conn``
(inside its open transaction), ``dialect``, :meth:`next_seq` and the vector primitives, and
may override :meth:`_lock_key` (PostgreSQL serialises writers of one key with an advisory
lock; SQLite's single writer needs nothing) and :meth:`_ensure_vector_index`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np

from memmesh.errors import NotFoundError
from memmesh.model import Agent, ArchivedMemory, Conflict, HistoryEntry, Link, Memory, PeerState, StoredApiKey, Tombstone
from memmesh.store.base import Filter, VectorRow
from memmesh.store.sql.dialect import Dialect
from memmesh.store.sql.filters import archive_filter_sql
from memmesh.store.sql.reads import read_meta, write_meta
from memmesh.store.sql.rows import (
    AGENT_FIELDS,
    ARCHIVE_FIELDS,
    CONFLICT_FIELDS,
    HISTORY_COLUMNS,
    KEY_COLUMNS,
    LINK_COLUMNS,
    LINK_FIELDS,
    LINK_KEY,
    MEMORY_COLUMNS,
    MEMORY_FIELDS,
    PEER_COLUMNS,
    PEER_FIELDS,
    TOMBSTONE_COLUMNS,
    TOMBSTONE_FIELDS,
    history_row,
    link_params,
    memory_params,
    row_to_agent,
    row_to_archived,
    row_to_history,
    row_to_link,
    row_to_memory,
    row_to_peer,
    row_to_tombstone,
)

INSERT_MEMORY = f"INSERT INTO memories ({MEMORY_COLUMNS}, seq) VALUES ({', '.join('?' * (len(MEMORY_FIELDS) + 1))})"
UPDATE_MEMORY = f"UPDATE memories SET {', '.join(f'{name} = ?' for name in MEMORY_FIELDS[1:])}, seq = ? WHERE id = ?"
INSERT_HISTORY = f"INSERT INTO history ({HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_TAG = "INSERT INTO memory_tags (tag, memory_id) VALUES (?, ?)"


class SQLWrites:
    """Writes of memories, history, links, tombstones, the archive, agents, keys and peers."""

    conn: Any
    dialect: Dialect

    def next_seq(self) -> int:  # provided by the backend
        raise NotImplementedError

    def _lock_key(self, *parts: str) -> None:
        """Serialise writers of one key until commit (a no-op where writes are already serial)."""

    @contextmanager
    def bulk_cache(self) -> Iterator[None]:
        """A larger page cache while a bulk insert runs (see the SQLite transaction's); a
        no-op where the server manages its own buffers."""
        yield

    def _ensure_vector_index(self, dim: int) -> None:
        """Make the ANN index for vectors of ``dim`` (a no-op where the index lives in process)."""

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self.dialect.q(sql), params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._exec(sql, params).fetchone()

    # -- memories ------------------------------------------------------------------------

    def get(self, memory_id: str) -> Memory | None:
        """The memory, held until commit where rows are locked: a concurrent update waits
        and then sees this one's result."""
        self._lock_key("id", memory_id)
        row = self._one(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ?{self.dialect.for_update}", (memory_id,))
        return row_to_memory(row, self.dialect) if row else None

    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None:
        self._lock_key("hash", namespace, content_hash)
        row = self._one(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = ? AND content_hash = ?", (namespace, content_hash))
        return row_to_memory(row, self.dialect) if row else None

    def find_by_title(self, namespace: str, title: str) -> Memory | None:
        self._lock_key("title", namespace, title)
        row = self._one(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = ? AND title = ? "
            f"ORDER BY created_at DESC LIMIT 1{self.dialect.for_update}",
            (namespace, title),
        )
        return row_to_memory(row, self.dialect) if row else None

    def insert_memory(self, memory: Memory, seq: int) -> None:
        self.insert_memories([memory], seq)

    def insert_memories(self, memories: Sequence[Memory], seq: int) -> None:
        """Bulk insert (one round trip where the driver allows); storing an id again clears its tombstone."""
        if not memories:
            return
        d = self.dialect
        d.executemany(self.conn, INSERT_MEMORY, [[*memory_params(m, d), seq] for m in memories])
        if d.tag_table:
            d.executemany(self.conn, INSERT_TAG, [(tag, m.id) for m in memories for tag in m.tags])
        if len(memories) == 1:  # the common case (one add) probes the key directly
            self._exec("DELETE FROM tombstones WHERE id = ?", (memories[0].id,))
        else:
            self._exec(f"DELETE FROM tombstones WHERE {d.in_list('id')}", (d.list_param(m.id for m in memories),))

    def update_memory(self, memory: Memory, seq: int) -> None:
        values = memory_params(memory, self.dialect)
        if self._exec(UPDATE_MEMORY, [*values[1:], seq, memory.id]).rowcount != 1:
            raise NotFoundError(f"memory {memory.id} does not exist")
        if self.dialect.tag_table:
            self._drop_tags(memory.id)
            self.dialect.executemany(self.conn, INSERT_TAG, [(tag, memory.id) for tag in memory.tags])

    def _drop_tags(self, memory_id: str) -> None:
        if self.dialect.tag_table:
            self._exec("DELETE FROM memory_tags WHERE memory_id = ?", (memory_id,))

    def _remove_row(self, memory_id: str, seq: int) -> None:
        """Take a memory out of the live tables (its row, tags and vector)."""
        self._exec("DELETE FROM memories WHERE id = ?", (memory_id,))
        self._drop_tags(memory_id)
        self._drop_vector(memory_id, seq)
        self._exec("DELETE FROM pending_vectors WHERE memory_id = ?", (memory_id,))

    def delete_memory(self, tombstone: Tombstone, seq: int) -> None:
        d = self.dialect
        self._remove_row(tombstone.id, seq)
        self._exec(
            d.upsert("tombstones", (*TOMBSTONE_FIELDS, "seq"), ("id",)),
            (tombstone.id, tombstone.namespace, d.ts(tombstone.deleted_at), tombstone.actor, d.model_json(tombstone.version), seq),
        )

    def tombstone(self, memory_id: str) -> Tombstone | None:
        row = self._one(f"SELECT {TOMBSTONE_COLUMNS} FROM tombstones WHERE id = ?", (memory_id,))
        return row_to_tombstone(row, self.dialect) if row else None

    def record_access(self, memory_id: str, at: datetime, expires_at: datetime | None) -> None:
        d = self.dialect
        self._exec(
            "UPDATE memories SET access_count = access_count + 1, last_accessed_at = ?, expires_at = ? WHERE id = ?",
            (d.ts(at), d.ts(expires_at), memory_id),
        )

    def expired(self, now: datetime, limit: int) -> builtins.list[Memory]:
        d = self.dialect
        rows = self._exec(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ? "
            f"ORDER BY {d.rowid} LIMIT ?{d.skip_locked}",
            (d.ts(now), limit),
        ).fetchall()
        return [row_to_memory(row, d) for row in rows]

    def archive(self, memory: Memory, at: datetime, reason: str) -> None:
        d = self.dialect
        self._exec(
            d.upsert("archive", ARCHIVE_FIELDS, ("id",)),
            (memory.id, memory.namespace, d.ts(at), reason, d.json_raw(memory.model_dump_json())),
        )
        self._remove_row(memory.id, self.next_seq())

    def purge_tombstones(self, before: datetime) -> int:
        moment = self.dialect.ts(before)
        newest = self._one("SELECT max(seq) FROM tombstones WHERE deleted_at < ?", (moment,))[0]
        if newest is not None and newest > int(self.get_meta("purged_seq") or 0):
            self.set_meta("purged_seq", str(newest))
        dead = "SELECT id FROM tombstones WHERE deleted_at < ?"  # their links were only hidden until now
        self._exec(f"DELETE FROM links WHERE source_id IN ({dead}) OR target_id IN ({dead})", (moment, moment))
        return int(self._exec("DELETE FROM tombstones WHERE deleted_at < ?", (moment,)).rowcount)

    # -- history and links ---------------------------------------------------------------

    def add_history(self, entry: HistoryEntry) -> None:
        self.add_history_many([entry])

    def add_history_many(self, entries: Sequence[HistoryEntry]) -> list[tuple[str | None, str | None]]:
        """Insert the entries; returns each one's ``old`` and ``new`` as the JSON text stored
        (None for NULL): the audit capture hashes that text for the change's digest, so a
        change is encoded once, not once for the history row and again for the audit."""
        d = self.dialect
        if not entries:
            return []
        rows = [history_row(e, d) for e in entries]
        d.executemany(self.conn, INSERT_HISTORY, [params for params, _, _ in rows])
        return [(old, new) for _, old, new in rows]

    def put_link(self, link: Link, seq: int) -> None:
        self._exec(self.dialect.upsert("links", (*LINK_FIELDS, "seq"), LINK_KEY), link_params(link, seq, self.dialect))

    def get_link(self, source_id: str, target_id: str, relation: str) -> Link | None:
        row = self._one(
            f"SELECT {LINK_COLUMNS} FROM links WHERE source_id = ? AND target_id = ? AND relation = ?", (source_id, target_id, relation)
        )
        return row_to_link(row) if row else None

    def delete_links(self, memory_id: str) -> int:
        return int(self._exec("DELETE FROM links WHERE source_id = ? OR target_id = ?", (memory_id, memory_id)).rowcount)

    # -- vectors -------------------------------------------------------------------------

    def put_vector(self, memory_id: str, model: str, vector: np.ndarray, seq: int) -> None:
        self.put_vectors([VectorRow(memory_id, model, vector)], seq)

    def put_vectors(self, rows: Sequence[VectorRow], seq: int) -> None:
        if not rows:
            return
        d = self.dialect
        for dim in {int(np.asarray(r.vector).shape[0]) for r in rows}:
            self._ensure_vector_index(dim)
        sql = d.upsert("vectors", ("memory_id", "model", "dim", d.vector_column, "seq"), ("memory_id",), touch=d.feed_touch)
        d.executemany(self.conn, sql, [(r.memory_id, r.model, int(np.asarray(r.vector).shape[0]), d.vector(r.vector), seq) for r in rows])
        self._exec(f"DELETE FROM vector_removals WHERE {d.in_list('memory_id')}", (d.list_param(r.memory_id for r in rows),))
        self._exec(f"DELETE FROM pending_vectors WHERE {d.in_list('memory_id')}", (d.list_param(r.memory_id for r in rows),))

    def mark_vectors_pending(self, ids: Sequence[str], seq: int) -> None:
        """Record that these memories' vectors are owed (their text was written, the
        background embedder has not stored its vector yet) and drop any vector they hold:
        it describes text they no longer have. :meth:`put_vectors` clears the mark."""
        if not ids:
            return
        d = self.dialect
        for memory_id in ids:
            self._drop_vector(memory_id, seq)
        d.executemany(
            self.conn,
            d.upsert("pending_vectors", ("memory_id", "seq"), ("memory_id",)),
            [(memory_id, seq) for memory_id in ids],
        )

    def pending_vector_ids(self, limit: int) -> builtins.list[str]:
        """Memories whose vector is owed, oldest write first (what a restart must embed)."""
        rows = self._exec("SELECT memory_id FROM pending_vectors ORDER BY seq, memory_id LIMIT ?", (limit,)).fetchall()
        return [str(row[0]) for row in rows]

    def clear_vectors_pending(self, ids: Sequence[str]) -> None:
        """Forget owed vectors that no longer need computing (the memory is gone)."""
        if ids:
            d = self.dialect
            self._exec(f"DELETE FROM pending_vectors WHERE {d.in_list('memory_id')}", (d.list_param(ids),))

    def _drop_vector(self, memory_id: str, seq: int) -> None:
        if self._exec("DELETE FROM vectors WHERE memory_id = ?", (memory_id,)).rowcount:
            d = self.dialect
            self._exec(d.upsert("vector_removals", ("memory_id", "seq"), ("memory_id",), touch=d.feed_touch), (memory_id, seq))

    # -- federation ----------------------------------------------------------------------

    def put_conflict(self, conflict: Conflict, seq: int) -> bool:
        """Record a conflict unless its id is already recorded; True when it was new."""
        d = self.dialect
        cursor = self._exec(
            f"INSERT INTO conflicts ({', '.join(CONFLICT_FIELDS)}, seq) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                conflict.id,
                conflict.memory_id,
                conflict.namespace,
                d.jsonb(conflict.loser, sort_keys=True),
                d.model_json(conflict.version),
                seq,
            ),
        )
        return bool(cursor.rowcount == 1)

    def peer(self, node_id: str) -> PeerState | None:
        row = self._one(f"SELECT {PEER_COLUMNS} FROM peers WHERE node_id = ?", (node_id,))
        return row_to_peer(row) if row else None

    def put_peer(self, state: PeerState) -> None:
        d = self.dialect
        self._exec(
            d.upsert("peers", PEER_FIELDS, ("node_id",)),
            (state.node_id, state.url, state.sent_seq, state.recv_seq, d.ts(state.last_contact), state.last_error),
        )

    def get_meta(self, key: str) -> str | None:
        return read_meta(self.conn, self.dialect, key)

    def set_meta(self, key: str, value: str) -> None:
        write_meta(self.conn, self.dialect, key, value)

    # -- agents, keys, quotas, the archive -----------------------------------------------

    def get_agent(self, agent_id: str) -> Agent | None:
        row = self._one(f"SELECT {', '.join(AGENT_FIELDS)} FROM agents WHERE agent_id = ?", (agent_id,))
        return row_to_agent(row, self.dialect) if row else None

    def put_agent(self, agent: Agent) -> None:
        d = self.dialect
        self._exec(
            d.upsert("agents", (*AGENT_FIELDS, "seq"), ("agent_id",)),
            (
                agent.agent_id,
                agent.display_name,
                agent.role,
                d.jsonb(agent.namespaces),
                d.ts(agent.created_at),
                d.ts(agent.updated_at),
                self.next_seq(),  # agents replicate: they are in the change feed
            ),
        )

    def insert_api_key(self, key: StoredApiKey) -> None:
        d = self.dialect
        fields = (key.id, key.agent_id, key.role, d.jsonb(key.namespaces), d.ts(key.created_at), d.ts(key.revoked_at), key.created_by)
        self._exec(
            f"INSERT INTO api_keys ({KEY_COLUMNS}, key_hash, prefix) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*fields, key.key_hash, key.id)
        )

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        cursor = self._exec("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (self.dialect.ts(at), key_id))
        return bool(cursor.rowcount == 1)

    def count_writes(self, namespace: str, day: str, n: int) -> int:
        row = self._one(
            "INSERT INTO write_counts (namespace, day, count) VALUES (?, ?, ?) "
            "ON CONFLICT (namespace, day) DO UPDATE SET count = write_counts.count + excluded.count RETURNING count",
            (namespace, day, n),
        )
        return int(row[0])

    def take_archived(self, memory_id: str) -> ArchivedMemory | None:
        row = self._one("DELETE FROM archive WHERE id = ? RETURNING data, archived_at, reason", (memory_id,))
        return row_to_archived(row, self.dialect) if row else None

    def purge_archive(self, flt: Filter, before: datetime | None = None) -> int:
        where, params = archive_filter_sql(flt, self.dialect)
        if before is not None:
            where += " AND a.archived_at < ?"
            params.append(self.dialect.ts(before))
        return int(self._exec(f"DELETE FROM archive AS a WHERE {where}", params).rowcount)

    # -- batched apply of replicated changes (federation catch-up) -----------------------

    def lock_keys(self, keys: Sequence[tuple[str, ...]]) -> None:
        """Take the per-key writer locks of :meth:`get` / :meth:`find_by_hash` for many keys at
        once, in sorted order, so two batched appliers never wait on each other in a cycle."""
        for key in sorted(set(keys)):
            self._lock_key(*key)

    def held_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` this store holds, as a memory or as a tombstone (two queries for a
        whole batch instead of two per id: what makes a catch-up page cheap to classify)."""
        if not ids:
            return set()
        d = self.dialect
        held: set[str] = set()
        for table in ("memories", "tombstones"):
            rows = self._exec(f"SELECT id FROM {table} WHERE {d.in_list('id')}", (d.list_param(ids),)).fetchall()
            held.update(str(row[0]) for row in rows)
        return held

    def held_hashes(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (namespace, content_hash) pairs a stored memory already has (one query per
        namespace, on the unique (namespace, content_hash) index)."""
        by_namespace: dict[str, list[str]] = {}
        for namespace, digest in pairs:
            by_namespace.setdefault(namespace, []).append(digest)
        d = self.dialect
        held: set[tuple[str, str]] = set()
        for namespace, digests in by_namespace.items():
            rows = self._exec(
                f"SELECT content_hash FROM memories WHERE namespace = ? AND {d.in_list('content_hash')}", (namespace, d.list_param(digests))
            ).fetchall()
            held.update((namespace, str(row[0])) for row in rows)
        return held

    def history_of(self, ids: Sequence[str]) -> dict[str, builtins.list[HistoryEntry]]:
        """The history of each of ``ids`` as this transaction sees it (one query), so a
        replicated batch adds only the origin's entries this node does not hold yet."""
        found: dict[str, builtins.list[HistoryEntry]] = {}
        if ids:
            d = self.dialect
            rows = self._exec(
                f"SELECT {HISTORY_COLUMNS} FROM history WHERE {d.in_list('memory_id')} ORDER BY memory_id, id", (d.list_param(ids),)
            ).fetchall()
            for row in rows:
                entry = row_to_history(row, d)
                found.setdefault(entry.memory_id, []).append(entry)
        return found
