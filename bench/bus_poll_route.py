"""What the long-poll routes' disconnect watch costs: ``GET …/unread`` on an empty
conversation over HTTP, without a wait (no watch runs) and with a 2 ms wait (the watch is
one task parked on the connection for the wait), against a real ``memmesh serve``.

With ``--base-src`` (the ``src`` folder of another checkout, e.g. from ``git archive``) the
same requests run against that code too, alternating base and this checkout round by
round (and swapping which goes first), so both see the same machine load.

    git archive main src | tar -x -C /tmp/base
    python bench/bus_poll_route.py --base-src /tmp/base/src --out bench/results/bus_poll_route.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_run(src: str | None, requests: int, waits: list[float]) -> dict[str, Any]:
    """Start a server (on ``src`` when given), time ``requests`` unread calls per wait."""
    folder = tempfile.mkdtemp(prefix="bus-poll-route-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        MEMMESH_DATA_DIR=folder,
        MEMMESH_CONFIG=f"{folder}/none.toml",
        MEMMESH_EMBEDDINGS_PROVIDER="none",
        MEMMESH_LIMITS_RATE_LIMIT_PER_MINUTE="1000000",
    )
    Path(f"{folder}/none.toml").write_text("")
    if src:
        env["PYTHONPATH"] = src
    command = [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", f"{folder}/m.db", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        results: dict[str, Any] = {}
        with httpx.Client(base_url=url, timeout=30) as http:
            opened = http.post("/api/v1/bus/conversations", json={"participants": ["a", "b"]}).json()
            path, auth = f"/api/v1/bus/conversations/{opened['id']}/unread", {"X-Bus-Token": opened["token"]}
            for wait in waits:
                times = []
                for _ in range(requests + 100):
                    started = time.perf_counter()
                    reply = http.get(path, params={"agent": "b", "wait": wait}, headers=auth)
                    times.append(time.perf_counter() - started)
                    if reply.status_code != 200:
                        raise RuntimeError(reply.text)
                times = sorted(times[100:])  # the first 100 warm the server up
                results[f"wait_{wait:g}"] = {
                    "p50_ms": round(statistics.median(times) * 1000, 3),
                    "p95_ms": round(times[int(len(times) * 0.95)] * 1000, 3),
                }
        results["load_1m"] = round(os.getloadavg()[0], 2)
        return results
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-src", help="src folder of the code to compare against (alternating runs)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=700)
    parser.add_argument("--out", type=Path, default=Path("bench/results/bus_poll_route.json"))
    args = parser.parse_args()
    waits = [0.0, 0.002]
    runs: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        order: list[tuple[str, str | None]] = [("this", None)]
        if args.base_src:
            order = [("base", args.base_src), ("this", None)][:: 1 if round_no % 2 == 0 else -1]
        for label, src in order:
            result = {"code": label, "round": round_no, **one_run(src, args.requests, waits)}
            print(json.dumps(result), flush=True)
            runs.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "requests": args.requests}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
