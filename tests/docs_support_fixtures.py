"""Inputs that a page assumes its reader already has, made for the docs harness.

importers.md (and the README) import "your" MCP ``memory.jsonl``, a mem0 export, mem0's
``history.db`` and a legacy ``agent_memories`` table. The harness writes realistic ones
(the importer tests' fixtures, well-formed rows only) into the page's sandbox before its
examples run, where the page says they are: the working directory, ``~/.mem0`` and a
basic-memory project in ``~/basic-memory``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.docs_support import PageRun
from tests.importers.conftest import GOOD_ROWS, LEGACY_DDL, MCP_ENTITIES, MCP_RELATIONS, Mem0History, legacy_rows, mcp_lines, mem0_item


def importer_sources(run: PageRun) -> None:
    cwd = run.cwd
    (cwd / "memory.jsonl").write_text(mcp_lines(MCP_ENTITIES, MCP_RELATIONS), encoding="utf-8")
    export = {
        "results": [
            mem0_item("Likes to play cricket on weekends"),
            mem0_item("Is vegetarian and allergic to nuts", metadata={"category": "food"}),
            mem0_item("Prefers dark mode in every editor", user="bob"),
        ]
    }
    (cwd / "mem0.json").write_text(json.dumps(export), encoding="utf-8")
    (run.home / ".mem0").mkdir(exist_ok=True)
    for path in (cwd / "history.db", run.home / ".mem0" / "history.db"):
        history = Mem0History(path)
        kept = history.add("Works remotely from Lisbon")
        history.update(kept, "Works remotely from Lisbon", "Works remotely from Porto")
        history.add("Has a dog called Biscuit")
    with sqlite3.connect(cwd / "legacy.db") as conn:
        conn.execute(LEGACY_DDL)
        conn.executemany("INSERT INTO agent_memories (id, workspace_id, content) VALUES (?, ?, ?)", legacy_rows()[:GOOD_ROWS])
    conn.close()
    basic_memory_project(run.home / "basic-memory")


def basic_memory_project(root: Path) -> None:
    """Two notes in basic-memory's format: front matter, observations, a relation."""
    (root / "people").mkdir(parents=True, exist_ok=True)
    (root / "people" / "alice.md").write_text(
        "---\ntitle: Alice\ntype: person\ntags: [team]\n---\n\n# Alice\n\nRuns the platform team.\n\n"
        "## Observations\n- [preference] Drinks green tea in the morning #drinks\n- [role] Owns the deploy pipeline\n\n"
        "## Relations\n- works_on [[Deploy Pipeline]]\n",
        encoding="utf-8",
    )
    (root / "deploy-pipeline.md").write_text(
        "---\ntitle: Deploy Pipeline\ntype: project\n---\n\n# Deploy Pipeline\n\n"
        "## Observations\n- [rule] Deploys are frozen on Fridays #ops\n",
        encoding="utf-8",
    )


PAGE_SETUP: dict[str, Callable[[PageRun], None]] = {"README.md": importer_sources, "importers.md": importer_sources}
