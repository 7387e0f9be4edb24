"""MCP benchmark (issue 7): what a tool call costs over stdio and HTTP next to the embedded API.

On one SQLite file preloaded with ``--preload`` memories (the PEERS.md workload: 20-word
sentences from a seeded vocabulary), measures ``--n`` store and recall round trips

* through the embedded Python API (``Memory.add`` / ``Memory.recall``),
* through ``memmesh mcp`` on stdio with the real ``mcp`` client,
* through ``/mcp`` of the HTTP app on a real uvicorn server (streamable HTTP),

and the time from spawning ``memmesh mcp`` to the first tool result (``--spawns`` runs;
target ≤ 1.5 s). Prints a table and writes JSON (``--out``).

    python bench/mcp_bench.py --n 300 --preload 1000 --out bench/results/mcp.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from memmesh import Memory
from memmesh.config import Settings, load_settings
from store_bench import make_vocab, pct, sentence  # same seeded workload as the store benchmark


def summary(samples: list[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds."""
    ms = [s * 1000 for s in samples]
    return {"p50_ms": round(pct(ms, 0.5), 3), "p99_ms": round(pct(ms, 0.99), 3), "mean_ms": round(statistics.mean(ms), 3), "n": len(ms)}


class Workload:
    """Seeded contents to store and 2-word queries drawn from stored memories."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.vocab = make_vocab(self.rng)
        self.stored: list[str] = []

    def content(self) -> str:
        text = sentence(self.rng, self.vocab)
        self.stored.append(text)
        return text

    def query(self) -> str:
        return " ".join(self.rng.sample(self.rng.choice(self.stored).split(), 2))


def settings_for(tmp: Path, provider: str) -> Settings:
    return load_settings(
        None,
        overrides={"data_dir": str(tmp), "embeddings": {"provider": provider}, "storage": {"url": f"sqlite:///{tmp / 'bench.db'}"}},
        env={"MEMMESH_CONFIG": ""},
    )


def bench_embedded(mem: Memory, work: Workload, n: int) -> dict[str, Any]:
    stores, recalls = [], []
    for _ in range(n):
        content = work.content()
        started = time.perf_counter()
        mem.add(content, namespace="bench/embedded")
        stores.append(time.perf_counter() - started)
    for _ in range(n):
        query = work.query()
        started = time.perf_counter()
        mem.recall(query, top_k=10)
        recalls.append(time.perf_counter() - started)
    return {"store": summary(stores), "recall": summary(recalls)}


async def bench_session(call: Callable[[str, dict[str, Any]], Awaitable[Any]], work: Workload, n: int, namespace: str) -> dict[str, Any]:
    stores, recalls = [], []
    for _ in range(n):
        content = work.content()
        started = time.perf_counter()
        result = await call("memory_store", {"content": content, "namespace": namespace})
        stores.append(time.perf_counter() - started)
        assert not result.is_error, result
    for _ in range(n):
        query = work.query()
        started = time.perf_counter()
        result = await call("memory_recall", {"query": query, "top_k": 10})
        recalls.append(time.perf_counter() - started)
        assert not result.is_error, result
    return {"store": summary(stores), "recall": summary(recalls)}


def server_env(tmp: Path, provider: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp / "empty.toml").write_text("")
    env.update(
        {
            "MEMMESH_DB": str(tmp / "bench.db"),
            "MEMMESH_DATA_DIR": str(tmp),
            "MEMMESH_CONFIG": str(tmp / "empty.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": provider,
        }
    )
    return env


async def bench_stdio(tmp: Path, provider: str, work: Workload, n: int) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "memmesh.interfaces.cli.app", "mcp"], env=server_env(tmp, provider))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await bench_session(session.call_tool, work, n, "bench/stdio")


async def spawn_to_first_result(tmp: Path, provider: str) -> tuple[float, float]:
    """Seconds from spawning ``memmesh mcp`` to the first tool result, and to the handshake."""
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "memmesh.interfaces.cli.app", "mcp"], env=server_env(tmp, provider))
    started = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        handshake = time.perf_counter() - started
        result = await session.call_tool("memory_list", {"limit": 1})
        first = time.perf_counter() - started
        assert not result.is_error
    return first, handshake


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def bench_http(mem: Memory, settings: Settings, work: Workload, n: int) -> dict[str, Any]:
    import uvicorn
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from memmesh.interfaces.http.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(mem.service, settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await session.call_tool("memory_list", {"limit": 1})  # first call builds the MCP server (SDK import)
            return await bench_session(session.call_tool, work, n, "bench/http")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def ratio(face: dict[str, Any], base: dict[str, Any], op: str) -> float:
    return round(face[op]["p50_ms"] / max(base[op]["p50_ms"], 1e-6), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="store and recall round trips per face")
    parser.add_argument("--preload", type=int, default=1000, help="memories in the store before measuring")
    parser.add_argument("--spawns", type=int, default=5, help="spawn → first result repetitions")
    parser.add_argument("--embeddings", default="none", choices=["none", "minilm"], help="embedding provider")
    parser.add_argument("--no-http", action="store_true", help="skip MCP over HTTP")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/mcp.json"))
    args = parser.parse_args()

    work = Workload(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        settings = settings_for(tmp, args.embeddings)
        mem = Memory(config=settings)
        for start in range(0, args.preload, 500):
            mem.add_many([{"content": work.content(), "namespace": "bench/preload"} for _ in range(min(500, args.preload - start))])
        faces: dict[str, Any] = {"embedded": bench_embedded(mem, work, args.n)}
        faces["mcp_stdio"] = asyncio.run(bench_stdio(tmp, args.embeddings, work, args.n))
        if not args.no_http:
            faces["mcp_http"] = asyncio.run(bench_http(mem, settings, work, args.n))
        spawns = [asyncio.run(spawn_to_first_result(tmp, args.embeddings)) for _ in range(args.spawns)]
        mem.close()

    first = [s[0] for s in spawns]
    report = {
        "benchmark": "mcp",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "embeddings": args.embeddings,
        "preload": args.preload,
        "faces": faces,
        "ratio_p50_vs_embedded": {
            face: {op: ratio(faces[face], faces["embedded"], op) for op in ("store", "recall")} for face in faces if face != "embedded"
        },
        "spawn_to_first_result_s": {
            "median": round(statistics.median(first), 3),
            "min": round(min(first), 3),
            "max": round(max(first), 3),
            "runs": [round(s, 3) for s in first],
            "handshake_median": round(statistics.median(s[1] for s in spawns), 3),
            "target": 1.5,
        },
    }
    print(f"{'face':<12}{'store p50':>11}{'store p99':>11}{'recall p50':>12}{'recall p99':>12}   (ms; {args.preload} preloaded)")
    for face, result in faces.items():
        print(
            f"{face:<12}{result['store']['p50_ms']:>11.2f}{result['store']['p99_ms']:>11.2f}"
            f"{result['recall']['p50_ms']:>12.2f}{result['recall']['p99_ms']:>12.2f}"
        )
    for face, ratios in report["ratio_p50_vs_embedded"].items():
        print(f"{face} / embedded p50: store ×{ratios['store']}, recall ×{ratios['recall']}")
    spawn = report["spawn_to_first_result_s"]
    print(
        f"spawn → first tool result: median {spawn['median']} s (min {spawn['min']}, max {spawn['max']}; target ≤ 1.5 s); "
        f"load average {report['load_average'][0]:.1f} on {report['cpus']} CPUs"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
