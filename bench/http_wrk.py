"""HTTP server capacity measured with ``wrk`` (a C load generator), keyword-only.

``bench/http_bench.py`` drives the server with 20 async httpx clients written in Python; on
2 cores those clients cost as much CPU as the server, so they measure the pair. This script
takes the client out of the way: ``wrk -t2 -c20`` against a real ``memmesh serve`` for GET
by id and POST of new memories. Needs Debian's ``wrk`` (``apt-get install wrk``).

    python bench/http_wrk.py --seconds 10 --out bench/results/http_wrk.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

POST_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"content": "wrk write ' .. counter .. ' ' .. math.random(1, 1e9) .. '", "namespace": "bench"}'
  return wrk.format("POST", "/api/v1/memories", {["Content-Type"] = "application/json"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_wrk(text: str) -> dict:
    """Requests/s and latency (avg, and p50/p99 from --latency) out of wrk's report."""

    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    out = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.M)
        if found:
            out[f"p{pct}_ms"] = round(ms(found.group(1)), 2)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(errors.group(1)) if errors else 0
    return out


def run_wrk(url: str, seconds: int, script: Path | None = None) -> dict:
    cmd = ["wrk", "-t2", "-c20", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    result = subprocess.run([*cmd, url], capture_output=True, text=True, check=True)
    return parse_wrk(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/http_wrk.json"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {
            **os.environ,
            "MEMMESH_DB": f"{tmp}/http.db",
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
            "MEMMESH_DATA_DIR": tmp,
            "MEMMESH_CONFIG": f"{tmp}/none.toml",
        }
        Path(f"{tmp}/none.toml").write_text("")
        server = subprocess.Popen(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            memory_id = httpx.post(f"{base}/api/v1/memories", json={"content": "a memory to fetch"}).json()["id"]
            script = Path(tmp) / "post.lua"
            script.write_text(POST_SCRIPT)
            results = {
                "gets": run_wrk(f"{base}/api/v1/memories/{memory_id}", args.seconds),
                "writes": run_wrk(base, args.seconds, script),
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
    for op, r in results.items():
        print(
            f"{op:<7} {r['requests_per_s']:>8.1f} req/s  p50 {r.get('p50_ms', 0):>7.2f} ms  p99 {r.get('p99_ms', 0):>7.2f} ms  "
            f"non-2xx {r['non_2xx']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"benchmark": "http_wrk", "workers": args.workers, "connections": 20, "load_average": os.getloadavg(), "results": results},
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
