"""Recall latency at 10k and 100k memories, embedding throughput, and start → first recall.

Data: a seeded random vocabulary (English words), memories of 20 random words. ``--distinct``
texts (default 2,000) are really embedded with MiniLM (fp32, batches of 64): that run
gives the embedding throughput. Larger stores reuse those vectors: memory ``j`` holds
text ``j % distinct`` plus three extra words (so every content is unique), and its vector
is the base text's vector plus a little seeded noise, renormalised, so no two vectors are
identical. Embedding 100k texts would take ~15 min on a 2-core machine and measures
nothing the distinct run does not; the store is filled through ``Service.add_many`` with a
lookup embedder returning those vectors under MiniLM's model id.

Measured per size, on a fresh ``Memory`` over the file:
- ``index_load_s``: first recall's one-off cost (load vectors and, above
  ``recall.ann_threshold``, the HNSW graph saved beside the cached store), reported separately;
- recall p50/p95 over ``--queries`` queries, default hybrid, ``top_k=10``, query
  embedding included, ``touch=False`` (inspect only) and with the default ``touch=True``;
- ``start_to_first_recall_s`` (10k store only): a new ``memmesh recall --json`` process,
  median of 3, the ONNX graph already cached.

Also measured: the same recall with the query vectors computed beforehand
(``recall_noembed_ms``: everything but the query embedding) with its CPU time per recall
(``cpu_ms``, ``time.process_time``: comparable on a loaded machine, wall times are not), and
the SQL statements one recall runs (FTS5's own page look-ups included).

The stores are built ONCE into a cache directory (``--cache``, default
``/var/tmp/memmesh-bench``), keyed by size, schema version, embedding model, seed and the
number of distinct texts; the distinct texts' vectors are cached there too. A run copies the
cached file to a scratch directory (``touch=True`` writes) and times only the recalls, so the
timed part fits a quiet five-minute slot. ``--build-only`` fills the cache and stops.

Run from the repository root::

    python bench/recall_latency.py --build-only          # once, any time (100k: a few minutes)
    python bench/recall_latency.py [--sizes 10000,100000] [--out bench/results/recall_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from memmesh import Memory  # noqa: E402 - needs the src path above
from memmesh.config import load_settings  # noqa: E402
from memmesh.recall.model_package import locate_package  # noqa: E402
from memmesh.store.sqlite import LATEST_SCHEMA  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("MEMMESH_BENCH_CACHE", "/var/tmp/memmesh-bench"))

WORDS_PER_MEMORY = 20


class LookupEmbedder:
    """Returns precomputed vectors for known texts, under the real model's id (bulk loading)."""

    def __init__(self, model_id: str, vectors: dict[str, np.ndarray]) -> None:
        self.model_id = model_id
        self._vectors = vectors
        self.dim = next(iter(vectors.values())).shape[0]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])

    def health(self) -> dict[str, Any]:
        return {"ok": True, "model_id": self.model_id, "detail": "bench lookup"}


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    """A seeded sample of whole English words from MiniLM's own WordPiece vocabulary, so a
    20-word memory is about 22 tokens, as real text is (random letter strings would split
    into three times as many word pieces and understate throughput)."""
    vocab = (locate_package().root / "vocab.txt").read_text(encoding="utf-8").split()
    words = [w for w in vocab[2000:] if w.isalpha() and w.isascii() and 3 <= len(w) <= 12]
    return rng.sample(words, size)


RECALL_OVERRIDES: dict[str, Any] = {}
"""``[recall]`` settings of the timed runs (``--ann-threshold``)."""


def settings_for(workdir: Path, **recall: Any) -> Any:
    recall = {**RECALL_OVERRIDES, **recall}
    (workdir / "empty.toml").write_text("")
    overrides: dict[str, Any] = {"data_dir": str(workdir), "embeddings": {"provider": "minilm"}}
    if recall:
        overrides["recall"] = recall
    return load_settings(workdir / "empty.toml", overrides=overrides, env={})


def embed_distinct(mem: Memory, texts: list[str]) -> tuple[np.ndarray, float]:
    embedder = mem.service.embedder
    assert embedder is not None
    embedder.embed(["warm up"])
    start = time.perf_counter()
    vectors = embedder.embed(texts)
    return vectors, len(texts) / (time.perf_counter() - start)


def fill_store(workdir: Path, db: Path, size: int, base: list[str], base_vectors: np.ndarray, words: list[str], seed: int) -> float:
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    with Memory(f"sqlite:///{db}", settings_for(workdir)) as mem:
        model_id = mem.service.embedder.model_id  # type: ignore[union-attr]
        start = time.perf_counter()
        for chunk in range(0, size, 2000):
            items, lookup = [], {}
            for j in range(chunk, min(size, chunk + 2000)):
                text = f"{base[j % len(base)]} {' '.join(rng.choice(words) for _ in range(3))} {j}"
                vec = base_vectors[j % len(base)] + noise.normal(0, 0.02, base_vectors.shape[1]).astype(np.float32)
                lookup[text] = vec / np.linalg.norm(vec)
                items.append({"content": text, "namespace": f"bench/ns{j % 10}", "tier": "long"})
            mem.service.embedder = LookupEmbedder(model_id, lookup)
            mem.add_many(items, wait=True)  # vectors stored before the recall measurements
        return time.perf_counter() - start


def _percentiles(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"p50": round(statistics.median(times), 2), "p95": round(times[int(0.95 * (len(times) - 1))], 2)}


def _count_statements(mem: Memory, query: str) -> int:
    """SQL statements one recall runs on this thread's read connection (FTS5's own included)."""
    store: Any = mem.service.store
    conn, _lock = store._reader()  # the bench's own look at the reader: no public hook for a trace
    count = 0

    def trace(_sql: str) -> None:
        nonlocal count
        count += 1

    conn.set_trace_callback(trace)
    try:
        mem.recall(query, touch=False)
    finally:
        conn.set_trace_callback(None)
    return count


def measure_recall(workdir: Path, db: Path, queries: list[str]) -> dict[str, Any]:
    with Memory(f"sqlite:///{db}", settings_for(workdir)) as mem:
        embedder = mem.service.embedder
        assert embedder is not None
        embedder.embed(["load the model"])
        start = time.perf_counter()
        mem.recall(queries[0], touch=False)
        first = time.perf_counter() - start
        index = mem.service.engine.index
        if index is not None:
            index.wait_for_ann()  # a graph still being built (no saved one): time the steady state
        out: dict[str, Any] = {"index_load_s": round(first, 2), "hnsw": bool(index and index.uses_ann)}
        for q in queries[:20]:  # warm caches (SQLite pages, numpy) before timing
            mem.recall(q, touch=False)
        for touch in (False, True):
            times = []
            for q in queries:
                start = time.perf_counter()
                result = mem.recall(q, touch=touch)
                times.append((time.perf_counter() - start) * 1000)
                assert result.mode == "hybrid" and result.hits, result.notices
            out["recall_touch_ms" if touch else "recall_ms"] = _percentiles(times)
        # Without the query embedding: the same recalls with the query vectors computed first.
        query_vectors = dict(zip(queries, embedder.embed(queries), strict=True))
        mem.service.engine.embedder = LookupEmbedder(embedder.model_id, query_vectors)
        try:
            times, cpu = [], []
            for q in queries:
                start, used = time.perf_counter(), time.process_time()
                mem.recall(q, touch=False)
                cpu.append((time.process_time() - used) * 1000)
                times.append((time.perf_counter() - start) * 1000)
            out["recall_noembed_ms"] = _percentiles(times)
            out["cpu_ms_noembed"] = _percentiles(cpu)
            out["sql_statements"] = statistics.median(_count_statements(mem, q) for q in queries[:20])
        finally:
            mem.service.engine.embedder = embedder
    return out


def start_to_first_recall(workdir: Path, db: Path, query: str, runs: int = 3) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DB": str(db), "MEMMESH_DATA_DIR": str(workdir), "MEMMESH_CONFIG": str(workdir / "empty.toml")})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "recall", query, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        times.append(time.perf_counter() - start)
        if proc.returncode != 0 or not json.loads(proc.stdout)["hits"]:
            raise SystemExit(f"memmesh recall failed: {proc.stderr or proc.stdout}")
    return statistics.median(times)


def _model_tag(model_id: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in model_id).strip("-")


def distinct_vectors(cache: Path, workdir: Path, base: list[str], seed: int) -> tuple[np.ndarray, float | None]:
    """The distinct texts' MiniLM vectors, from the cache when there (throughput None then)."""
    with Memory(f"sqlite:///{workdir / 'scratch.db'}", settings_for(workdir)) as mem:
        model_id = mem.service.embedder.model_id  # type: ignore[union-attr]
        path = cache / f"distinct-{_model_tag(model_id)}-d{len(base)}-seed{seed}.npy"
        if path.exists():
            return np.load(path), None
        vectors, throughput = embed_distinct(mem, base)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors, throughput


def cached_store(
    cache: Path, workdir: Path, size: int, base: list[str], base_vectors: np.ndarray, words: list[str], seed: int
) -> tuple[Path, float | None]:
    """The cached store of ``size`` memories (built now if missing: fill, then merge the full-text
    index as a long-lived process would, then checkpoint so the file stands alone)."""
    with Memory(f"sqlite:///{workdir / 'scratch.db'}", settings_for(workdir)) as mem:
        model_id = mem.service.embedder.model_id  # type: ignore[union-attr]
    path = cache / f"recall-{size}-schema{LATEST_SCHEMA}-{_model_tag(model_id)}-d{len(base)}-seed{seed}.db"
    if path.exists():
        return path, None
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f"{path.stem}.building-{os.getpid()}.db"
    fill_s = fill_store(workdir, building, size, base, base_vectors, words, seed + size)
    with Memory(f"sqlite:///{building}", settings_for(workdir)) as mem:
        mem.service.store.merge_keyword_index()  # type: ignore[attr-defined]
    conn = sqlite3.connect(building)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    building.replace(path)
    with Memory(f"sqlite:///{path}", settings_for(workdir, ann_threshold=1)) as mem:  # its HNSW graph, saved beside it
        index = mem.service.engine.index
        assert index is not None
        index.refresh()
        index.wait_for_ann()
    return path, fill_s


def copy_store(cached: Path, db: Path) -> None:
    """The cached file and its saved HNSW graph (``<db>.hnsw-*``), under ``db``'s name."""
    shutil.copyfile(cached, db)
    for extra in cached.parent.glob(f"{cached.name}.hnsw-*"):
        if not extra.name.endswith(".tmp"):
            shutil.copyfile(extra, db.with_name(db.name + extra.name[len(cached.name) :]))


def run(workdir: Path, cache: Path, sizes: list[int], distinct: int, n_queries: int, seed: int, build_only: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    words = vocabulary(rng)
    base = [" ".join(rng.choice(words) for _ in range(WORDS_PER_MEMORY)) for _ in range(distinct)]
    queries = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 5))) for _ in range(n_queries)]
    base_vectors, throughput = distinct_vectors(cache, workdir, base, seed)
    if throughput is None and not build_only:  # cached vectors: measure throughput on a slice
        with Memory(f"sqlite:///{workdir / 'scratch.db'}", settings_for(workdir)) as mem:
            _, throughput = embed_distinct(mem, base[:512])
    report: dict[str, Any] = {"embed_texts_per_s": round(throughput or 0.0, 1), "distinct_texts": distinct, "sizes": {}}
    for size in sizes:
        cached, fill_s = cached_store(cache, workdir, size, base, base_vectors, words, seed)
        status = f"built in {fill_s:.0f} s" if fill_s is not None else "cached"
        print(f"{size:>7} memories: store {cached} ({status})", flush=True)
        if build_only:
            continue
        db = workdir / f"bench-{size}.db"
        copy_store(cached, db)
        result = {"store": str(cached), **measure_recall(workdir, db, queries)}
        if fill_s is not None:
            result["fill_s"] = round(fill_s, 1)
        if size == min(sizes):
            result["start_to_first_recall_s"] = round(start_to_first_recall(workdir, db, queries[0]), 2)
        report["sizes"][str(size)] = result
        print(
            f"{size:>7} memories: recall p50 {result['recall_ms']['p50']:.1f} ms, p95 {result['recall_ms']['p95']:.1f} ms; "
            f"without the query embedding p50 {result['recall_noembed_ms']['p50']:.1f} ms, p95 {result['recall_noembed_ms']['p95']:.1f} ms "
            f"(CPU {result['cpu_ms_noembed']['p50']:.1f} ms, {result['sql_statements']:.0f} SQL statements); "
            f"with touch p50 {result['recall_touch_ms']['p50']:.1f} ms; first recall {result['index_load_s']:.2f} s; hnsw={result['hnsw']}",
            flush=True,
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated store sizes")
    parser.add_argument("--distinct", type=int, default=2000, help="texts really embedded (throughput run)")
    parser.add_argument("--queries", type=int, default=200, help="queries per size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/recall_latency.json")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the built stores are kept between runs")
    parser.add_argument("--build-only", action="store_true", help="build the cached stores and stop (no timing)")
    parser.add_argument("--ann-threshold", type=int, help="recall.ann_threshold for the timed runs (default: the setting's default)")
    args = parser.parse_args()
    if args.ann_threshold is not None:
        RECALL_OVERRIDES["ann_threshold"] = args.ann_threshold
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="memmesh-latency-") as tmp:
        report = run(Path(tmp), args.cache, sizes, args.distinct, args.queries, args.seed, args.build_only)
    if args.build_only:
        return
    report.update(
        {
            "benchmark": "recall_latency",
            "recall_overrides": RECALL_OVERRIDES,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "loadavg_at_end": os.getloadavg(),
            },
        }
    )
    print(
        f"embedding throughput {report['embed_texts_per_s']:.0f} texts/s (fp32, batched); "
        f"start → first recall {report['sizes'][str(sizes[0])].get('start_to_first_recall_s')} s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
