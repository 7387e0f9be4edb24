"""Backend benchmark: SQLite vs PostgreSQL side by side, and migration throughput.

Measures, on each backend, through the public Python API (keyword-only, so the numbers are
the store's and not the embedder's):

- single writes: ``Memory.add`` one at a time (p50/p95 latency, writes/s);
- batched writes: ``Memory.add_many`` in batches of 500 (memories/s);
- keyword recall: ``Memory.recall(mode="keyword")`` over the loaded corpus (p50/p95, queries/s);

then ``memmesh.io.migrate`` throughput (memories/s) SQLite → PostgreSQL and back, without
and with stored 384-d vectors (copied, never re-embedded), and PostgreSQL scale-out: 1, 2
and 3 nodes (separate processes, ``--threads`` writers each, adds and updates) writing to
one database for ``--seconds``, with writes/s and the time writers spent waiting on locks
(sampled from ``pg_stat_activity`` every 20 ms: backends of the database whose
``wait_event_type`` is ``Lock``). ``--baseline-src DIR`` runs the same scale-out with the
memmesh source in DIR (e.g. ``git archive <commit> src | tar -x -C DIR``) for comparison.
PostgreSQL is ``--pg-dsn`` / ``$MEMMESH_BENCH_PG_DSN``, else the test cluster that
``scripts/pg_test_server.py`` provides (system PostgreSQL + pgvector).

    python bench/backend_bench.py [--memories 5000] [--singles 300] [--queries 200] [--seconds 8] [--out bench/results/backend.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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
from memmesh.store.base import Store
from memmesh.store.open import open_store

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

    if dsn is None:
        script = Path(__file__).resolve().parent.parent / "scripts" / "pg_test_server.py"
        dsn = subprocess.run([sys.executable, str(script), "ensure"], capture_output=True, text=True, check=True).stdout.split("\n")[-2]
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


NODE_WORKER = """
import sys, threading, time
from memmesh import Memory
from memmesh.config import load_settings
from memmesh.errors import MemmeshError
url, data_dir, node, threads, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
settings = load_settings(None, overrides={"data_dir": data_dir, "embeddings": {"provider": "none"},
                                          "storage": {"pool_size": threads + 2}}, env={"MEMMESH_CONFIG": ""})
done, failed = [0] * threads, [0] * threads
with Memory(url, settings) as mem:
    def work(t):
        own = mem.add(f"node {node} thread {t} counter", tier="long")
        end, i = time.time() + seconds, 0
        while time.time() < end:
            i += 1
            try:
                if i % 3:
                    mem.add(f"node {node} thread {t} note {i} about topic {i % 17}", namespace=f"n{node}")
                else:
                    mem.update(own.id, content=f"node {node} thread {t} counter {i}")
                done[t] += 1
            except MemmeshError:
                failed[t] += 1
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers: w.start()
    for w in workers: w.join()
print(sum(done), sum(failed))
"""


def bench_scale_out(fresh_pg: Callable[[], str], work: Path, seconds: float, threads: int, src: str | None) -> dict[str, Any]:
    """Writes/s with 1, 2 and 3 node processes on one database, and lock waits sampled from the server."""
    import psycopg

    script = work / "node_worker.py"
    script.write_text(NODE_WORKER)
    env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
    out: dict[str, Any] = {}
    for nodes in (1, 2, 3):
        url = fresh_pg()
        if src is None:
            open_store(url).close()  # schema in place before the clock starts (a baseline makes its own)
        stop = threading.Event()
        samples: list[int] = []

        def sample(url: str = url, stop: threading.Event = stop, samples: list[int] = samples) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    ).fetchone()
                    samples.append(int(row[0]) if row else 0)
                    time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), url, str(work), str(n), str(threads), str(seconds)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for n in range(nodes)
        ]
        results = [proc.communicate(timeout=seconds * 10 + 120) for proc in procs]
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        for proc, (_out, err) in zip(procs, results, strict=True):
            if proc.returncode != 0:
                raise RuntimeError(f"node worker failed: {err[-2000:]}")
        writes = sum(int(o.split()[0]) for o, _ in results)
        failed = sum(int(o.split()[1]) for o, _ in results)
        lock_wait_s = statistics.fmean(samples) * elapsed if samples else 0.0  # mean waiting backends x wall time
        out[f"{nodes}_node{'s' if nodes > 1 else ''}"] = {
            "writers": nodes * threads,
            "writes": writes,
            "failed": failed,
            "writes_per_s": round(writes / seconds, 1),
            "lock_wait_s": round(lock_wait_s, 2),
            # The mean share of the writers that were waiting on a lock at any moment.
            "lock_wait_share": round(statistics.fmean(samples) / (nodes * threads), 4) if samples else 0.0,
        }
    return out


def bench_vector_search(fresh_pg: Callable[[], str], sizes: list[int], queries: int, dim: int = 384) -> dict[str, Any]:
    """Where SQL-side vector search starts to pay: for each store size, the in-process index
    (first load from the database, then exact numpy search per query) against pgvector's
    HNSW search in SQL (``PostgresStore.vector_search``), both with a namespace filter that
    passes half the rows. Decides ``storage.pg_vector_search_min``."""
    from memmesh.recall.index import VectorIndex
    from memmesh.store.base import Filter
    from memmesh.store.postgres import PostgresStore

    rng = np.random.default_rng(5)
    out: dict[str, Any] = {}
    for size in sizes:
        store = open_store(fresh_pg(), ann_index=True)
        assert isinstance(store, PostgresStore)
        vectors = rng.standard_normal((size, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        started = time.perf_counter()
        from memmesh.model import Memory as Record
        from memmesh.model import Version

        now = datetime.now(UTC)
        for start in range(0, size, 1000):
            with store.write() as tx:
                seq = tx.next_seq()
                chunk = range(start, min(size, start + 1000))
                tx.insert_memories(
                    [
                        Record(
                            id=f"m{i}",
                            namespace="a" if i % 2 else "b",
                            content=f"vector row {i}",
                            created_at=now,
                            updated_at=now,
                            content_hash=f"h{i}",
                            tier="long",
                            kind="fact",
                            priority=5,
                            confidence=1.0,
                            source="bench",
                            version=Version(node="bench", clock={"bench": 1}),
                        )
                        for i in chunk
                    ],
                    seq,
                )
                from memmesh.store.base import VectorRow

                tx.put_vectors([VectorRow(f"m{i}", "bench-model", vectors[i]) for i in chunk], seq)
        load_s = time.perf_counter() - started
        with psycopg_connect(store) as conn:
            conn.execute("ANALYZE vectors; ANALYZE memories")
        flt = Filter(now=now, namespace="a")
        qs = rng.standard_normal((queries, dim)).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        index = VectorIndex(store, "bench-model")
        started = time.perf_counter()
        index.refresh()
        first_load_s = time.perf_counter() - started
        allowed = {f"m{i}" for i in range(size) if i % 2}
        in_process, in_sql, agree = [], [], 0

        def accept(ids: list[str], allowed: set[str] = allowed) -> set[str]:
            return {i for i in ids if i in allowed}

        for q in qs:
            t0 = time.perf_counter()
            a = index.search(q, 10, accept=accept, fallback=lambda allowed=allowed: allowed)
            in_process.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = store.vector_search("bench-model", q, 10, flt)
            in_sql.append(time.perf_counter() - t0)
            agree += len({m for m, _ in a} & {m for m, _ in b})
        out[str(size)] = {
            "insert_with_hnsw_per_s": round(size / load_s, 1),
            "in_process_first_load_s": round(first_load_s, 3),
            "in_process_p50_ms": round(statistics.median(in_process) * 1000, 2),
            "in_sql_p50_ms": round(statistics.median(in_sql) * 1000, 2),
            "in_sql_p95_ms": round(sorted(in_sql)[int(len(in_sql) * 0.95) - 1] * 1000, 2),
            "sql_recall_at_10": round(agree / (10 * len(qs)), 3),
            "in_process_matrix_mb": round(size * dim * 4 / 1e6, 1),
        }
        store.close()
    return out


@contextmanager
def psycopg_connect(store: Store) -> Iterator[Any]:
    with store._reading() as conn:  # type: ignore[attr-defined]
        yield conn


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="memmesh-bench-"))
    try:
        with postgres(args.pg_dsn or os.environ.get("MEMMESH_BENCH_PG_DSN")) as fresh_pg:
            results: dict[str, Any] = {"backends": {}, "migrate": {}}
            if args.vector_sizes:
                results["vector_search"] = bench_vector_search(fresh_pg, [int(x) for x in args.vector_sizes.split(",")], 50)
            if args.only_scale_out:
                results["scale_out"] = bench_scale_out(fresh_pg, work, args.seconds, args.threads, None)
                if args.baseline_src:
                    results["scale_out_baseline"] = bench_scale_out(fresh_pg, work, args.seconds, args.threads, args.baseline_src)
                return results
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
            results["scale_out"] = bench_scale_out(fresh_pg, work, args.seconds, args.threads, None)
            if args.baseline_src:
                results["scale_out_baseline"] = bench_scale_out(fresh_pg, work, args.seconds, args.threads, args.baseline_src)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(results: dict[str, Any]) -> None:
    if results.get("vector_search"):
        print(json.dumps(results["vector_search"], indent=1))
    if results.get("backends"):
        print_backends(results)
    for key in ("scale_out", "scale_out_baseline"):
        if key in results:
            print()
            print(f"{key:16} {'writers':>8} {'writes/s':>10} {'failed':>7} {'lock wait s':>12} {'wait share':>11}")
            for name, row in results[key].items():
                print(
                    f"{name:16} {row['writers']:>8} {row['writes_per_s']:>10} {row['failed']:>7} "
                    f"{row['lock_wait_s']:>12} {row['lock_wait_share']:>11}"
                )


def print_backends(results: dict[str, Any]) -> None:
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
    parser.add_argument("--pg-dsn", default=None, help="PostgreSQL server (default: $MEMMESH_BENCH_PG_DSN or the test cluster)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each scale-out run (default 8)")
    parser.add_argument("--threads", type=int, default=4, help="writer threads per node in the scale-out runs (default 4)")
    parser.add_argument("--baseline-src", default=None, help="memmesh src dir to run the scale-out with as a baseline")
    parser.add_argument("--vector-sizes", default="", help="store sizes for the SQL vs in-process vector search section, e.g. 5000,20000")
    parser.add_argument("--only-scale-out", action="store_true", help="skip the SQLite/PostgreSQL and migration sections")
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
