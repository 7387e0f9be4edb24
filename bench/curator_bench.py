"""Curator benchmark (issue 16): one cycle on 10k and 100k memories, no LLM.

Builds a real SQLite store per size with a known mix: 10 % of the memories are rephrasings
of another (near-duplicates: same words but one, vectors at cosine ~0.95), 2 % contradict
another (same words, another number), half carry no tag, the rest are distinct facts over a
5,000-word vocabulary. Vectors are stored directly under the MiniLM model id (unit vectors:
a duplicate is its original plus a little noise), so building the store does not spend
minutes embedding; the curator reads them exactly as it reads embedded ones, and the
cycle under test embeds nothing.

Timed, each on the same store: a dry run (scan + plan, the part that grows with the store),
a real run with the default ``max_ops`` (1,000 writes) and, with ``--all-ops``, a run that
makes every write it plans. ``--namespaces`` spreads the memories over that many namespaces
(candidate search is per namespace); ``--facts`` makes that many of the memories statements
about people ("Ana lives in Paris", "User loves jazz": slots and stances the shared verdict
rules key on, embedded for real with MiniLM). Each timing has its wall time, the process's
CPU time and the load average: on a shared machine the CPU time is the steadier number.
Prints a summary and writes JSON.

    python bench/curator_bench.py --sizes 10000 100000 --facts 0 1000 --out bench/results/curator.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.store.base import VectorRow

DIM = 384


def _vocabulary(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ra", "te", "su", "no", "vi", "de", "pa", "zu", "ho", "ne", "ri", "ga", "to", "be", "sa"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


HOLDERS = ["User", "Ana", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj", "Olivia"]
CITIES = ["Paris", "Berlin", "Lisbon", "Madrid", "Rome", "Oslo", "Vienna", "Prague", "Dublin", "Warsaw", "Athens", "Zurich"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises", "Pied Piper"]
TOPICS = ["coffee", "green tea", "jazz", "hiking", "chess", "sushi", "horror films", "running", "red wine", "board games"]
FACT_TEMPLATES = [
    (50, ["{h} lives in {city}.", "{h} moved to {city} last year.", "{h} now lives in {city}.", "{h} relocated to {city}."]),
    (20, ["{h} works at {company}.", "{h} started working at {company}.", "{h} works for {company} now."]),
    (20, ["{h} loves {topic}.", "{h} doesn't like {topic} anymore.", "{h} hates {topic}.", "{h} enjoys {topic}."]),
    (10, ["{h}'s favourite city is {city}.", "{h}'s favourite drink is {topic}."]),
]


def facts(rng: random.Random, count: int) -> list[str]:
    """``count`` statements about people that fill slots and take stances, the way
    extraction writes them (half "lives in"; a third about the one ``User``): the kind of
    store where the slot and stance keys of the shared verdict rules pair many memories."""
    weights = [w for w, _ in FACT_TEMPLATES]
    found = []
    for _ in range(count):
        _, templates = rng.choices(FACT_TEMPLATES, weights)[0]
        holder = "User" if rng.random() < 0.3 else rng.choice(HOLDERS[1:])
        found.append(
            rng.choice(templates).format(h=holder, city=rng.choice(CITIES), company=rng.choice(COMPANIES), topic=rng.choice(TOPICS))
        )
    return found


def build(
    path: Path, n: int, namespaces: int, model_id: str, seed: int = 7, fact_count: int = 0, embed: Any = None, links: int = 0
) -> dict[str, int]:
    """A store of ``n`` memories with known duplicates and contradictions; their counts.
    ``fact_count`` of them are :func:`facts` embedded by ``embed`` (real MiniLM vectors:
    "X lives in Y" sentences sit close together, so they meet in the vector pass too)."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng, 5000)
    items: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    dups = contradictions = 0
    if fact_count:
        texts = facts(rng, fact_count)
        embedded = np.concatenate([embed(texts[i : i + 256]) for i in range(0, len(texts), 256)])
        for i, text in enumerate(texts):
            items.append({"content": text, "namespace": f"bench/ns{i % namespaces}", "tags": [], "tier": "long"})
            vectors.append(np.asarray(embedded[i], dtype=np.float32))
    while len(items) < n:
        roll = rng.random()
        if len(items) > fact_count and roll < 0.10:
            i = rng.randrange(fact_count, len(items))
            words = items[i]["content"].rstrip(".").split(" ")
            words[rng.randrange(len(words) - 1)] = rng.choice(vocab)  # one word changed, the number kept
            content = " ".join(words) + "."
            vector = vectors[i] + np_rng.normal(0, 0.012, DIM).astype(np.float32)
            namespace, dups = items[i]["namespace"], dups + 1
        elif len(items) > fact_count and roll < 0.12:
            i = rng.randrange(fact_count, len(items))
            words = items[i]["content"].rstrip(".").split(" ")
            words[-1] = str(int(words[-1]) + rng.randint(1, 50))  # the same statement, another number
            content = " ".join(words) + "."
            vector = vectors[i] + np_rng.normal(0, 0.01, DIM).astype(np.float32)
            namespace, contradictions = items[i]["namespace"], contradictions + 1
        else:
            content = " ".join(rng.sample(vocab, rng.randint(8, 12))) + f" {rng.randint(1, 10_000)}."
            vector = np_rng.normal(0, 1, DIM).astype(np.float32)
            namespace = f"bench/ns{len(items) % namespaces}"
        vector /= np.linalg.norm(vector)
        tags = [rng.choice(vocab)] if rng.random() < 0.5 else []
        items.append({"content": content, "namespace": namespace, "tags": tags, "tier": "long"})
        vectors.append(vector)
    settings = load_settings(None, overrides={"data_dir": str(path.parent), "embeddings": {"provider": "none"}}, env={})
    with Memory(f"sqlite:///{path}", settings) as mem:
        stored = []
        for start in range(0, n, 1000):
            stored += mem.add_many(items[start : start + 1000])
        rows = [VectorRow(memory_id=m.id, model=model_id, vector=vectors[i]) for i, m in enumerate(stored)]
        store = mem.service.store
        for start in range(0, n, 5000):
            with store.write() as tx:
                tx.put_vectors(rows[start : start + 5000], tx.next_seq())
        chain = [(stored[i].id, stored[i + 1].id, "related_to") for i in range(min(links, n - 1))]
        for start in range(0, len(chain), 1000):
            mem.service.link_many(chain[start : start + 1000], principal=LOCAL_PRINCIPAL)
    return {"memories": n, "near_duplicates": dups, "contradictions": contradictions, "facts": fact_count, "links": len(chain)}


def timed_run(mem: Memory, **options: Any) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    report = mem.curate(**options)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "wall_s": round(wall, 3),
        # CPU of the whole process (BLAS threads included): what the cycle costs whatever
        # else the machine runs; wall time grows with the load average
        "cpu_s": round(cpu, 3),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "cycle_duration_ms": report.cycle_duration_ms,
        "memories_scanned": report.memories_scanned,
        "clusters_formed": report.autonomy.clusters_formed,
        "contradictions_found": report.contradictions_found,
        "auto_tagged": report.auto_tagged,
        "operations_attempted": report.operations_attempted,
        "operations_skipped_cap": report.operations_skipped_cap,
    }


def bench_size(workdir: Path, n: int, namespaces: int, all_ops: bool, fact_count: int = 0, links: int = 0) -> dict[str, Any]:
    path = workdir / f"curator-{n}-{namespaces}-{fact_count}.db"
    settings = load_settings(None, overrides={"data_dir": str(workdir), "embeddings": {"provider": "minilm"}}, env={})
    with Memory("sqlite:///:memory:", settings) as probe:
        embedder = probe.service.embedder
        assert embedder is not None, "the MiniLM model is not installed: memmesh models install"
        model_id = embedder.model_id
        t0 = time.perf_counter()
        made = build(path, n, namespaces, model_id, fact_count=fact_count, embed=embedder.embed, links=links)
    result: dict[str, Any] = {"size": n, "namespaces": namespaces, "build_s": round(time.perf_counter() - t0, 1), **made}
    with Memory(f"sqlite:///{path}", settings) as mem:
        result["dry_run"] = timed_run(mem, dry_run=True)
        result["run_default_cap"] = timed_run(mem)
        # the dry run did the same scan and plan: the difference is the writes
        extra = result["run_default_cap"]["wall_s"] - result["dry_run"]["wall_s"]
        result["run_default_cap"]["apply_s"] = round(extra, 3)
        if all_ops:
            result["run_all_ops"] = timed_run(mem, max_ops=10 * n)
        # a run over a namespace holding nothing: what any one small namespace's run pays for
        # the rest of the store (every link of the store was read until session 21)
        result["empty_namespace_run"] = {**timed_run(mem, namespace="bench-empty"), "links_in_store": mem.stats().links_count}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--namespaces", type=int, nargs="+", default=[1, 10])
    parser.add_argument(
        "--facts", type=int, nargs="+", default=[0], help="of each store's memories, this many are statements about people (slots, stances)"
    )
    parser.add_argument("--all-ops", action="store_true", help="also time a run that makes every write it plans")
    parser.add_argument("--links", type=int, default=0, help="link this many of the memories in a chain (related_to) before the runs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/curator.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="memmesh-curator-bench-") as tmp:
        for n in args.sizes:
            for namespaces, fact_count in itertools.product(args.namespaces, args.facts):
                result = bench_size(Path(tmp), n, namespaces, args.all_ops, fact_count, args.links)
                results.append(result)
                dry, run = result["dry_run"], result["run_default_cap"]
                print(
                    f"{n:>7} memories / {namespaces:>2} namespace(s) / {fact_count:>5} facts: dry run {dry['wall_s']:.2f} s "
                    f"(CPU {dry['cpu_s']:.2f} s) "
                    f"({dry['clusters_formed']} clusters, {dry['contradictions_found']} contradictions, "
                    f"{dry['operations_attempted']} writes planned); "
                    f"run (max_ops 1000) {run['wall_s']:.2f} s (CPU {run['cpu_s']:.2f} s), {run['operations_attempted']} writes "
                    f"at load {run['load_avg_1m']}",
                    flush=True,
                )
                empty = result["empty_namespace_run"]
                print(
                    f"{'':>7} a run over an empty namespace: {empty['wall_s'] * 1000:.1f} ms "
                    f"(CPU {empty['cpu_s'] * 1000:.1f} ms) with {empty['links_in_store']} links in the store",
                    flush=True,
                )
                if "run_all_ops" in result:
                    every = result["run_all_ops"]
                    writes = every["operations_attempted"]
                    print(f"{'':>7} the rest in one run: {every['wall_s']:.2f} s (scan and plan included), {writes} writes")
    out = {
        "bench": "curator",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"load average {os.getloadavg()[0]:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()
