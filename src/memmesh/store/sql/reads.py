"""The store reads both SQL backends share, written once (``?`` placeholders, see the dialect).

:class:`SQLReads` is mixed into each backend's store class, which provides ``dialect`` and
``_reading()`` (a context manager yielding a connection whose driver errors become memmesh
errors) and overrides the few hooks where the databases differ (``_large_subtree``,
``_db_size``). Every method returning a sequence orders it fully, so both backends answer
in the same, deterministic order (the conformance suite checks it).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from memmesh.model import (
    Agent,
    ApiKey,
    ArchivedMemory,
    ArchiveStats,
    Conflict,
    HistoryEntry,
    Link,
    Memory,
    NamespaceCount,
    PeerState,
    Stats,
    StoredApiKey,
    TierCount,
    Tombstone,
)
from memmesh.store.base import VISIBLE_LINK, Changes, Filter, VectorRow, cut_page
from memmesh.store.sql.dialect import Dialect
from memmesh.store.sql.filters import archive_filter_sql, filter_sql
from memmesh.store.sql.rows import (
    AGENT_COLUMNS,
    CONFLICT_COLUMNS,
    HISTORY_COLUMNS,
    KEY_COLUMNS,
    KEY_FIELDS,
    LINK_COLUMNS,
    LINK_ORDER,
    MEMORY_COLUMNS,
    N_MEMORY,
    PEER_COLUMNS,
    TOMBSTONE_COLUMNS,
    key_fields,
    prefixed,
    row_to_agent,
    row_to_archived,
    row_to_conflict,
    row_to_history,
    row_to_link,
    row_to_memory,
    row_to_peer,
    row_to_tombstone,
)

FEED_QUERIES = {
    "memories": (f"SELECT seq, {MEMORY_COLUMNS} FROM memories", "id"),
    "tombstones": (f"SELECT seq, {TOMBSTONE_COLUMNS} FROM tombstones", "id"),
    "links": (f"SELECT seq, {LINK_COLUMNS} FROM links", "source_id, target_id, relation"),
    "conflicts": (f"SELECT seq, {CONFLICT_COLUMNS} FROM conflicts", "id"),
    "agents": (f"SELECT seq, {AGENT_COLUMNS} FROM agents", "agent_id"),
}
BUS_FEED = {
    "conversation": ("id", "kind", "topic", "participants", "token_hash", "created_by", "created_at", "timeout_s"),
    "message": ("id", "conversation_id", "sender", "recipient", "body", "created_at", "origin", "hlc"),
}
"""The bus columns that replicate (schema 21): a chat conversation's fixed fields (its token only
as the stored SHA-256) and a chat message's; never last_activity, cursors or task leases."""
BUS_REPLICATED = {"conversation": "change_seq IS NOT NULL", "message": "change_seq IS NOT NULL AND hlc IS NOT NULL"}
"""Which bus rows replicate: chat conversations and their stamped messages (a queue's rows take
no change number). The feed and the anti-entropy digests select the same rows."""
BUS_ORIGIN = "COALESCE(origin, (SELECT value FROM meta WHERE key = 'node_id'))"
"""A message's writer: messages written before schema 21 name no origin and are this node's."""
FEED_QUERIES["bus_conversations"] = (
    f"SELECT * FROM (SELECT change_seq AS seq, {', '.join(BUS_FEED['conversation'])} FROM bus_conversations "
    f"WHERE {BUS_REPLICATED['conversation']}) AS bc",
    "id",
)
FEED_QUERIES["bus_messages"] = (
    "SELECT * FROM (SELECT change_seq AS seq, id, conversation_id, sender, recipient, body, created_at, "
    f"{BUS_ORIGIN} AS origin, hlc FROM bus_messages WHERE {BUS_REPLICATED['message']}) AS bm",
    "id",
)
"""Per replicated table: its feed query and the key that orders rows sharing a change number."""

FEED_SKIPS_WRITER = frozenset({"memories", "tombstones"})
"""The feed tables whose rows carry the version of the node that wrote them (``version.node``)."""


def bus_object(kind: str, row: Sequence[Any]) -> dict[str, Any]:
    """A bus feed row (change number first, then :data:`BUS_FEED`'s columns for ``kind``,
    ``conversation`` or ``message``) as the object a feed item's ``bus`` carries."""
    return {kind: dict(zip(BUS_FEED[kind], row[1:], strict=True))}


def read_meta(conn: Any, d: Dialect, key: str) -> str | None:
    """One ``meta`` value (None when absent), on any connection."""
    row = conn.execute(d.q("SELECT value FROM meta WHERE key = ?"), (key,)).fetchone()
    return row[0] if row else None


def write_meta(conn: Any, d: Dialect, key: str, value: str) -> None:
    conn.execute(d.q(d.upsert("meta", ("key", "value"), ("key",))), (key, value))


class SQLReads:
    """Reads of memories, links, history, the feed, agents, keys and the archive."""

    dialect: Dialect

    def _reading(self) -> AbstractContextManager[Any]:  # provided by the backend
        raise NotImplementedError

    def reading(self) -> AbstractContextManager[Any]:
        """A read connection of committed data, for the core modules that keep SQL of their
        own beside the store (audit, bus, sessions): public, so they need not reach into
        the backend's ``_reading``; driver errors become memmesh errors as in every read."""
        return self._reading()

    def _large_subtree(self, namespace: str | None) -> bool:
        """Whether ``list`` should not drive from the namespace index (SQLite's planner hint)."""
        return False

    def _db_size(self, conn: Any) -> int:  # provided by the backend
        raise NotImplementedError

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Any]:
        with self._reading() as conn:
            rows: builtins.list[Any] = conn.execute(self.dialect.q(sql), params).fetchall()
        return rows

    # -- memories ------------------------------------------------------------------------

    def get(self, memory_id: str, now: datetime | None = None) -> Memory | None:
        rows = self._rows(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ?", (memory_id,))
        return row_to_memory(rows[0], self.dialect) if rows else None

    def get_many(self, ids: Sequence[str]) -> builtins.list[Memory]:
        if not ids:
            return []
        d = self.dialect
        rows = self._rows(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE {d.in_list('id')}", (d.list_param(ids),))
        by_id = {row[0]: row_to_memory(row, d) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def find_by_hash(self, namespace: str, content_hash: str) -> Memory | None:
        rows = self._rows(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = ? AND content_hash = ?", (namespace, content_hash))
        return row_to_memory(rows[0], self.dialect) if rows else None

    def find_by_title(self, namespace: str, title: str) -> Memory | None:
        rows = self._rows(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE namespace = ? AND title = ? ORDER BY created_at DESC LIMIT 1", (namespace, title)
        )
        return row_to_memory(rows[0], self.dialect) if rows else None

    def list(self, flt: Filter, limit: int, after: tuple[str, str] | None = None) -> builtins.list[Memory]:
        d = self.dialect
        where, params = filter_sql(flt, d, namespace_index=not self._large_subtree(flt.namespace))
        if after is not None:
            moment = d.ts_text(after[0])
            where += " AND (m.created_at < ? OR (m.created_at = ? AND m.id < ?))"
            params += [moment, moment, after[1]]
        sql = f"SELECT {prefixed('m')} FROM memories m WHERE {where} ORDER BY m.created_at DESC, m.id DESC LIMIT ?"
        return [row_to_memory(row, d) for row in self._rows(sql, [*params, limit])]

    def matching_ids(self, flt: Filter) -> set[str]:
        where, params = filter_sql(flt, self.dialect)
        return {row[0] for row in self._rows(f"SELECT m.id FROM memories m WHERE {where}", params)}

    def iter_memories(self, batch: int = 500) -> Iterator[Memory]:
        """Every memory in insertion order, ``batch`` rows per read."""
        d = self.dialect
        last = -1
        while True:
            rows = self._rows(
                f"SELECT {MEMORY_COLUMNS}, {d.rowid} FROM memories WHERE {d.rowid} > ? ORDER BY {d.rowid} LIMIT ?", (last, batch)
            )
            if not rows:
                return
            last = rows[-1][N_MEMORY]
            yield from (row_to_memory(row, d) for row in rows)

    def neighbours(self, ids: Sequence[str], span: int, window_s: float) -> dict[str, builtins.list[tuple[str, int]]]:
        if not ids or span < 1:
            return {}
        d = self.dialect
        window = timedelta(seconds=window_s)
        found: dict[str, builtins.list[tuple[str, int]]] = {}
        with self._reading() as conn:
            targets = conn.execute(
                d.q(f"SELECT id, namespace, created_at FROM memories WHERE {d.in_list('id')}"), (d.list_param(ids),)
            ).fetchall()
            # One statement for all targets: per target, the ``span`` rows before and after it
            # on the (namespace, created_at, id) index, tagged with the target and direction.
            parts: builtins.list[str] = []
            params: builtins.list[Any] = []
            side = (
                "SELECT * FROM (SELECT CAST(? AS TEXT), {step}, id, created_at FROM memories WHERE namespace = ? "
                "AND (created_at, id) {cmp} (?, ?) AND created_at {bound} ? ORDER BY created_at {order}, id {order} LIMIT ?) AS {name}"
            )
            for memory_id, namespace, created_at in targets:
                moment = d.load_ts(created_at)
                parts.append(side.format(step=-1, cmp="<", bound=">=", order="DESC", name=f"b{len(parts)}"))
                params += [memory_id, namespace, created_at, memory_id, d.ts(moment - window), span]
                parts.append(side.format(step=1, cmp=">", bound="<=", order="ASC", name=f"a{len(parts)}"))
                params += [memory_id, namespace, created_at, memory_id, d.ts(moment + window), span]
                found[memory_id] = []
            if not parts:
                return found
            rows = conn.execute(d.q(" UNION ALL ".join(parts)), params).fetchall()
        # Distances from write order (a compound SELECT does not promise its parts' order).
        sides: dict[tuple[str, int], builtins.list[tuple[Any, str]]] = {}
        for target, direction, other, created_at in rows:
            sides.setdefault((target, direction), []).append((created_at, other))
        for (target, direction), pairs in sides.items():
            pairs.sort()
            if direction < 0:
                found[target] += [(other, i - len(pairs)) for i, (_, other) in enumerate(pairs)]
            else:
                found[target] += [(other, i + 1) for i, (_, other) in enumerate(pairs)]
        for near in found.values():
            near.sort(key=lambda pair: pair[1])
        return found

    def stats(self, now: datetime, soon: datetime) -> Stats:
        d = self.dialect
        live = "(expires_at IS NULL OR expires_at > ?)"
        at = (d.ts(now),)
        with self._reading() as conn:
            total = conn.execute(d.q(f"SELECT count(*) FROM memories WHERE {live}"), at).fetchone()[0]
            tiers = conn.execute(d.q(f"SELECT tier, count(*) FROM memories WHERE {live} GROUP BY tier ORDER BY tier"), at).fetchall()
            spaces = conn.execute(
                d.q(f"SELECT namespace, count(*) FROM memories WHERE {live} GROUP BY namespace ORDER BY count(*) DESC, namespace"), at
            ).fetchall()
            expiring = conn.execute(
                d.q("SELECT count(*) FROM memories WHERE expires_at > ? AND expires_at <= ?"), (d.ts(now), d.ts(soon))
            ).fetchone()[0]
            links = conn.execute(f"SELECT count(*) FROM links WHERE {VISIBLE_LINK}").fetchone()[0]
            size = self._db_size(conn)
        return Stats(
            total=total,
            by_tier=[TierCount(tier=t, count=c) for t, c in tiers],
            by_namespace=[NamespaceCount(namespace=n, count=c) for n, c in spaces],
            expiring_soon=expiring,
            links_count=links,
            db_size_bytes=size,
        )

    # -- history, links, tombstones, vectors ---------------------------------------------

    def history(self, memory_id: str) -> builtins.list[HistoryEntry]:
        rows = self._rows(f"SELECT {HISTORY_COLUMNS} FROM history WHERE memory_id = ? ORDER BY id", (memory_id,))
        return [row_to_history(row, self.dialect) for row in rows]

    def history_many(self, ids: Sequence[str]) -> dict[str, builtins.list[HistoryEntry]]:
        """The history of each of ``ids``, oldest first, in one query (what a feed page ships)."""
        found: dict[str, builtins.list[HistoryEntry]] = {}
        if ids:
            d = self.dialect
            rows = self._rows(
                f"SELECT {HISTORY_COLUMNS} FROM history WHERE {d.in_list('memory_id')} ORDER BY memory_id, id", (d.list_param(ids),)
            )
            for row in rows:
                entry = row_to_history(row, d)
                found.setdefault(entry.memory_id, []).append(entry)
        return found

    def iter_history(self) -> Iterator[HistoryEntry]:
        rows = self._rows(f"SELECT {HISTORY_COLUMNS} FROM history ORDER BY id")
        yield from (row_to_history(row, self.dialect) for row in rows)

    def links(self, memory_id: str) -> builtins.list[Link]:
        rows = self._rows(
            f"SELECT {LINK_COLUMNS} FROM links WHERE (source_id = ? OR target_id = ?) AND {VISIBLE_LINK} ORDER BY created_at, {LINK_ORDER}",
            (memory_id, memory_id),
        )
        return [row_to_link(row) for row in rows]

    def iter_links(self) -> Iterator[Link]:
        rows = self._rows(f"SELECT {LINK_COLUMNS} FROM links WHERE {VISIBLE_LINK} ORDER BY {LINK_ORDER}")
        yield from (row_to_link(row) for row in rows)

    def links_among(self, ids: Collection[str]) -> builtins.list[Link]:
        if not ids:
            return []
        d = self.dialect
        wanted = set(ids)
        # by source through the link key; the target is checked here: a second list in SQL
        # made SQLite scan the whole list for each row (10k ids: 50 s instead of 0.1 s)
        rows = self._rows(
            f"SELECT {LINK_COLUMNS} FROM links WHERE {d.in_list('source_id')} AND {VISIBLE_LINK} ORDER BY {LINK_ORDER}",
            (d.list_param(wanted),),
        )
        return [link for link in map(row_to_link, rows) if link.target_id in wanted]

    def version_rows(self) -> builtins.list[tuple[str, str, str, dict[str, Any]]]:
        """``(kind, namespace, id, version)`` of every memory (``m``) and tombstone (``t``):
        what anti-entropy digests, read without building whole memories."""
        rows = self._rows("SELECT 'm', namespace, id, version FROM memories UNION ALL SELECT 't', namespace, id, version FROM tombstones")
        return [(kind, ns, mid, self.dialect.load_json(version)) for kind, ns, mid, version in rows]

    def tombstones_since(self, seq: int) -> builtins.list[Tombstone]:
        rows = self._rows(f"SELECT {TOMBSTONE_COLUMNS} FROM tombstones WHERE seq > ? ORDER BY seq, id", (seq,))
        return [row_to_tombstone(row, self.dialect) for row in rows]

    def _vector_feed(self, conn: Any, where: str, params: Sequence[Any]) -> tuple[builtins.list[VectorRow], builtins.list[str]]:
        """Vector upserts and removals matching ``where`` (the backend's idea of "since the
        cursor"), each by change number, then memory id."""
        d = self.dialect
        upserts = [
            VectorRow(mid, model, d.load_vector(vec))
            for mid, model, vec in conn.execute(
                d.q(f"SELECT memory_id, model, {d.vector_column} FROM vectors WHERE {where} ORDER BY seq, memory_id"), params
            )
        ]
        removed = [
            row[0] for row in conn.execute(d.q(f"SELECT memory_id FROM vector_removals WHERE {where} ORDER BY seq, memory_id"), params)
        ]
        return upserts, removed

    def vector_models(self) -> dict[str, int]:
        return dict(self._rows("SELECT model, count(*) FROM vectors GROUP BY model ORDER BY model"))

    def get_vectors(self, ids: Sequence[str]) -> builtins.list[VectorRow]:
        if not ids:
            return []
        d = self.dialect
        rows = self._rows(
            f"SELECT memory_id, model, {d.vector_column} FROM vectors WHERE {d.in_list('memory_id')} ORDER BY memory_id",
            (d.list_param(ids),),
        )
        return [VectorRow(mid, model, d.load_vector(vec)) for mid, model, vec in rows]

    def vectors_complete(self, model: str) -> bool:
        """True when every live memory has a vector of ``model``, from two counts: a vector
        leaves with its memory (same transaction), so equal counts mean none is missing.
        Recall asks after every write; the anti-join of :meth:`ids_missing_vectors` costs
        ~20x more at 100k memories and is needed only when this says False."""
        rows = self._rows("SELECT (SELECT count(*) FROM memories) - (SELECT count(*) FROM vectors WHERE model = ?)", (model,))
        return int(rows[0][0]) == 0

    def ids_missing_vectors(self, model: str) -> builtins.list[str]:
        rows = self._rows(
            "SELECT m.id FROM memories m LEFT JOIN vectors v ON v.memory_id = m.id AND v.model = ? "
            f"WHERE v.memory_id IS NULL ORDER BY m.{self.dialect.rowid}",
            (model,),
        )
        return [row[0] for row in rows]

    # -- the change feed and federation --------------------------------------------------

    def node_id(self) -> str:
        with self._reading() as conn:
            return str(read_meta(conn, self.dialect, "node_id"))

    def meta_value(self, key: str) -> str | None:
        with self._reading() as conn:
            return read_meta(conn, self.dialect, key)

    def purged_seq(self) -> int:
        with self._reading() as conn:
            value = read_meta(conn, self.dialect, "purged_seq")
        return int(value) if value else 0

    def _changes_page(self, conn: Any, since: int, head: int, limit: int, skip_node: str | None = None) -> Changes:
        """One page of the feed up to ``head`` (read in the caller's snapshot, if any): rows
        by change number, rows of one number by key, never splitting a number across pages.

        ``skip_node`` leaves out the memories and tombstones whose current version that node
        wrote (it holds that version or a later one: sending it back is pure echo), in SQL,
        so a node that just applied a peer's 100k changes does not read them all back to find
        that none is for that peer; the page still covers its whole range."""
        d = self.dialect
        skip = f" AND COALESCE({d.json_text('version', 'node')}, '') <> ?"

        def read(name: str, sql: str, where: str, params: tuple[Any, ...]) -> list[Any]:
            if skip_node is not None and name in FEED_SKIPS_WRITER:
                where, params = where.replace(" ORDER BY", skip + " ORDER BY", 1), (*params[:2], skip_node, *params[2:])
            elif skip_node is not None and name == "bus_messages":  # a message goes back to the node that wrote it: echo
                where, params = where.replace(" ORDER BY", " AND origin <> ? ORDER BY", 1), (*params[:2], skip_node, *params[2:])
            return list(conn.execute(d.q(f"{sql} {where}"), params).fetchall())

        rows = {
            name: read(name, sql, f"WHERE seq > ? AND seq <= ? ORDER BY seq, {key} LIMIT ?", (since, head, limit))
            for name, (sql, key) in FEED_QUERIES.items()
        }
        cut = cut_page(since, head, limit, [[r[0] for r in found] for found in rows.values()])
        if cut is None:
            cut = min(r[-1][0] for r in rows.values() if len(r) >= limit)
            rows = {
                name: read(name, sql, f"WHERE seq >= ? AND seq <= ? ORDER BY {key}", (cut, cut))
                for name, (sql, key) in FEED_QUERIES.items()
            }
        kept = {name: [r for r in found if r[0] <= cut] for name, found in rows.items()}
        return Changes(
            memories=[(r[0], row_to_memory(r[1:], d)) for r in kept["memories"]],
            tombstones=[(r[0], row_to_tombstone(r[1:], d)) for r in kept["tombstones"]],
            links=[(r[0], row_to_link(r[1:])) for r in kept["links"]],
            conflicts=[(r[0], row_to_conflict(r[1:], d)) for r in kept["conflicts"]],
            agents=[(r[0], row_to_agent(r[1:], d)) for r in kept["agents"]],
            upto=cut,
            more=cut < head,
            bus=[(r[0], bus_object("conversation", r)) for r in kept["bus_conversations"]]
            + [(r[0], bus_object("message", r)) for r in kept["bus_messages"]],
        )

    def bus_version_rows(self) -> builtins.list[tuple[str, str, str, str]]:
        """``(kind, conversation id, id, stamp)`` of every replicated bus conversation (``c``,
        stamped by its kind and token hash: it never changes) and message (``m``, by ``hlc@origin``):
        what anti-entropy digests, read without the bodies."""
        return [
            (str(kind), str(conversation), str(ident), str(stamp))
            for kind, conversation, ident, stamp in self._rows(
                f"SELECT 'c', id, id, kind || '|' || token_hash FROM bus_conversations WHERE {BUS_REPLICATED['conversation']} "
                f"UNION ALL SELECT 'm', conversation_id, id, hlc || '@' || {BUS_ORIGIN} FROM bus_messages "
                f"WHERE {BUS_REPLICATED['message']}"
            )
        ]

    def bus_items(self, conversation_ids: Sequence[str], message_ids: Sequence[str]) -> builtins.list[dict[str, Any]]:
        """The replicated bus conversations and messages with these ids, as the feed carries them
        (``{"conversation": …}`` first, then ``{"message": …}`` in transcript order): what
        anti-entropy ships for bus rows whose digests differ."""
        conversations = self._rows_in(FEED_QUERIES["bus_conversations"][0], conversation_ids, "id")
        messages = self._rows_in(FEED_QUERIES["bus_messages"][0], message_ids, "hlc, origin, id")
        return [bus_object("conversation", r) for r in conversations] + [bus_object("message", r) for r in messages]

    def _rows_in(self, sql: str, ids: Sequence[str], order: str) -> builtins.list[Any]:
        if not ids:
            return []
        return self._rows(f"{sql} WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY {order}", tuple(ids))

    def conflicts(self, memory_id: str | None = None) -> builtins.list[Conflict]:
        sql = f"SELECT {CONFLICT_COLUMNS} FROM conflicts"
        rows = self._rows(sql + " ORDER BY id") if memory_id is None else self._rows(sql + " WHERE memory_id = ? ORDER BY id", (memory_id,))
        return [row_to_conflict(row, self.dialect) for row in rows]

    def peers(self) -> builtins.list[PeerState]:
        return [row_to_peer(row) for row in self._rows(f"SELECT {PEER_COLUMNS} FROM peers ORDER BY node_id")]

    # -- agents, keys, quotas, the archive -----------------------------------------------

    def agents(self) -> builtins.list[Agent]:
        return [row_to_agent(row, self.dialect) for row in self._rows(f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY agent_id")]

    def api_keys(self, include_revoked: bool = False) -> builtins.list[ApiKey]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = self._rows(f"SELECT {KEY_COLUMNS} FROM api_keys {where} ORDER BY created_at, id")
        return [ApiKey.model_validate(key_fields(row, self.dialect)) for row in rows]

    def api_key(self, key_id: str) -> StoredApiKey | None:
        rows = self._rows(f"SELECT {KEY_COLUMNS}, key_hash FROM api_keys WHERE id = ?", (key_id,))
        return StoredApiKey.model_validate({**key_fields(rows[0], self.dialect), "key_hash": rows[0][len(KEY_FIELDS)]}) if rows else None

    def has_api_keys(self) -> bool:
        return bool(self._rows("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1"))

    def write_counts(self, day: str) -> dict[str, int]:
        return dict(self._rows("SELECT namespace, count FROM write_counts WHERE day = ? ORDER BY namespace", (day,)))

    def archived(self, flt: Filter, limit: int) -> builtins.list[ArchivedMemory]:
        where, params = archive_filter_sql(flt, self.dialect)
        rows = self._rows(
            f"SELECT a.data, a.archived_at, a.reason FROM archive a WHERE {where} ORDER BY a.archived_at DESC, a.id LIMIT ?",
            [*params, limit],
        )
        return [row_to_archived(row, self.dialect) for row in rows]

    def archive_stats(self, flt: Filter) -> ArchiveStats:
        d = self.dialect
        where, params = archive_filter_sql(flt, d)
        with self._reading() as conn:
            total, oldest, newest = conn.execute(
                d.q(f"SELECT count(*), min(a.archived_at), max(a.archived_at) FROM archive a WHERE {where}"), params
            ).fetchone()
            spaces = conn.execute(
                d.q(f"SELECT a.namespace, count(*) FROM archive a WHERE {where} GROUP BY a.namespace ORDER BY count(*) DESC, a.namespace"),
                params,
            ).fetchall()
        return ArchiveStats(
            total=total, by_namespace=[NamespaceCount(namespace=n, count=c) for n, c in spaces], oldest=oldest, newest=newest
        )
