"""Backend benchmark: SQLite vs PostgreSQL side by side, and migration throughput.

Measures, on each backend, through the public Python API (keyword-only, so the numbers are
the store's and not the embedder's):

- single writes: ``Memory.add`` one at a time (p50/p95 latency, writes/s);
- batched writes: ``Memory.add_many`` in batches of 500 (memories/s);
- keyword recall: ``Memory.recall(mode="keyword")`` over the loaded corpus (p50/p95, queries/s);

then ``memmesh.io.migrate`` throughput (memories/s) SQLite → PostgreSQL and back, without
and with stored 384-d vectors (copied, never re-embedded). PostgreSQL is ``--pg-dsn`` /
``$MEMMESH_BENCH_PG_DSN``, else a throw-away pgserver (PostgreSQL 18 + pgvector).

    python bench/backend_bench.py [--memories 5000] [--singles 300] [--queries 200] [--out bench/results/backend.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.config import load_settings
from memmesh.io.migrate import migrate
from memmesh.store.base import Store, open_store

TOPICS = [
    "deploy",
    "billing",
    "onboarding",
    "security",
    "latency",
    "schema",
    "backup",
    "release",
    "incident",
    "roadmap",
    "pricing",
    "search",
    "cache",
    "queue",
    "index",
    "replica",
    "quota",
    "audit",
    "tokens",
    "agents",
]
WORDS = [
    "alice",
    "bob",
    "team",
    "friday",
    "postgres",
    "sqlite",
    "customer",
    "contract",
    "invoice",
    "server",
    "rollback",
    "migration",
    "ticket",
    "budget",
    "meeting",
    "design",
    "review",
    "bug",
    "metric",
    "alert",
    "policy",
    "vector",
]


def corpus(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Deterministic memory-like texts: a topic, some words, a number."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        words = " ".join(rng.choice(WORDS) for _ in range(12))
        items.append({"content": f"{topic} note {i}: {words}", "namespace": f"bench/{topic}", "tags": [topic], "tier": "long"})
    return items


def queries(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(TOPICS)} {rng.choice(WORDS)} {rng.choice(WORDS)}" for _ in range(n)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def open_memory(url: str, data_dir: Path) -> Memory:
    settings = load_settings(None, overrides={"data_dir": str(data_dir), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    return Memory(url, settings)


def bench_backend(url: str, data_dir: Path, n: int, singles: int, nq: int) -> dict[str, Any]:
    """Single writes, batched writes and keyword recall on one (empty) store."""
    mem = open_memory(url, data_dir)
    try:
        items = corpus(n + singles)
        lat = []
        for item in items[:singles]:
            start = time.perf_counter()
            mem.add(item["content"], namespace=item["namespace"], tags=item["tags"], tier="long")
            lat.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        for i in range(singles, len(items), 500):
            mem.add_many(items[i : i + 500])
        batch_s = time.perf_counter() - start
        qlat = []
        for query in queries(nq):
            start = time.perf_counter()
            mem.recall(query, mode="keyword", top_k=10, touch=False)
            qlat.append((time.perf_counter() - start) * 1000)
        return {
            "single_write_p50_ms": round(statistics.median(lat), 3),
            "single_write_p95_ms": round(pct(lat, 0.95), 3),
            "single_writes_per_s": round(singles / (sum(lat) / 1000), 1),
            "batched_memories_per_s": round(n / batch_s, 1),
            "keyword_recall_p50_ms": round(statistics.median(qlat), 3),
            "keyword_recall_p95_ms": round(pct(qlat, 0.95), 3),
            "keyword_recalls_per_s": round(nq / (sum(qlat) / 1000), 1),
            "memories": n + singles,
        }
    finally:
        mem.close()


def add_vectors(store: Store, dim: int = 384) -> int:
    """Give every memory a random unit vector (as if embedded), to measure copying them."""
    ids = [m.id for m in store.iter_memories()]
    rng = np.random.default_rng(3)
    with store.write() as tx:
        seq = tx.next_seq()
        for memory_id in ids:
            vec = rng.standard_normal(dim).astype(np.float32)
            tx.put_vector(memory_id, "bench-384", vec / np.linalg.norm(vec), seq)
    return len(ids)


def timed_migrate(source: Store, target: Store) -> dict[str, Any]:
    start = time.perf_counter()
    report = migrate(source, target, now=system_clock())
    seconds = time.perf_counter() - start
    return {
        "memories": report.memories_written,
        "vectors": report.vectors_written,
        "seconds": round(seconds, 3),
        "memories_per_s": round(report.memories_written / seconds, 1),
        "errors": len(report.errors),
    }


@contextmanager
def postgres(dsn: str | None) -> Iterator[Callable[[], str]]:
    """A factory of fresh database URLs on the given server, or on a throw-away pgserver."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    root = None
    server = None
    if dsn is None:
        import pgserver

        root = Path(tempfile.mkdtemp(prefix="memmesh-bench-pg-"))
        server = pgserver.get_server(root / "data", cleanup_mode="delete")
        dsn = server.get_uri()
    created: list[str] = []
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if k != "dbname" and v not in (None, "")}

    def fresh() -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"postgresql:///{name}?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))

    try:
        yield fresh
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if server is not None:
            server.cleanup()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="memmesh-bench-"))
    try:
        with postgres(args.pg_dsn or os.environ.get("MEMMESH_BENCH_PG_DSN")) as fresh_pg:
            results: dict[str, Any] = {"backends": {}, "migrate": {}}
            results["backends"]["sqlite"] = bench_backend(f"sqlite:///{work / 'bench.db'}", work, args.memories, args.singles, args.queries)
            results["backends"]["postgres"] = bench_backend(fresh_pg(), work, args.memories, args.singles, args.queries)
            sq, pg = results["backends"]["sqlite"], results["backends"]["postgres"]
            results["ratios_postgres_over_sqlite"] = {key: round(pg[key] / sq[key], 3) for key in sq if key != "memories"}

            source = open_store(f"sqlite:///{work / 'bench.db'}")
            target_pg = open_store(fresh_pg())
            back = open_store(f"sqlite:///{work / 'back.db'}")
            results["migrate"]["sqlite_to_postgres"] = timed_migrate(source, target_pg)
            results["migrate"]["postgres_to_sqlite"] = timed_migrate(target_pg, back)
            add_vectors(source)
            with_vectors_pg = open_store(fresh_pg())
            results["migrate"]["sqlite_to_postgres_with_384d_vectors"] = timed_migrate(source, with_vectors_pg)
            results["migrate"]["rerun_writes"] = timed_migrate(source, with_vectors_pg)["memories"]
            for store in (source, target_pg, back, with_vectors_pg):
                store.close()
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(results: dict[str, Any]) -> None:
    sq, pg, ratio = results["backends"]["sqlite"], results["backends"]["postgres"], results["ratios_postgres_over_sqlite"]
    print(f"{'metric':32} {'sqlite':>12} {'postgres':>12} {'pg/sqlite':>10}")
    for key in ratio:
        print(f"{key:32} {sq[key]:>12} {pg[key]:>12} {ratio[key]:>10}")
    print()
    print(f"{'migration':40} {'memories':>9} {'vectors':>8} {'seconds':>8} {'memories/s':>11}")
    for name, row in results["migrate"].items():
        if isinstance(row, dict):
            print(f"{name:40} {row['memories']:>9} {row['vectors']:>8} {row['seconds']:>8} {row['memories_per_s']:>11}")
    print(f"re-run of the last migration wrote {results['migrate']['rerun_writes']} memories")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=5000, help="memories loaded with add_many (default 5000)")
    parser.add_argument("--singles", type=int, default=300, help="memories stored one add() at a time (default 300)")
    parser.add_argument("--queries", type=int, default=200, help="keyword recalls timed (default 200)")
    parser.add_argument("--pg-dsn", default=None, help="PostgreSQL server to use (default: $MEMMESH_BENCH_PG_DSN or pgserver)")
    parser.add_argument("--out", default="bench/results/backend.json", help="JSON results file")
    args = parser.parse_args()
    results = run(args)
    results["meta"] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "memories": args.memories,
        "singles": args.singles,
        "queries": args.queries,
    }
    print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
