"""HTTP benchmark (issue 5): a real ``memmesh serve`` under 20 concurrent async clients.

For each recall mode (keyword-only: ``embeddings.provider = none``; hybrid: the default
MiniLM embedder) a fresh server subprocess on a fresh SQLite file takes, in turn:
writes (``POST /api/v1/memories``), gets (``GET /api/v1/memories/{id}``) and recalls
(``POST /api/v1/recall``), each from ``--clients`` asyncio tasks with their own httpx
client. The embedded ``Memory`` API does the same work in-process (one thread) in the
same run, so the table shows what the HTTP layer costs. Prints a table, writes JSON.

    python bench/http_bench.py --out bench/results/http.json
    python bench/http_bench.py --modes keyword --writes 2000 --gets 4000

The load generator shares the machine's cores with the server: on 2 cores the numbers
are what one client process can push, a floor for the server's own capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from memmesh import Memory
from memmesh.clock import new_id
from memmesh.config import load_settings

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo "
    "sierra tango uniform victor whiskey xray yankee zulu deploy server database cache queue latency memory agent "
    "vector search index shard replica backup restore policy budget invoice contract meeting tuesday friday coffee "
    "tea python rust golang kernel network packet router switch firewall token secret rotate schedule report"
)
VOCAB = WORDS.split()


def sentence(rng: random.Random, words: int = 16) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(latencies_ms: list[float], wall_s: float, errors: int) -> dict[str, Any]:
    return {
        "count": len(latencies_ms),
        "errors": errors,
        "per_s": round(len(latencies_ms) / wall_s, 1),
        "p50_ms": round(pct(latencies_ms, 0.50), 2),
        "p99_ms": round(pct(latencies_ms, 0.99), 2),
    }


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used by a process and its children, from /proc (Linux)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``memmesh serve`` on a fresh database, stopped with SIGTERM by pid."""

    def __init__(self, workdir: Path, provider: str, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
        env.update(
            {
                "MEMMESH_EMBEDDINGS_PROVIDER": provider,
                "MEMMESH_DATA_DIR": str(workdir / "data"),
                "MEMMESH_CONFIG": str(workdir / "none.toml"),
            }
        )
        (workdir / "none.toml").write_text("")
        self.log = (workdir / f"server-{provider}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memmesh.interfaces.cli.app",
                "serve",
                "--db",
                str(workdir / f"http-{provider}.db"),
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("server did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def run_phase(url: str, clients: int, jobs: list[tuple[str, str, Any]]) -> tuple[list[float], list[Any], int]:
    """Spread ``jobs`` (method, path, json) over ``clients`` tasks: (latencies ms, bodies, errors)."""
    queue: asyncio.Queue[tuple[int, tuple[str, str, Any]]] = asyncio.Queue()
    for item in enumerate(jobs):
        queue.put_nowait(item)
    latencies: list[float] = []
    bodies: list[Any] = [None] * len(jobs)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            while not queue.empty():
                index, (method, path, body) = queue.get_nowait()
                start = time.perf_counter()
                response = await http.request(method, path, json=body)
                latencies.append((time.perf_counter() - start) * 1000)
                if response.is_success:
                    bodies[index] = response.json()
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(max(1, clients))))
    return latencies, bodies, errors


def bench_http(workdir: Path, provider: str, mode: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    server = Server(workdir, provider, args.workers)
    try:
        writes = [
            ("POST", "/api/v1/memories", {"id": new_id(), "content": sentence(rng), "namespace": f"bench/{i % 10}"})
            for i in range(args.writes)
        ]
        write_stats, stored = server_phase(server, args.clients, writes, args.procs)
        ids = [body["id"] for body in stored if body]
        gets = [("GET", f"/api/v1/memories/{rng.choice(ids)}", None) for _ in range(args.gets)]
        get_stats, _ = server_phase(server, args.clients, gets, args.procs)
        recalls = [("POST", "/api/v1/recall", {"query": sentence(rng, 3), "top_k": 10, "mode": mode}) for _ in range(args.recalls)]
        recall_stats, _ = server_phase(server, args.clients, recalls, args.procs)
    finally:
        server.stop()
    return {"writes": write_stats, "gets": get_stats, "recalls": recall_stats}


def _client_process(url: str, clients: int, jobs: list[tuple[str, str, Any]]) -> tuple[list[float], list[Any], int]:
    return asyncio.run(run_phase(url, clients, jobs))


def server_phase(server: Server, clients: int, jobs: list[tuple[str, str, Any]], procs: int) -> tuple[dict[str, Any], list[Any]]:
    """One phase from ``clients`` async clients spread over ``procs`` load processes (one
    Python process cannot drive httpx fast enough to load a server on its own), plus the
    server's CPU per request: its capacity per core whatever else competes for the cores."""
    cpu_before = process_cpu_s(server.proc.pid)
    shares = [jobs[i::procs] for i in range(procs)]
    start = time.perf_counter()
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork")) as pool:
        parts = list(pool.map(_client_process, [server.url] * procs, [clients // procs] * procs, shares))
    wall = time.perf_counter() - start
    latencies = [x for part in parts for x in part[0]]
    bodies = [b for part in parts for b in part[1]]
    stats = summary(latencies, wall, sum(part[2] for part in parts))
    cpu_ms = (process_cpu_s(server.proc.pid) - cpu_before) * 1000 / max(1, len(jobs))
    stats["server_cpu_ms_per_req"] = round(cpu_ms, 3)
    stats["per_core_capacity_per_s"] = round(1000 / cpu_ms, 1) if cpu_ms > 0 else None
    return stats, bodies


def bench_embedded(workdir: Path, provider: str, mode: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    settings = load_settings(None, overrides={"data_dir": str(workdir / "data"), "embeddings": {"provider": provider}}, env={})
    mem = Memory(f"sqlite:///{workdir / f'embedded-{provider}.db'}", settings)
    out: dict[str, Any] = {}
    try:

        def phase(name: str, count: int, action) -> list[Any]:
            latencies, results = [], []
            start = time.perf_counter()
            for i in range(count):
                t = time.perf_counter()
                results.append(action(i))
                latencies.append((time.perf_counter() - t) * 1000)
            out[name] = summary(latencies, time.perf_counter() - start, 0)
            return results

        stored = phase("writes", args.writes, lambda i: mem.add(sentence(rng), namespace=f"bench/{i % 10}"))
        ids = [m.id for m in stored]
        phase("gets", args.gets, lambda i: mem.get(rng.choice(ids)))
        phase("recalls", args.recalls, lambda i: mem.recall(sentence(rng, 3), top_k=10, mode=mode))
    finally:
        mem.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--gets", type=int, default=6000)
    parser.add_argument("--recalls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes the clients are spread over")
    parser.add_argument("--modes", nargs="+", default=["keyword", "hybrid"], choices=["keyword", "hybrid"])
    parser.add_argument("--out", type=Path, default=Path("bench/results/http.json"))
    args = parser.parse_args()
    rng = random.Random(5)
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_start": os.getloadavg(),
        },
        "params": {k: v for k, v in vars(args).items() if k != "out"},
        "modes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            provider = "none" if mode == "keyword" else "minilm"
            workdir = Path(tmp) / mode
            workdir.mkdir()
            http = bench_http(workdir, provider, mode, args, rng)
            embedded = bench_embedded(workdir, provider, mode, args, rng)
            ratio = {op: round(embedded[op]["per_s"] / http[op]["per_s"], 2) for op in http}
            results["modes"][mode] = {"http": http, "embedded": embedded, "embedded_over_http": ratio}
    results["machine"]["load_avg_end"] = os.getloadavg()

    print(f"{'mode':8} {'op':8} {'http/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'srv cpu ms':>10} {'embedded/s':>11} {'ratio':>6}")
    for mode, data in results["modes"].items():
        for op in ("writes", "gets", "recalls"):
            h, e = data["http"][op], data["embedded"][op]
            print(
                f"{mode:8} {op:8} {h['per_s']:>9} {h['p50_ms']:>8} {h['p99_ms']:>8} {h['errors']:>7} "
                f"{h['server_cpu_ms_per_req']:>10} {e['per_s']:>11} {data['embedded_over_http'][op]:>6}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
