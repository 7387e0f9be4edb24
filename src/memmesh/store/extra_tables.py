"""The feature tables a copy of the store carries beside the memories (migrate, restore, the
portable backup), with their columns in copy order. One list, so the PostgreSQL logical
backup (:mod:`memmesh.store.logical`) and the copy (:mod:`memmesh.io.extras`) agree; why
each table is carried, and which are not, is said in :mod:`memmesh.io.extras`."""

from __future__ import annotations

from typing import Any

CARRIED: dict[str, tuple[str, ...]] = {
    # the bus first: its chat rows take change numbers, which the subscriptions then start after
    "bus_conversations": (
        "id",
        "kind",
        "topic",
        "participants",
        "token_hash",
        "created_by",
        "created_at",
        "last_activity",
        "timeout_s",
        "archived_at",
        "last_seq",
    ),
    "bus_messages": (
        "conversation_id",
        "seq",
        "id",
        "sender",
        "recipient",
        "body",
        "created_at",
        "state",
        "attempts",
        "lease_owner",
        "lease_token",
        "lease_expires",
        "history",
        "result",
        "dead_reason",
        "origin",
        "hlc",
    ),
    "bus_cursors": ("conversation_id", "agent", "delivered_seq", "acked_seq"),
    "subscriptions": (
        "id",
        "namespace",
        "url",
        "secret",
        "events",
        "owner_agent",
        "owner_key",
        "owner_role",
        "owner_scope",
        "created_at",
        "seen_seq",
        "state",
    ),
    "subscription_deliveries": (
        "id",
        "subscription_id",
        "event",
        "memory_id",
        "payload",
        "state",
        "attempts",
        "next_attempt",
        "last_error",
        "last_status",
        "created_at",
        "delivered_at",
    ),
    "inbox_messages": ("id", "recipient", "sender", "subject", "body", "namespace", "memory_id", "created_at", "read_at"),
    "extraction_slots": ("namespace", "slot_key", "memory_id"),
    "session_turns": ("session_id", "namespace", "turns", "created_at", "updated_at"),
}
"""Table → its columns (every table exists in every backend from schema 21 on). A bus row's
``change_seq`` is left out: the target's trigger numbers it in the target's change feed."""


def read_rows(store: Any, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` (one of :data:`CARRIED`) through the store's read connection
    (inside ``store.snapshot()`` that is the snapshot's)."""
    columns = CARRIED[table]
    with store.reading() as conn:
        return [tuple(r) for r in conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {columns[0]}").fetchall()]


__all__ = ["CARRIED", "read_rows"]
