"""Embedding benchmark: graph build, throughput, single-query latency, cold start, int8 agreement.

Measures the default MiniLM embedder (fp32 and int8) the way memmesh uses it:

- build: one-off time to turn the safetensors weights into the cached ONNX graphs
  (only when the cache directory starts empty, e.g. the default fresh temp dir);
- throughput: texts/s for one ``embed`` call over N typical memories (10-30 words),
  batched by the embedder (default batch size 64), best of 5 runs;
- latency: one short query per ``embed`` call, p50/p95 over 200 calls;
- cold start: a new Python process from spawn to its first embedding (graph cached),
  median of 5, with the child's own split between imports and model load + first embed;
- int8 agreement: cosine between int8 and fp32 vectors of the same texts.

Run from the repository root::

    PYTHONPATH=src python bench/embed_bench.py [--out bench/results/embed.json]

Prints a table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from memmesh.recall import minilm  # noqa: E402 - needs the src path above
from memmesh.recall.embedders import build_embedder  # noqa: E402
from memmesh.recall.model_package import locate_package  # noqa: E402

WORDS = [
    "the",
    "user",
    "prefers",
    "dark",
    "mode",
    "in",
    "editor",
    "and",
    "wants",
    "short",
    "answers",
    "about",
    "project",
    "deadline",
    "meeting",
    "notes",
    "for",
    "team",
    "review",
    "on",
    "friday",
    "because",
    "release",
    "of",
    "version",
    "two",
    "needs",
    "database",
    "migration",
    "before",
    "deploy",
    "agent",
    "remembered",
    "that",
    "alice",
    "moved",
    "to",
    "berlin",
    "last",
    "spring",
    "with",
    "her",
    "dog",
    "and",
    "started",
    "new",
    "job",
    "at",
    "startup",
    "bob",
    "likes",
    "coffee",
    "without",
    "sugar",
    "travel",
    "plans",
    "include",
    "paris",
    "flight",
    "hotel",
    "booking",
    "budget",
    "approved",
    "by",
    "manager",
    "server",
    "config",
    "uses",
    "postgres",
    "cluster",
    "three",
    "nodes",
    "backup",
    "nightly",
    "bug",
    "fix",
    "landed",
    "yesterday",
]
QUERIES = [
    "what does the user prefer?",
    "when is the release?",
    "where did alice move?",
    "coffee preferences",
    "database migration plan",
]

CHILD = """
import sys, time
start = time.perf_counter()
from pathlib import Path
from memmesh.recall.embedders import build_embedder
imported = time.perf_counter()
embedder = build_embedder("minilm", cache_dir=Path(sys.argv[1]), quantize=sys.argv[2] == "1")
embedder.embed(["what does the user prefer for the editor theme?"])
done = time.perf_counter()
print("ready", round(imported - start, 4), round(done - imported, 4), flush=True)
"""


def synthetic_texts(count: int, seed: int = 7) -> list[str]:
    """Seeded 10-30 word 'memories' from a fixed vocabulary: reproducible anywhere."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 30))) for _ in range(count)]


def locomo_texts(path: Path, count: int) -> list[str]:
    """Real dialogue turns ("<speaker>: <text>") from a LoCoMo JSON file."""
    turns: list[str] = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        conversation = sample["conversation"]
        for key, value in conversation.items():
            if key.startswith("session_") and isinstance(value, list):
                turns.extend(f"{turn['speaker']}: {turn['text']}" for turn in value)
    return turns[:count]


def measure_build(cache_dir: Path) -> dict[str, float | None]:
    """Seconds to build the fp32 graph and then the int8 graph (None if already cached)."""
    files = locate_package()
    result: dict[str, float | None] = {}
    for label, quantize in (("fp32_s", False), ("int8_s", True)):
        start = time.perf_counter()
        _, built = minilm.ensure_graph(files, cache_dir, quantize=quantize)
        result[label] = round(time.perf_counter() - start, 3) if built else None
    return result


def throughput(embedder: Any, texts: list[str], repeats: int = 5) -> float:
    """Best texts/s over ``repeats`` calls of ``embed(texts)`` (after one warm-up batch)."""
    embedder.embed(texts[:64])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.embed(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def latency(embedder: Any, calls: int = 200) -> dict[str, float]:
    """p50/p95 milliseconds of single-query embed calls."""
    for query in QUERIES:
        embedder.embed([query])
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        embedder.embed([QUERIES[i % len(QUERIES)]])
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"p50_ms": round(samples[len(samples) // 2], 3), "p95_ms": round(samples[int(len(samples) * 0.95)], 3)}


def cold_start(cache_dir: Path, quantize: bool, runs: int = 5) -> dict[str, float]:
    """Spawn-to-first-embedding of a fresh interpreter, with the child's import/load split."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    walls, imports, loads = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(cache_dir), "1" if quantize else "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        line = child.stdout.readline()
        walls.append(time.perf_counter() - start)
        _, stderr = child.communicate()
        if child.returncode != 0 or not line.startswith("ready"):
            raise SystemExit(f"cold-start child failed: {stderr.strip()}")
        _, imported, loaded = line.split()
        imports.append(float(imported))
        loads.append(float(loaded))
    return {
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "max_s": round(max(walls), 3),
        "child_imports_s": round(statistics.median(imports), 3),
        "child_load_and_first_embed_s": round(statistics.median(loads), 3),
    }


def interpreter_start(runs: int = 5) -> float:
    """Median seconds for ``python -c pass``: the floor under every cold start."""
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        walls.append(time.perf_counter() - start)
    return round(statistics.median(walls), 3)


def machine() -> dict[str, Any]:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="memmesh-embed-bench-"))
    texts = locomo_texts(Path(args.locomo), args.texts) if args.locomo else synthetic_texts(args.texts)
    words = [len(text.split()) for text in texts]
    report: dict[str, Any] = {
        "machine": machine(),
        "texts": {
            "count": len(texts),
            "source": args.locomo or "synthetic",
            "words_mean": round(statistics.mean(words), 1),
            "words_min": min(words),
            "words_max": max(words),
            "batch_size": args.batch_size,
        },
        "build": measure_build(cache_dir),
        "interpreter_start_s": interpreter_start(),
    }
    vectors = {}
    for label, quantize in (("fp32", False), ("int8", True)):
        embedder = build_embedder("minilm", cache_dir=cache_dir, quantize=quantize, batch_size=args.batch_size)
        assert embedder is not None
        report[label] = {
            "model_id": embedder.model_id,
            "throughput_texts_per_s": round(throughput(embedder, texts), 1),
            "latency": latency(embedder),
            "cold_start": cold_start(cache_dir, quantize),
        }
        vectors[label] = embedder.embed(texts)
    cosines = (vectors["fp32"] * vectors["int8"]).sum(axis=1)
    report["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    report["int8"]["cosine_vs_fp32"] = {
        "min": round(float(cosines.min()), 4),
        "mean": round(float(cosines.mean()), 4),
        "p05": round(float(np.percentile(cosines, 5)), 4),
    }
    return report


def print_table(report: dict[str, Any]) -> None:
    texts = report["texts"]
    m = report["machine"]
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, onnxruntime {m['onnxruntime']}, "
        f"load average {m['load_average_1m_at_start']} -> {m['load_average_1m_at_end']}"
    )
    print(
        f"texts: {texts['count']} ({texts['source']}), {texts['words_min']}-{texts['words_max']} words, "
        f"mean {texts['words_mean']}, batch {texts['batch_size']}"
    )
    build = report["build"]
    print(f"graph build (one-off): fp32 {build['fp32_s']} s, int8 {build['int8_s']} s (None = was already cached)")
    print(f"python -c pass: {report['interpreter_start_s']} s")
    print(f"{'':6} {'texts/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'cold start s':>13} {'imports s':>10} {'load+1st s':>11}")
    for label in ("fp32", "int8"):
        row = report[label]
        cold = row["cold_start"]
        print(
            f"{label:6} {row['throughput_texts_per_s']:>9} {row['latency']['p50_ms']:>8} "
            f"{row['latency']['p95_ms']:>8} {cold['median_s']:>13} {cold['child_imports_s']:>10} "
            f"{cold['child_load_and_first_embed_s']:>11}"
        )
    cos = report["int8"]["cosine_vs_fp32"]
    print(f"int8 vs fp32 cosine: min {cos['min']}, p05 {cos['p05']}, mean {cos['mean']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "embed.json"), help="JSON output path")
    parser.add_argument("--cache-dir", help="graph cache to use (default: a fresh temp dir, so the build is timed)")
    parser.add_argument("--texts", type=int, default=512, help="texts in the throughput run")
    parser.add_argument("--batch-size", type=int, default=64, help="embedder batch size")
    parser.add_argument("--locomo", help="take texts from a LoCoMo JSON file instead of the synthetic set")
    args = parser.parse_args()
    report = run(args)
    print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
