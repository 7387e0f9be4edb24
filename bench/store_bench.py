"""Store benchmark (issue 3): keyword-only write/read/search costs at 10k and 100k memories.

Measures, through the public ``Memory`` API on a real SQLite file:
single-write latency p50/p99, ``add_many`` throughput, get p50, list p50 and keyword
search p50 at each size. Prints a table and writes JSON.

    python bench/store_bench.py --sizes 10000 100000 --out bench/results/store.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from memmesh import Memory
from memmesh.config import load_settings

VOCAB_SIZE = 5000


def make_vocab(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(VOCAB_SIZE)]


def sentence(rng: random.Random, vocab: list[str], words: int = 20) -> str:
    """20 words drawn uniformly from a seeded vocabulary: the PEERS.md workload, so numbers compare."""
    return " ".join(rng.choice(vocab) for _ in range(words))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(action, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_size(size: int, workdir: Path, rng: random.Random, vocab: list[str]) -> dict:
    settings = load_settings(None, overrides={"data_dir": str(workdir), "embeddings": {"provider": "none"}}, env={})
    mem = Memory(f"sqlite:///{workdir / f'store-{size}.db'}", settings)
    batch = 1000
    start = time.perf_counter()
    for offset in range(0, size, batch):
        mem.add_many(
            [
                {"content": sentence(rng, vocab), "namespace": f"ns{(offset + i) % 10}", "tags": [f"t{i % 7}"]}
                for i in range(min(batch, size - offset))
            ]
        )
    bulk_s = time.perf_counter() - start
    singles = timed(lambda: mem.add(sentence(rng, vocab), namespace="single"), 500)
    ids = [m.id for m in mem.get_all(limit=1000)]
    gets = timed(lambda: mem.get(rng.choice(ids)), 1000)
    lists = timed(lambda: mem.get_all(namespace=f"ns{rng.randrange(10)}", limit=20), 300)

    def query() -> None:
        words = rng.randint(1, 4)
        source = sentence(rng, vocab, 20).split()
        mem.search(" ".join(rng.sample(source, words)), mode="keyword", top_k=10, touch=False)

    searches = timed(query, 500)
    filtered = timed(lambda: mem.search(rng.choice(vocab[:200]), mode="keyword", namespace="ns3", top_k=10, touch=False), 300)
    stats = mem.stats()
    mem.close()
    return {
        "size": size,
        "add_many_per_s": round(size / bulk_s),
        "single_write_ms": {"p50": round(pct(singles, 0.5), 3), "p99": round(pct(singles, 0.99), 3)},
        "get_ms": {"p50": round(pct(gets, 0.5), 3), "p99": round(pct(gets, 0.99), 3)},
        "list_ms": {"p50": round(pct(lists, 0.5), 3), "p99": round(pct(lists, 0.99), 3)},
        "keyword_search_ms": {
            "p50": round(pct(searches, 0.5), 3),
            "p95": round(pct(searches, 0.95), 3),
            "mean": round(statistics.mean(searches), 3),
        },
        "keyword_search_filtered_ms": {"p50": round(pct(filtered, 0.5), 3), "p95": round(pct(filtered, 0.95), 3)},
        "db_size_mb": round(stats.db_size_bytes / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--out", type=Path, default=Path("bench/results/store.json"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    vocab = make_vocab(rng)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            results.append(bench_size(size, Path(tmp), rng, vocab))
            r = results[-1]
            print(
                f"{size:>7} memories | add_many {r['add_many_per_s']:>6}/s | single write p50 {r['single_write_ms']['p50']:.2f} ms "
                f"p99 {r['single_write_ms']['p99']:.2f} ms | get p50 {r['get_ms']['p50']:.3f} ms | list p50 "
                f"{r['list_ms']['p50']:.2f} ms | search p50 {r['keyword_search_ms']['p50']:.2f} ms "
                f"p95 {r['keyword_search_ms']['p95']:.2f} ms | filtered p50 {r['keyword_search_filtered_ms']['p50']:.2f} ms",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"benchmark": "store", "machine": platform.machine(), "python": platform.python_version(), "results": results}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
