"""Importer benchmark (issue 8): throughput of each importer, first run and idempotent re-run.

Builds realistic sources of N records (a legacy SQLite table with 4 tenants and a mark
column, an MCP memory.jsonl graph, a mem0 export and a mem0 history db), imports each into
a fresh keyword-only memmesh store through the importer functions, then imports it again
(which must write 0) and reports records/s for the dry run, the first run and the re-run.
With ``--embedder minilm`` the first run includes embedding (the default configuration).

    python bench/import_bench.py --rows 5000 --out bench/results/import.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.io.importers import LegacyTable, import_legacy, import_mcp_memory, import_mem0, import_mem0_history
from memmesh.io.importers.reports import ImportReport
from memmesh.model import LOCAL_PRINCIPAL

VOCAB = [f"w{n}" for n in range(5000)]


def sentence(rng: random.Random, words: int = 20) -> str:
    """20 words from a seeded vocabulary (the PEERS.md workload)."""
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def legacy_source(path: Path, rows: int, rng: random.Random) -> Callable[[Memory, bool], ImportReport]:
    tenants = ["agents-team", "hongming", "chloe-dong", "reno-stars"]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE agent_memories (id INTEGER PRIMARY KEY, workspace_id TEXT, content TEXT, migrated_at TEXT)")
        conn.executemany(
            "INSERT INTO agent_memories (id, workspace_id, content) VALUES (?, ?, ?)",
            [(i, tenants[i % 4], sentence(rng)) for i in range(1, rows + 1)],
        )
    conn.close()
    spec = LegacyTable(
        url=f"sqlite:///{path.absolute()}", table="agent_memories", tenant_col="workspace_id", source="agent", mark_col="migrated_at"
    )
    return lambda mem, dry: import_legacy(mem.service, spec, dry_run=dry, principal=LOCAL_PRINCIPAL)


def mcp_source(path: Path, rows: int, rng: random.Random) -> Callable[[Memory, bool], ImportReport]:
    per_entity = 9
    entities = [
        {
            "type": "entity",
            "name": f"Entity_{n}",
            "entityType": rng.choice(["person", "project", "org"]),
            "observations": [sentence(rng) for _ in range(per_entity)],
        }
        for n in range(max(1, rows // (per_entity + 1)))
    ]
    relations = [
        {
            "type": "relation",
            "from": f"Entity_{n}",
            "to": f"Entity_{rng.randrange(len(entities))}",
            "relationType": rng.choice(["works_at", "part_of", "knows"]),
        }
        for n in range(len(entities))
    ]
    path.write_text("\n".join(json.dumps(r, separators=(",", ":")) for r in [*entities, *relations]))
    text = path.read_text()
    return lambda mem, dry: import_mcp_memory(mem.service, text, dry_run=dry, principal=LOCAL_PRINCIPAL)


def mem0_source(path: Path, rows: int, rng: random.Random) -> Callable[[Memory, bool], ImportReport]:
    users = [f"user{n}" for n in range(20)]
    items = [
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "memory": sentence(rng),
            "hash": "",
            "metadata": {"n": n},
            "created_at": "2025-06-01T10:00:00-07:00",
            "updated_at": None,
            "user_id": rng.choice(users),
        }
        for n in range(rows)
    ]
    path.write_text(json.dumps({"results": items}))
    text = path.read_text()
    return lambda mem, dry: import_mem0(mem.service, text, dry_run=dry, principal=LOCAL_PRINCIPAL)


def history_source(path: Path, rows: int, rng: random.Random) -> Callable[[Memory, bool], ImportReport]:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE history (id TEXT PRIMARY KEY, memory_id TEXT, old_memory TEXT, new_memory TEXT, event TEXT, "
            "created_at DATETIME, updated_at DATETIME, is_deleted INTEGER, actor_id TEXT, role TEXT)"
        )
        records = []
        for _ in range(rows):
            memory_id, text = str(uuid.UUID(int=rng.getrandbits(128))), sentence(rng)
            records.append((str(uuid.uuid4()), memory_id, None, text, "ADD", "2025-06-01", "2025-06-01", 0, None, "user"))
            if rng.random() < 0.2:
                records.append((str(uuid.uuid4()), memory_id, text, sentence(rng), "UPDATE", "2025-06-02", "2025-06-02", 0, None, "user"))
            if rng.random() < 0.05:
                records.append((str(uuid.uuid4()), memory_id, text, None, "DELETE", None, None, 1, None, "user"))
        conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
    conn.close()
    return lambda mem, dry: import_mem0_history(mem.service, path, dry_run=dry, principal=LOCAL_PRINCIPAL)


SOURCES = {"sql": legacy_source, "mcp-memory": mcp_source, "mem0": mem0_source, "mem0-history": history_source}


def run(name: str, rows: int, workdir: Path, embedder: str) -> dict[str, Any]:
    rng = random.Random(8)
    importer = SOURCES[name](workdir / f"source-{name}", rows, rng)
    embeddings: dict[str, Any] = {"provider": "none"} if embedder == "none" else {"provider": embedder}
    settings = load_settings(None, overrides={"data_dir": str(workdir), "embeddings": embeddings}, env={})
    mem = Memory(f"sqlite:///{workdir / f'target-{name}.db'}", settings)
    result: dict[str, Any] = {"format": name}
    for phase, dry in (("dry_run", True), ("first", False), ("rerun", False)):
        start = time.perf_counter()
        report = importer(mem, dry)
        seconds = time.perf_counter() - start
        records = report.totals.migrated + report.totals.skipped + report.totals.failed
        result[phase] = {
            "records": records,
            "written": report.written,
            "seconds": round(seconds, 3),
            "records_per_s": round(records / seconds) if seconds else None,
        }
    result["memories"] = mem.stats().total
    mem.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000, help="source records per format")
    parser.add_argument("--formats", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--embedder", default="none", help="none (keyword-only) or minilm")
    parser.add_argument("--out", type=Path, default=Path("bench/results/import.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="memmesh-import-bench-") as tmp:
        for name in args.formats:
            results.append(run(name, args.rows, Path(tmp), args.embedder))
    print(f"{'format':<14}{'records':>9}{'dry run/s':>11}{'first run/s':>13}{'written':>9}{'re-run/s':>10}{'re-run writes':>15}")
    for r in results:
        print(
            f"{r['format']:<14}{r['first']['records']:>9}{r['dry_run']['records_per_s']:>11}{r['first']['records_per_s']:>13}"
            f"{r['first']['written']:>9}{r['rerun']['records_per_s']:>10}{r['rerun']['written']:>15}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "import",
                "rows": args.rows,
                "embedder": args.embedder,
                "machine": platform.platform(),
                "python": platform.python_version(),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
