"""Web inspector benchmark (issue 20): page render time at 10k memories.

Builds a keyword-only SQLite store of ``--memories`` memories (default 10,000) spread over 20
namespaces with tags and a few links, serves the real HTTP app (``/ui`` mounted) on uvicorn
on 127.0.0.1, and times whole requests from a client (session cookie, HTML rendered and sent):

- ``list``: /ui/memories (the namespace tree with counts + the newest 25);
- ``list_ns``: /ui/memories?namespace=... (a filtered page);
- ``page2``: the second page through the cursor (paging happens in SQL);
- ``search``: /ui/memories?q=... (keyword search with explain);
- ``memory``: /ui/memories/{id} (fields, history diffs, links and their SVG graph);
- ``list_cold``: /ui/memories with the namespace-count cache off (every render counts again);
- ``list_scoped``: /ui/memories as a namespace-scoped key (counts only what it may see).

Target: p50 <= 100 ms each. Prints a summary with the load average and writes JSON.

    python bench/web_bench.py --out bench/results/web.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from memmesh.compose import build
from memmesh.config import load_settings
from memmesh.interfaces.http.app import create_app
from memmesh.interfaces.web import app as web_app
from memmesh.model import LOCAL_PRINCIPAL

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"]
TARGET_MS = 100.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed(service: Any, count: int) -> list[str]:
    ids: list[str] = []
    batch = 500
    for start in range(0, count, batch):
        items = [
            {
                "content": f"memory {i}: {WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]} deploy note number {i}",
                "namespace": f"team/t{i % 20}/p{i % 3}",
                "tags": [WORDS[i % 5], f"batch{i // 1000}"],
            }
            for i in range(start, min(count, start + batch))
        ]
        ids.extend(m.id for m in service.add_many(items, principal=LOCAL_PRINCIPAL))
    for i in range(0, 200, 2):  # a few links so memory pages draw a graph
        service.link(ids[i], ids[i + 1], "related_to", principal=LOCAL_PRINCIPAL)
    service.update(ids[0], {"content": "memory 0: rewritten once for a history diff"}, principal=LOCAL_PRINCIPAL)
    return ids


def time_get(client: httpx.Client, path: str, rounds: int) -> dict[str, float]:
    client.get(path)  # warm (templates compiled, caches filled)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return {"p50_ms": round(statistics.median(samples), 2), "p95_ms": round(pct(samples, 0.95), 2), "max_ms": round(max(samples), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="memmesh-web-bench-"))
    settings = load_settings(
        None,
        overrides={"data_dir": str(folder), "embeddings": {"provider": "none"}, "storage": {"url": f"sqlite:///{folder / 'm.db'}"}},
        env={},
    )
    service = build(settings)
    started = time.perf_counter()
    ids = seed(service, args.memories)
    seed_s = time.perf_counter() - started
    scoped = service.create_key("bench", role="reader", namespaces=["team/t3"], principal=LOCAL_PRINCIPAL)
    admin = service.create_key("admin", role="admin", principal=LOCAL_PRINCIPAL)
    app = create_app(service, settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def logged_in(key: str) -> httpx.Client:
        client = httpx.Client(base_url=url, timeout=60)
        page = client.get("/ui/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token is not None
        assert client.post("/ui/login", data={"csrf": token.group(1), "key": key}).status_code == 303
        return client

    results: dict[str, dict[str, float]] = {}
    saved_ttl = web_app.COUNTS_TTL_S
    client = logged_in(admin.key)
    try:
        first = client.get("/ui/memories").text
        cursor = re.search(r'href="([^"]*cursor=[^"]+)"', first)
        assert cursor is not None, "no next-page link on the first page"
        pages = {
            "list": "/ui/memories",
            "list_ns": "/ui/memories?namespace=team/t7",
            "page2": cursor.group(1).replace("&amp;", "&"),
            "search": "/ui/memories?q=deploy+foxtrot",
            "memory": f"/ui/memories/{ids[0]}",
        }
        for name, path in pages.items():
            results[name] = time_get(client, path, args.rounds)
        web_app.COUNTS_TTL_S = 0.0  # every render counts the namespaces again: the worst case
        results["list_cold"] = time_get(client, "/ui/memories", args.rounds)
        web_app.COUNTS_TTL_S = saved_ttl
    finally:
        client.close()
    client = logged_in(scoped.key)
    try:
        results["list_scoped"] = time_get(client, "/ui/memories", args.rounds)
    finally:
        client.close()
    server.should_exit = True
    thread.join(20)
    service.close()
    report = {
        "bench": "web",
        "memories": args.memories,
        "rounds": args.rounds,
        "seed_s": round(seed_s, 1),
        "target_p50_ms": TARGET_MS,
        "pages": results,
        "all_within_target": all(r["p50_ms"] <= TARGET_MS for r in results.values()),
        "loadavg": os.getloadavg(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print(f"web inspector at {args.memories} memories (seeded in {seed_s:.1f}s), load {os.getloadavg()[0]:.1f}:")
    for name, r in results.items():
        flag = "ok" if r["p50_ms"] <= TARGET_MS else "OVER"
        print(f"  {name:12s} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms  {flag}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
