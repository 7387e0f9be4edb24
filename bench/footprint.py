"""Memory footprint (issue 21): RSS of ``memmesh serve`` and of an embedded ``Memory`` after a recall.

For each size (default 10k and 100k memories of the PEERS.md workload: 20 words from a
seeded 5,000-word vocabulary, 10 namespaces) a SQLite store is built in a separate process,
with one 384-d vector per memory under the offline MiniLM's model id. Then, each in a fresh
process with the default embedder (MiniLM):

- **embedded**: ``Memory(url)``, RSS after opening, after the first hybrid recall (which
  loads the model and the vector index) and after 20 more recalls;
- **serve**: ``memmesh serve`` on the store, RSS once ready, after the first
  ``POST /api/v1/recall`` and after 20 more.

RSS is ``VmRSS`` from ``/proc/PID/status`` (Linux); ``VmHWM`` is the peak. Stages show where
the memory goes: interpreter + imports, the ONNX model, the vector index.

Vectors: ``--vectors synthetic`` (default) stores random unit vectors under the MiniLM
model id — the index holds exactly as many float32 numbers as with real embeddings, without
spending ~10 minutes embedding 100k texts; ``--vectors real`` embeds every memory with MiniLM.

    python bench/footprint.py --sizes 10000 100000 --out bench/results/footprint.json
    python bench/footprint.py --sizes 10000 --disk-only --out bench/results/footprint-disk.json

Disk: the file's bytes per memory and, from SQLite's ``dbstat``, each table's and index's
share (``parts_bytes_per_memory``); ``--disk-only`` builds the stores and stops there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

RECALLS = 20


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


def build_store(db: Path, size: int, vectors: str) -> float:
    """Fill the store in a child process (so its memory is not what we measure); seconds taken."""
    script = textwrap.dedent(
        f"""
        import random, numpy as np
        from memmesh import Memory
        from memmesh.config import load_settings
        from memmesh.compose import build_embedder_from
        from memmesh.store.base import VectorRow

        rng = random.Random(21)
        letters = "abcdefghijklmnopqrstuvwxyz"
        vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(5000)]
        real = {vectors == "real"!r}
        settings = load_settings(None, overrides={{"data_dir": {str(db.parent)!r},
                                 "embeddings": {{"provider": "minilm" if real else "none"}}}}, env={{}})
        mem = Memory("sqlite:///{db}", settings)
        for offset in range(0, {size}, 1000):
            mem.add_many([{{"content": " ".join(rng.choice(vocab) for _ in range(20)), "namespace": f"ns{{(offset + i) % 10}}"}}
                          for i in range(min(1000, {size} - offset))])
        if not real:
            model = build_embedder_from(load_settings(None, env={{}})).model_id
            store = mem.service.store
            ids = [m.id for m in store.iter_memories(batch=5000)]
            gen = np.random.default_rng(21)
            for start in range(0, len(ids), 5000):
                chunk = ids[start : start + 5000]
                matrix = gen.standard_normal((len(chunk), 384)).astype(np.float32)
                matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
                with store.write() as tx:
                    tx.put_vectors([VectorRow(i, model, v) for i, v in zip(chunk, matrix)], tx.next_seq())
        print(mem.stats().total)
        mem.close()
        """
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=_env(db.parent))
    assert int(out.stdout.strip().splitlines()[-1]) >= size, out.stdout
    return time.perf_counter() - start


def _parts(db: Path, size: int) -> dict[str, int]:
    """Bytes per memory of each table and index (SQLite's dbstat), largest first."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
        except sqlite3.OperationalError:  # a SQLite built without dbstat
            return {}
    return {name: round(total / size) for name, total in rows if total >= size}


def _env(workdir: Path) -> dict[str, str]:
    """Defaults only (an empty config file), so the installed MiniLM and its built graph are used."""
    (workdir / "empty.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env["MEMMESH_CONFIG"] = str(workdir / "empty.toml")
    return env


EMBEDDED = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    def rss():
        found = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = round(int(value.split()[0]) / 1024, 1)
        return found

    stages = {"python": rss()}
    from memmesh import Memory
    stages["imported"] = rss()
    mem = Memory("sqlite:///" + sys.argv[1])
    stages["opened"] = rss()
    start = time.perf_counter()
    hits = mem.recall("weekly planning notes about the deploy", top_k=10).hits
    first_ms = (time.perf_counter() - start) * 1000
    stages["first_recall"] = rss()
    for i in range(int(sys.argv[2])):
        mem.recall(f"query number {i} about namespaces and tags", top_k=10)
    stages["after_recalls"] = rss()
    print(json.dumps({"stages": stages, "first_recall_ms": round(first_ms), "hits": len(hits),
                      "index_vectors": len(mem.service.engine.index) if mem.service.engine.index else 0}))
    """
)


def measure_embedded(db: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", EMBEDDED, str(db), str(RECALLS)], capture_output=True, text=True, check=True, env=_env(db.parent)
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_serve(db: Path) -> dict:
    port = free_port()
    log = (db.parent / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", str(db), "--port", str(port)],
        env=_env(db.parent),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"memmesh serve did not start: {(db.parent / f'serve-{port}.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        stages = {"ready": rss_mb(proc.pid)}
        with httpx.Client(base_url=url, timeout=300) as http:
            start = time.perf_counter()
            first = http.post("/api/v1/recall", json={"query": "weekly planning notes about the deploy", "top_k": 10})
            first_ms = (time.perf_counter() - start) * 1000
            first.raise_for_status()
            stages["first_recall"] = rss_mb(proc.pid)
            for i in range(RECALLS):
                http.post("/api/v1/recall", json={"query": f"query number {i} about namespaces and tags", "top_k": 10}).raise_for_status()
            stages["after_recalls"] = rss_mb(proc.pid)
        return {"stages": stages, "first_recall_ms": round(first_ms)}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--vectors", choices=["synthetic", "real"], default="synthetic")
    parser.add_argument("--out", type=Path, default=Path("bench/results/footprint.json"))
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stores here (default: a temp dir, removed)")
    parser.add_argument("--reuse", action="store_true", help="with --workdir: measure the stores an earlier run built there")
    parser.add_argument("--disk-only", action="store_true", help="build the stores and report their bytes only (no RSS runs)")
    args = parser.parse_args()
    random.seed(21)
    results = []
    with tempfile.TemporaryDirectory(prefix="memmesh-footprint-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            db = root / f"footprint-{size}.db"
            if args.reuse and db.exists():  # measure the store an earlier run built (same size and vectors)
                built_s = 0.0
            else:
                for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                    stale.unlink(missing_ok=True)
                built_s = build_store(db, size, args.vectors)
            disk = {
                "db_mb": round(db.stat().st_size / 2**20, 1),
                "bytes_per_memory": round(db.stat().st_size / size),
                "parts_bytes_per_memory": _parts(db, size),
            }
            if args.disk_only:
                results.append({"size": size, "vectors": args.vectors, "build_s": round(built_s, 1), **disk})
                print(f"{size:>7} memories: {disk['bytes_per_memory']} B/memory; by table: {disk['parts_bytes_per_memory']}", flush=True)
                continue
            embedded = measure_embedded(db)
            served = measure_serve(db)
            row = {
                "size": size,
                "vectors": args.vectors,
                "build_s": round(built_s, 1),
                **disk,
                "embedded": embedded,
                "serve": served,
            }
            results.append(row)
            e, s = embedded["stages"], served["stages"]
            embedded_line = (
                f"embedded RSS {e['after_recalls']['VmRSS']:.0f} MB (peak {e['after_recalls']['VmHWM']:.0f}; "
                f"imports {e['imported']['VmRSS']:.0f}, opened {e['opened']['VmRSS']:.0f}, "
                f"first recall {e['first_recall']['VmRSS']:.0f})"
            )
            serve_line = (
                f"serve RSS {s['after_recalls']['VmRSS']:.0f} MB (peak {s['after_recalls']['VmHWM']:.0f}; "
                f"ready {s['ready']['VmRSS']:.0f}, first recall {s['first_recall']['VmRSS']:.0f})"
            )
            times = f"first recall {embedded['first_recall_ms']} / {served['first_recall_ms']} ms; {row['bytes_per_memory']} B/memory"
            print(f"{size:>7} memories: {embedded_line} | {serve_line} | {times}", flush=True)
    report = {
        "bench": "footprint",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg()[0],
        "target_mb_at_100k": 400,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
