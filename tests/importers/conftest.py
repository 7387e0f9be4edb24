"""Realistic source fixtures for the importers, written the way each foreign system writes them.

- ``memory.jsonl`` as the MCP memory server saves it (compact ``JSON.stringify`` lines,
  entities then relations, joined by newlines with no trailing one);
- a mem0 export as ``Memory.get_all()`` returns it (``{"results": [MemoryItem, ...]}``,
  Pacific-time ISO timestamps, md5 hashes, metadata only when there is some);
- mem0's ``history.db`` with its real schema and the rows its add/update/delete write;
- a legacy ``agent_memories`` table with four tenants, as in a per-tenant backfill.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.conftest import PgServer, pg_server  # noqa: F401  (the session PostgreSQL, reused)

MCP_ENTITIES = [
    {
        "name": "John_Smith",
        "entityType": "person",
        "observations": ["Speaks fluent Spanish", "Graduated in 2019", "Prefers morning meetings"],
    },
    {"name": "Anthropic", "entityType": "organization", "observations": ["Builds Claude", "Based in San Francisco"]},
    {"name": "Project Falcon", "entityType": "project", "observations": ["Deadline is March 3rd", "Uses PostgreSQL"]},
    {"name": "Mary Jones", "entityType": "person", "observations": []},
]
MCP_RELATIONS = [
    {"from": "John_Smith", "to": "Anthropic", "relationType": "works_at"},
    {"from": "John_Smith", "to": "Project Falcon", "relationType": "leads"},
    {"from": "Project Falcon", "to": "Anthropic", "relationType": "is part of"},
    {"from": "Mary Jones", "to": "John_Smith", "relationType": "knows"},
]
MCP_OBSERVATIONS = sum(len(e["observations"]) for e in MCP_ENTITIES)


def mcp_lines(entities: list[dict[str, Any]], relations: list[dict[str, Any]]) -> str:
    """The server's saveGraph: one compact JSON object per line, no trailing newline."""
    lines = [json.dumps({"type": "entity", **e}, separators=(",", ":")) for e in entities]
    lines += [json.dumps({"type": "relation", **r}, separators=(",", ":")) for r in relations]
    return "\n".join(lines)


@pytest.fixture
def mcp_file(tmp_path: Path) -> Path:
    path = tmp_path / "memory.jsonl"
    path.write_text(mcp_lines(MCP_ENTITIES, MCP_RELATIONS), encoding="utf-8")
    return path


def mem0_item(text: str, user: str | None = "alice", **extra: Any) -> dict[str, Any]:
    """One MemoryItem as mem0's get_all formats it."""
    item: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "memory": text,
        "hash": hashlib.md5(text.encode()).hexdigest(),
        "created_at": "2025-06-01T10:00:00.123456-07:00",
        "updated_at": None,
    }
    if user:
        item["user_id"] = user
    item.update(extra)
    return item


@pytest.fixture
def mem0_export() -> dict[str, Any]:
    return {
        "results": [
            mem0_item("Likes to play cricket on weekends"),
            mem0_item("Is vegetarian and allergic to nuts", metadata={"category": "food"}),
            mem0_item("Always answer in British English", user=None, agent_id="support-bot", metadata={"memory_type": "procedural_memory"}),
            mem0_item("Prefers dark mode in every editor", user="bob", role="user", actor_id="bob"),
            mem0_item("Was in session 42 about travel plans", user=None, run_id="session-42"),
        ]
    }


HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id           TEXT PRIMARY KEY,
    memory_id    TEXT,
    old_memory   TEXT,
    new_memory   TEXT,
    event        TEXT,
    created_at   DATETIME,
    updated_at   DATETIME,
    is_deleted   INTEGER,
    actor_id     TEXT,
    role         TEXT
)"""


class Mem0History:
    """Writes history rows exactly as mem0's SQLiteManager.add_history does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite3.connect(path) as conn:
            conn.execute(HISTORY_SCHEMA)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, session_scope TEXT, role TEXT, "
                "content TEXT, name TEXT, created_at DATETIME)"
            )
        self.clock = 0

    def _row(self, memory_id: str, old: str | None, new: str | None, event: str, *, deleted: int = 0, stamped: bool = True) -> None:
        self.clock += 1
        at = f"2025-06-01T10:{self.clock:02d}:00.000000-07:00" if stamped else None
        with sqlite3.connect(self.path) as conn:
            conn.execute(
                "INSERT INTO history (id, memory_id, old_memory, new_memory, event, created_at, updated_at, "
                "is_deleted, actor_id, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), memory_id, old, new, event, at, at, deleted, None, "user"),
            )

    def add(self, text: str, memory_id: str | None = None) -> str:
        memory_id = memory_id or str(uuid.uuid4())
        self._row(memory_id, None, text, "ADD")
        return memory_id

    def update(self, memory_id: str, old: str, new: str) -> None:
        self._row(memory_id, old, new, "UPDATE")

    def delete(self, memory_id: str, old: str) -> None:
        # older mem0 versions wrote DELETE rows without timestamps: ordering must not rely on them
        self._row(memory_id, old, None, "DELETE", deleted=1, stamped=False)


@pytest.fixture
def mem0_history(tmp_path: Path) -> Mem0History:
    return Mem0History(tmp_path / "history.db")


TENANTS = {"agents-team": 12, "hongming": 5, "chloe-dong": 1, "reno-stars": 4}
GOOD_ROWS = sum(TENANTS.values())
TOPICS = [
    "deploy pipeline",
    "billing export",
    "onboarding checklist",
    "incident runbook",
    "customer escalation",
    "quarterly planning",
    "api rate limits",
    "search relevance",
    "data retention",
    "release notes",
    "pricing page",
    "support macros",
]


def legacy_rows() -> list[tuple[Any, ...]]:
    """(id, workspace_id, content) rows: per-tenant good rows, then the malformed ones."""
    rows: list[tuple[Any, ...]] = []
    next_id = 1
    for tenant, count in TENANTS.items():
        for n in range(count):
            topic = TOPICS[n % len(TOPICS)]
            rows.append((next_id, tenant, f"{tenant} note {n}: the {topic} decision was reviewed by {tenant} on day {n}"))
            next_id += 1
    rows += [
        (100, "hongming", "   "),  # blank content
        (101, "agents-team", "x" * 70_000),  # over limits.max_content_bytes
        (102, "bad tenant/..", "a row whose tenant makes an invalid namespace"),
        (103, None, "a row without a tenant"),
        (104, "reno-stars", None),  # NULL content
    ]
    return rows


MALFORMED = 5
LEGACY_DDL = (
    "CREATE TABLE agent_memories (id INTEGER PRIMARY KEY, workspace_id TEXT, content TEXT, "
    "created_at TEXT DEFAULT CURRENT_TIMESTAMP, migrated_at TEXT)"
)


@pytest.fixture
def legacy_db(tmp_path: Path) -> Path:
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as conn:
        conn.execute(LEGACY_DDL)
        conn.executemany("INSERT INTO agent_memories (id, workspace_id, content) VALUES (?, ?, ?)", legacy_rows())
    conn.close()
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.absolute()}"
