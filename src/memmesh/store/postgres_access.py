"""PostgreSQL twins of the SQLite store's agent, API-key, write-quota and archive primitives.

Kept apart from :mod:`memmesh.store.postgres` (memories, recall, vectors) so each module
holds one idea; :class:`~memmesh.store.postgres.PostgresStore` and its write transaction
mix these in. Semantics mirror ``store/sqlite.py`` exactly (same ordering, same filters).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memmesh.model import Agent, ApiKey, ArchivedMemory, ArchiveStats, Memory, NamespaceCount, StoredApiKey
from memmesh.store.base import Filter

AGENT_COLUMNS = "agent_id, display_name, role, namespaces, created_at, updated_at"
KEY_COLUMNS = "id, agent_id, role, namespaces, created_at, revoked_at"


def archive_filter_sql(flt: Filter) -> tuple[str, list[Any]]:
    """WHERE clauses for the archive table (alias ``a``): namespace subtree, scopes and ids only."""
    clauses: list[str] = []
    params: list[Any] = []
    for roots in ([flt.namespace] if flt.namespace else None, flt.scopes):
        if roots is not None:
            subtree = "(a.namespace = %s OR (a.namespace > %s AND a.namespace < %s))"
            clauses.append("(" + (" OR ".join([subtree] * len(roots)) or "FALSE") + ")")
            for root in roots:
                params += [root, root + "/", root + "0"]
    if flt.ids is not None:
        clauses.append("a.id = ANY(%s::text[])")
        params.append(list(flt.ids))
    return (" AND ".join(clauses) or "TRUE"), params


class AccessReads:
    """Reads of agents, keys, write counts and the archive (the store provides ``_reading()``)."""

    def agents(self) -> list[Agent]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY agent_id").fetchall()
        return [_agent(row) for row in rows]

    def api_keys(self, include_revoked: bool = False) -> list[ApiKey]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys {where} ORDER BY created_at, id").fetchall()
        return [ApiKey.model_validate(_key_fields(row)) for row in rows]

    def api_key(self, key_id: str) -> StoredApiKey | None:
        with self._reading() as conn:
            row = conn.execute(f"SELECT {KEY_COLUMNS}, key_hash FROM api_keys WHERE id = %s", (key_id,)).fetchone()
        return StoredApiKey.model_validate({**_key_fields(row), "key_hash": row[6]}) if row else None

    def has_api_keys(self) -> bool:
        with self._reading() as conn:
            return conn.execute("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None

    def archived(self, flt: Filter, limit: int) -> list[ArchivedMemory]:
        where, params = archive_filter_sql(flt)
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT a.data, a.archived_at, a.reason FROM archive a WHERE {where} ORDER BY a.archived_at DESC, a.id LIMIT %s",
                [*params, limit],
            ).fetchall()
        return [_archived(row) for row in rows]

    def archive_stats(self, flt: Filter) -> ArchiveStats:
        where, params = archive_filter_sql(flt)
        with self._reading() as conn:
            total, oldest, newest = conn.execute(
                f"SELECT count(*), min(a.archived_at), max(a.archived_at) FROM archive a WHERE {where}", params
            ).fetchone()  # type: ignore[misc]
            spaces = conn.execute(
                f"SELECT a.namespace, count(*) FROM archive a WHERE {where} GROUP BY a.namespace ORDER BY count(*) DESC, a.namespace",
                params,
            ).fetchall()
        return ArchiveStats(
            total=total, by_namespace=[NamespaceCount(namespace=n, count=c) for n, c in spaces], oldest=oldest, newest=newest
        )

    def write_counts(self, day: str) -> dict[str, int]:
        with self._reading() as conn:
            return dict(conn.execute("SELECT namespace, count FROM write_counts WHERE day = %s", (day,)).fetchall())  # type: ignore[arg-type]


class AccessWrites:
    """Writes of agents, keys, write counts and the archive (needs ``conn`` in a transaction)."""

    conn: psycopg.Connection

    def get_agent(self, agent_id: str) -> Agent | None:
        row = self.conn.execute(f"SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = %s", (agent_id,)).fetchone()
        return _agent(row) if row else None

    def put_agent(self, agent: Agent) -> None:
        self.conn.execute(
            f"INSERT INTO agents ({AGENT_COLUMNS}, seq) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (agent_id) DO UPDATE SET "
            "display_name = EXCLUDED.display_name, role = EXCLUDED.role, namespaces = EXCLUDED.namespaces, "
            "created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, seq = EXCLUDED.seq",
            (
                agent.agent_id,
                agent.display_name,
                agent.role,
                Jsonb(agent.namespaces),
                agent.created_at,
                agent.updated_at,
                self.next_seq(),  # type: ignore[attr-defined]  # agents replicate: they are in the change feed
            ),
        )

    def insert_api_key(self, key: StoredApiKey) -> None:
        self.conn.execute(
            f"INSERT INTO api_keys ({KEY_COLUMNS}, key_hash, prefix) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (key.id, key.agent_id, key.role, Jsonb(key.namespaces), key.created_at, key.revoked_at, key.key_hash, key.id),
        )

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        return self.conn.execute("UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (at, key_id)).rowcount == 1

    def count_writes(self, namespace: str, day: str, n: int) -> int:
        return int(
            self.conn.execute(
                "INSERT INTO write_counts (namespace, day, count) VALUES (%s, %s, %s) "
                "ON CONFLICT (namespace, day) DO UPDATE SET count = write_counts.count + EXCLUDED.count RETURNING count",
                (namespace, day, n),
            ).fetchone()[0]
        )  # type: ignore[index]

    def take_archived(self, memory_id: str) -> ArchivedMemory | None:
        row = self.conn.execute("DELETE FROM archive WHERE id = %s RETURNING data, archived_at, reason", (memory_id,)).fetchone()
        return _archived(row) if row else None

    def purge_archive(self, flt: Filter, before: datetime | None = None) -> int:
        where, params = archive_filter_sql(flt)
        if before is not None:
            where += " AND a.archived_at < %s"
            params.append(before)
        return self.conn.execute(f"DELETE FROM archive AS a WHERE {where}", params).rowcount


def _agent(row: Sequence[Any]) -> Agent:
    agent_id, display_name, role, namespaces, created_at, updated_at = row
    return Agent(
        agent_id=agent_id, display_name=display_name, role=role, namespaces=namespaces, created_at=created_at, updated_at=updated_at
    )


def _key_fields(row: Sequence[Any]) -> dict[str, Any]:
    key_id, agent_id, role, namespaces, created_at, revoked_at = tuple(row)[:6]
    return {"id": key_id, "agent_id": agent_id, "role": role, "namespaces": namespaces, "created_at": created_at, "revoked_at": revoked_at}


def _archived(row: Sequence[Any]) -> ArchivedMemory:
    data, archived_at, reason = row
    return ArchivedMemory(memory=Memory.model_validate(data), archived_at=archived_at, reason=reason)


__all__ = ["AccessReads", "AccessWrites", "archive_filter_sql"]
