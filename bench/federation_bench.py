"""Federation benchmark (issue 15): three real ``memmesh serve`` nodes on 127.0.0.1.

* acknowledged writes/s and write latency at W = 1, 2, 3 (``--clients`` concurrent writers
  to node a; a fresh 3-node mesh per W);
* replication lag: sequential writes on node a at W = 1, each polled on node b until it
  is there (p50/p99, ms);
* catch-up: node c is stopped, ``--missed`` writes land on a (batches of 500), c is
  started again and timed until it holds all of them (memories/s).

Nodes run keyword-only (``embeddings.provider = none``): this measures replication, not
embedding. Prints a table and writes JSON:

    python bench/federation_bench.py --out bench/results/federation.json
    python bench/federation_bench.py --writes 300 --missed 10000

Client and nodes share the machine's cores, so on 2 cores these numbers are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(proc: subprocess.Popen[bytes] | None) -> float | None:
    """CPU time (user + system) a node process has used so far, from /proc (Linux); None
    elsewhere. On a shared machine wall time mostly measures the neighbours' load; the
    nodes' own CPU time says what the catch-up costs."""
    try:
        fields = Path(f"/proc/{proc.pid if proc else 0}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Node:
    """One ``memmesh serve`` subprocess with its own SQLite file and a fixed port."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name, self.port = root, name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
        env.update(
            {"MEMMESH_DATA_DIR": str(self.root), "MEMMESH_CONFIG": str(self.root / "none.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"}
        )
        (self.root / "none.toml").write_text("")
        log = (self.root / f"{self.name}.log").open("ab")
        cmd = [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", str(self.root / f"{self.name}.db")]
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port), "--node-id", self.name, *self.args], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def received_from(self, node: str) -> int:
        """This node's cursor for ``node``: the change number of node's feed it applied up to."""
        peers = httpx.get(self.url + "/api/v1/sync/status", timeout=30).json()["peers"]
        return max((int(p["recv_seq"]) for p in peers if p.get("node_id") == node), default=0)

    def total(self) -> int:
        """Live memories on the node (a busy node may answer slowly: a poll that times out
        is asked again, not a failed run)."""
        for _ in range(10):
            try:
                return int(httpx.get(self.url + "/api/v1/stats", timeout=30).json()["total"])
            except httpx.TimeoutException:
                continue
        raise RuntimeError(f"{self.name} did not answer /api/v1/stats")


def start_mesh(root: Path, quorum: int) -> list[Node]:
    nodes = [Node(root, f"node-{c}") for c in "abc"]
    for node in nodes:
        peers = ",".join(o.url for o in nodes if o is not node)
        node.args = ["--peers", peers, "--quorum-writes", str(quorum), "--quorum-timeout-ms", "5000", "--catchup-interval-secs", "1"]
    for node in nodes:
        node.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = [httpx.get(n.url + "/api/v1/sync/status", timeout=5).json() for n in nodes]
        if all(len([p for p in s["peers"] if p.get("node_id")]) == 2 for s in status):
            return nodes
        time.sleep(0.1)
    raise RuntimeError("peers did not identify each other")


def write_load(url: str, total: int, clients: int, tag: str) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def worker(number: int) -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(number, total, clients):
                t0 = time.perf_counter()
                r = http.post("/api/v1/memories", json={"content": f"{tag} write {i} from client {number}", "namespace": "bench"})
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    if r.status_code == 201:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "writes": len(latencies),
        "errors": errors,
        "writes_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(pct(latencies, 0.5), 2),
        "p99_ms": round(pct(latencies, 0.99), 2),
    }


def lag(a: Node, b: Node, samples: int) -> dict[str, Any]:
    lags: list[float] = []
    with httpx.Client(timeout=10) as http:
        for i in range(samples):
            r = http.post(a.url + "/api/v1/memories", json={"content": f"lag probe {i}", "namespace": "lag"})
            acked = time.perf_counter()
            mid = r.json()["id"]
            while http.get(f"{b.url}/api/v1/memories/{mid}").status_code != 200:
                time.sleep(0.002)
            lags.append((time.perf_counter() - acked) * 1000)
    return {"samples": samples, "p50_ms": round(pct(lags, 0.5), 1), "p99_ms": round(pct(lags, 0.99), 1), "max_ms": round(max(lags), 1)}


def catch_up(nodes: list[Node], missed: int) -> dict[str, Any]:
    a, _, c = nodes
    c.stop()
    base = a.total()
    with httpx.Client(timeout=120) as http:
        for start in range(0, missed, 500):
            items = [{"content": f"missed write {i}", "namespace": "catchup"} for i in range(start, min(missed, start + 500))]
            assert http.post(a.url + "/api/v1/memories/batch", json={"items": items}).status_code == 201
    want = base + missed
    started = time.perf_counter()
    c.start()
    serving = time.perf_counter()  # the process answers /healthz: imports and store open are behind it
    while c.total() < want:
        time.sleep(0.05)
    ended = time.perf_counter()
    seconds, applying = ended - started, ended - serving
    return {
        "missed": missed,
        "seconds_incl_start": round(seconds, 2),
        "memories_per_s": round(missed / seconds, 1),
        "start_s": round(serving - started, 2),
        "memories_per_s_once_serving": round(missed / applying, 1),
    }


def seed_store(db: Path, node: str, count: int) -> float:
    """``count`` memories written straight into ``node``'s store (the embedded API), so a
    100k-row bench does not spend its time in HTTP; returns seconds."""
    from memmesh import Memory
    from memmesh.config import db_override, load_settings

    overrides = {"storage": {**db_override(str(db))["storage"], "node_id": node}, "embeddings": {"provider": "none"}}
    started = time.perf_counter()
    with Memory(config=load_settings(None, overrides=overrides, env={})) as memory:
        for start in range(0, count, 2000):
            memory.add_many([{"content": f"seeded fact {i}", "namespace": f"ns{i % 4}"} for i in range(start, min(count, start + 2000))])
    return time.perf_counter() - started


def two_nodes(root: Path) -> tuple[Node, Node]:
    a, b = Node(root, "node-a"), Node(root, "node-b")
    a.args = ["--peers", b.url, "--catchup-interval-secs", "1"]
    b.args = ["--peers", a.url, "--catchup-interval-secs", "1"]
    return a, b


def cli(root: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DATA_DIR": str(root), "MEMMESH_CONFIG": str(root / "none.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"})
    command = [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(db), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode not in (0, 1) or (done.returncode == 1 and not done.stdout.strip()):
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def big_catch_up(root: Path, count: int) -> dict[str, Any]:
    """Node b starts empty ``count`` changes behind a and catches up; then b loses one memory
    behind the feed and ``cluster repair`` finds and fixes it (rows exchanged)."""
    import sqlite3

    from memmesh.store.sqlite import register_functions

    seeded_s = seed_store(root / "node-a.db", "node-a", count)
    a, b = two_nodes(root)
    a.start()
    cpu_a = cpu_seconds(a.proc)
    load_before = os.getloadavg()
    head = int(httpx.get(a.url + "/api/v1/sync/hello", timeout=30).json()["seq"])
    started = time.perf_counter()
    b.start()
    while b.received_from("node-a") < head:  # b's cursor for a: cheap to read, unlike a count of 100k rows
        time.sleep(0.2)
    caught_up_s = time.perf_counter() - started
    load_after = os.getloadavg()
    after_a, after_b = cpu_seconds(a.proc), cpu_seconds(b.proc)
    assert b.total() == count, f"node b holds {b.total()} memories after applying a's whole feed, not {count}"
    cpu = {"sender_s": round(after_a - cpu_a, 1) if after_a is not None and cpu_a is not None else None}
    cpu["receiver_s_incl_start"] = round(after_b, 1) if after_b is not None else None
    print(
        f"catch-up of {count} changes: {caught_up_s:.1f} s incl. start ({count / caught_up_s:.1f}/s), CPU sender {cpu['sender_s']} s, "
        f"receiver {cpu['receiver_s_incl_start']} s, load {load_before} → {load_after}",
        flush=True,
    )
    b.stop()
    conn = sqlite3.connect(root / "node-b.db")
    register_functions(conn)
    with conn:
        lost = conn.execute("SELECT id FROM memories ORDER BY rowid LIMIT 1 OFFSET ?", (count // 2,)).fetchone()[0]
        conn.execute("DELETE FROM memory_tags WHERE memory_id = ?", (lost,))
        conn.execute("DELETE FROM memories WHERE id = ?", (lost,))
    conn.close()
    t0 = time.perf_counter()
    report = json.loads(cli(root, root / "node-b.db", "cluster", "repair", "--peers", a.url, "--json").stdout)[0]
    repair_s = time.perf_counter() - t0
    verify = cli(root, root / "node-b.db", "cluster", "verify", "--peers", a.url, "--json")
    a.stop()
    return {
        "changes_behind": count,
        "seed_s": round(seeded_s, 1),
        "catch_up_s_incl_start": round(caught_up_s, 1),
        "catch_up_per_s": round(count / caught_up_s, 1),
        "catch_up_cpu": cpu,
        "load_before_after": [round(load_before[0], 1), round(load_after[0], 1)],
        "anti_entropy": {
            "rows": count,
            "diverged": 1,
            "rows_exchanged": report["rows_exchanged"],
            "tree_nodes": report["tree_nodes"],
            "seconds_incl_cli_start": round(repair_s, 2),
            "consistent_after": json.loads(verify.stdout)["consistent"],
        },
    }


def kill_cycles(root: Path, cycles: int) -> dict[str, Any]:
    """SIGKILL the sender mid-push ``cycles`` times; count duplicate applications on the receiver."""
    import random
    from collections import Counter

    a, b = two_nodes(root)
    a.start()
    b.start()
    rng = random.Random(11)
    acked: dict[str, str] = {}
    with httpx.Client(timeout=60) as http:
        for cycle in range(cycles):
            items = [{"content": f"cycle {cycle} fact {i}", "namespace": "crash"} for i in range(20)]
            r = http.post(a.url + "/api/v1/memories/batch", json={"items": items})
            acked.update({m["id"]: m["content"] for m in r.json()})
            time.sleep(rng.uniform(0, 0.15))
            assert a.proc is not None
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait(10)
            a.start()
        deadline = time.monotonic() + 300
        while b.total() < len(acked) and time.monotonic() < deadline:
            time.sleep(0.2)
        applied: Counter[tuple[str, str]] = Counter()
        for memory_id in acked:
            for entry in http.get(f"{b.url}/api/v1/memories/{memory_id}/history").json():
                origin = (entry.get("new") or {}).get("origin")
                if origin:
                    applied[(memory_id, origin["hlc"])] += 1
        missing = len(set(acked) - {mid for mid, _ in applied})
    a.stop()
    b.stop()
    return {"kills": cycles, "acknowledged": len(acked), "missing": missing, "duplicate_applications": sum(n - 1 for n in applied.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--lag-samples", type=int, default=200)
    parser.add_argument("--missed", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=0, help="also: catch-up and anti-entropy with this many changes (e.g. 100000)")
    parser.add_argument("--kill-cycles", type=int, default=0, help="also: SIGKILL the sender mid-push this many times")
    parser.add_argument("--skip-quorum", action="store_true", help="skip the W = 1, 2, 3 runs (with --big / --kill-cycles)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
        "quorum": {},
    }
    if args.big:
        with tempfile.TemporaryDirectory() as tmp:
            results["big"] = big = big_catch_up(Path(tmp), args.big)
        ae = big["anti_entropy"]
        print(f"catch-up of {big['changes_behind']} changes: {big['catch_up_s_incl_start']} s incl. start ({big['catch_up_per_s']}/s)")
        print(f"anti-entropy, 1 diverged among {ae['rows']}: {ae['rows_exchanged']} rows exchanged, {ae['seconds_incl_cli_start']} s")
    if args.kill_cycles:
        with tempfile.TemporaryDirectory() as tmp:
            results["kills"] = kills = kill_cycles(Path(tmp), args.kill_cycles)
        print(f"{kills['kills']} sender kills: {kills['missing']} missing, {kills['duplicate_applications']} duplicate applications")
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    for quorum in () if args.skip_quorum else (1, 2, 3):
        with tempfile.TemporaryDirectory() as tmp:
            nodes = start_mesh(Path(tmp), quorum)
            try:
                results["quorum"][f"W={quorum}"] = write_load(nodes[0].url, args.writes, args.clients, f"w{quorum}")
                if quorum == 1:
                    results["lag"] = lag(nodes[0], nodes[1], args.lag_samples)
                    results["catch_up"] = catch_up(nodes, args.missed)
            finally:
                for node in nodes:
                    node.stop()
    if results["quorum"]:
        print(f"{'quorum':<8}{'writes/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for name, row in results["quorum"].items():
            print(f"{name:<8}{row['writes_per_s']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['errors']:>8}")
        print(f"replication lag a→b: p50 {results['lag']['p50_ms']} ms, p99 {results['lag']['p99_ms']} ms")
        cu = results["catch_up"]
        print(
            f"catch-up of {cu['missed']} missed writes: {cu['seconds_incl_start']} s incl. start, {cu['memories_per_s']} memories/s "
            f"(process start {cu['start_s']} s; {cu['memories_per_s_once_serving']} memories/s once serving)"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
