"""Write latency with the embedder off the write path (issue 19): add p50/p99 and time-to-vector.

Workload: the peers' one (PEERS.md), memories of 20 English words (seeded, from MiniLM's own
vocabulary, as in ``recall_latency.py``), each write through the public ``Memory`` API on a
fresh SQLite file with the real MiniLM embedder (fp32, ONNX graph cached). Modes:

- ``background`` (the default): ``add`` commits and returns; the vector is computed by the
  background embedder;
- ``wait``: ``add(..., wait=True)``, the vector computed before commit (what every write did
  before issue 19);
- ``keyword``: ``embeddings.provider = none``, the floor (no embedder at all).

Scenarios per mode:

- ``paced``: ``--n`` single adds, one every ``--pace-ms`` (an agent writing as it talks);
  ack p50/p99, and time-to-vector p50/p99 (from the call to the vector being committed,
  observed by a watcher thread waiting on the worker's tickets, so the writer never waits);
- ``burst``: ``--burst`` single adds back to back; ack p50/p99, time until the last vector
  is stored, and how many embedder batches that took;
- ``add_many``: one call of ``--burst`` items; ms per memory at ack.

    python bench/write_latency.py [--n 300] [--out bench/results/write_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from memmesh import Memory  # noqa: E402 - needs the src path above
from memmesh.config import load_settings  # noqa: E402
from memmesh.recall.model_package import locate_package  # noqa: E402

WORDS = 20


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    """Whole English words from MiniLM's WordPiece vocabulary (realistic token counts)."""
    vocab = (locate_package().root / "vocab.txt").read_text(encoding="utf-8").split()
    return rng.sample([w for w in vocab[2000:] if w.isalpha() and w.isascii() and 3 <= len(w) <= 12], size)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p99": pct(values, 0.99), "max": round(max(values), 3)}


class Watcher:
    """Records when each write's vector is committed, without making the writer wait."""

    def __init__(self, mem: Memory) -> None:
        self.background = mem.service.background
        self.jobs: list[tuple[float, int]] = []
        self.done: list[float] = []
        self._lock = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, started: float, ticket: int) -> None:
        with self._lock:
            self.jobs.append((started, ticket))
            self._lock.notify()

    def _run(self) -> None:
        assert self.background is not None
        i = 0
        while True:
            with self._lock:
                while i >= len(self.jobs) and not self._stop:
                    self._lock.wait()
                if i >= len(self.jobs):
                    return
                started, ticket = self.jobs[i]
            self.background.wait_for(ticket, 120)
            self.done.append((time.perf_counter() - started) * 1000)
            i += 1

    def finish(self) -> list[float]:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._thread.join(300)
        return self.done


def open_store(workdir: Path, mode: str, name: str) -> Memory:
    data: dict[str, Any] = {"data_dir": str(workdir), "embeddings": {"provider": "none" if mode == "keyword" else "minilm"}}
    mem = Memory(f"sqlite:///{workdir / name}", load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""}))
    if mem.service.embedder is not None:
        mem.service.embedder.embed(["load the model"])
    mem.add("warm up the write path", wait=True)
    return mem


def paced(workdir: Path, mode: str, texts: list[str], pace_s: float) -> dict[str, Any]:
    mem = open_store(workdir, mode, f"paced-{mode}.db")
    watcher = Watcher(mem) if mode == "background" else None
    acks = []
    for text in texts:
        start = time.perf_counter()
        mem.add(text, namespace="bench", wait=mode == "wait")
        acks.append((time.perf_counter() - start) * 1000)
        if watcher is not None:
            assert mem.service.background is not None
            watcher.add(start, mem.service.background.ticket())
        time.sleep(pace_s)
    out: dict[str, Any] = {"ack_ms": summary(acks)}
    if watcher is not None:
        out["time_to_vector_ms"] = summary(watcher.finish())
    elif mode == "wait":
        out["time_to_vector_ms"] = out["ack_ms"]  # the vector is stored before the answer
    mem.close()
    return out


def burst(workdir: Path, mode: str, texts: list[str]) -> dict[str, Any]:
    mem = open_store(workdir, mode, f"burst-{mode}.db")
    background = mem.service.background
    batches_before = background.stats.batches if background is not None else 0
    acks = []
    first = time.perf_counter()
    for text in texts:
        start = time.perf_counter()
        mem.add(text, namespace="bench", wait=mode == "wait")
        acks.append((time.perf_counter() - start) * 1000)
    out: dict[str, Any] = {"ack_ms": summary(acks), "acked_all_s": round(time.perf_counter() - first, 3)}
    if background is not None and mode == "background":
        assert background.drain(300)
        out["all_vectors_s"] = round(time.perf_counter() - first, 3)
        out["embedder_batches"] = background.stats.batches - batches_before
    mem.close()
    return out


def add_many(workdir: Path, mode: str, texts: list[str]) -> dict[str, Any]:
    mem = open_store(workdir, mode, f"many-{mode}.db")
    start = time.perf_counter()
    mem.add_many([{"content": t, "namespace": "bench"} for t in texts], wait=mode == "wait")
    acked = time.perf_counter() - start
    out: dict[str, Any] = {"ms_per_memory_at_ack": round(acked * 1000 / len(texts), 3)}
    if mem.service.background is not None and mode == "background":
        assert mem.service.background.drain(300)
        out["ms_per_memory_to_vectors"] = round((time.perf_counter() - start) * 1000 / len(texts), 3)
    mem.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="paced single adds per mode")
    parser.add_argument("--pace-ms", type=float, default=20.0, help="pause between paced adds")
    parser.add_argument("--burst", type=int, default=200, help="back-to-back adds, and add_many items")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/write_latency.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    words = vocabulary(rng)

    def texts(n: int) -> list[str]:
        return [" ".join(rng.choice(words) for _ in range(WORDS)) for _ in range(n)]

    report: dict[str, Any] = {"benchmark": "write_latency", "modes": {}}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="memmesh-writes-") as tmp:
        for mode in ("background", "wait", "keyword"):
            workdir = Path(tmp) / mode
            workdir.mkdir()
            result = {
                "paced": paced(workdir, mode, texts(args.n), args.pace_ms / 1000),
                "burst": burst(workdir, mode, texts(args.burst)),
                "add_many": add_many(workdir, mode, texts(args.burst)),
            }
            report["modes"][mode] = result
            p, b = result["paced"], result["burst"]
            ttv = p.get("time_to_vector_ms")
            print(
                f"{mode:>10}: add p50 {p['ack_ms']['p50']:.2f} ms p99 {p['ack_ms']['p99']:.2f} ms"
                + (f"; time-to-vector p50 {ttv['p50']:.1f} ms p99 {ttv['p99']:.1f} ms" if ttv else "")
                + f"; burst of {args.burst}: add p50 {b['ack_ms']['p50']:.2f} ms"
                + (f", all vectors in {b['all_vectors_s']:.2f} s ({b['embedder_batches']} batches)" if "all_vectors_s" in b else "")
                + f"; add_many {result['add_many']['ms_per_memory_at_ack']:.2f} ms/memory at ack",
                flush=True,
            )
    report.update(
        {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "params": {"n": args.n, "pace_ms": args.pace_ms, "burst": args.burst, "words": WORDS, "seed": args.seed},
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "loadavg_at_start": load_start,
                "loadavg_at_end": os.getloadavg(),
            },
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
