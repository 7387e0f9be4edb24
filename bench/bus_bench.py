"""Bus benchmark (issues 17 and 24): throughput, long-poll latency, rehydration.

On SQLite (a file) and PostgreSQL (``--pg-dsn`` / ``$MEMMESH_BENCH_PG_DSN``, else the test
cluster of ``scripts/pg_test_server.py``), through the public ``Memory`` API:

- **chat**: 20 agents in 10 conversations (threads of one process sharing one store), each
  sending to its partner and reading + acking what it received; reported as durable
  enqueue + ack per second (a message counts once it is acked by its reader);
- **queue**: 20 agents: 4 producers enqueue tasks one per write, 16 workers claim (lease),
  then complete (the fenced ack) each; reported as tasks enqueued + acked per second;
- **long-poll**: a reader blocked in ``unread(wait_s=…)`` and a sender in the same process,
  then in another process: latency from just before ``send`` to the reader holding the
  message, p50/p99; an empty poll's overshoot past its timeout; CPU used while idle-polling;
- **rehydration** of a 738-message session within 4,000 tokens with a query (keyword-only
  store, and with the offline MiniLM embedder when installed), p50/p99.

Prints a table and writes JSON (with the load average at start and end):

    python bench/bus_bench.py --out bench/results/bus.json [--seconds 5] [--skip-pg]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL as P

AGENTS = 20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def open_memory(url: str, workdir: Path, embed: bool = False) -> Memory:
    overrides: dict[str, Any] = {"data_dir": str(workdir), "storage": {"pool_size": 40}}
    if not embed:
        overrides["embeddings"] = {"provider": "none"}
    return Memory(url, load_settings(None, overrides=overrides, env={"MEMMESH_CONFIG": ""}), clock=system_clock)


# -- throughput ---------------------------------------------------------------------------------


def chat_throughput(mem: Memory, seconds: float) -> dict[str, Any]:
    """10 pairs of agents; each sends to its partner and reads + acks what it got."""
    bus = mem.service.bus
    pairs = [bus.open([f"a{i}", f"b{i}"], principal=P) for i in range(AGENTS // 2)]
    acked = [0] * AGENTS
    sent = [0] * AGENTS
    stop = threading.Event()
    errors: list[str] = []

    def agent(index: int) -> None:
        conv = pairs[index // 2]
        me, _other = (f"a{index // 2}", f"b{index // 2}") if index % 2 == 0 else (f"b{index // 2}", f"a{index // 2}")
        try:
            while not stop.is_set():
                bus.send(conv.id, f"{me} #{sent[index]}", sender=me, token=conv.token, principal=P)
                sent[index] += 1
                got = bus.unread(conv.id, agent=me, token=conv.token, limit=100, principal=P)
                if got.messages:
                    acked[index] += bus.ack(conv.id, agent=me, token=conv.token, all=True, principal=P).acked
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(AGENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"acked_per_s": round(sum(acked) / elapsed, 1), "sent_per_s": round(sum(sent) / elapsed, 1), "errors": errors[:3]}


def queue_throughput(mem: Memory, seconds: float) -> dict[str, Any]:
    """4 producers enqueue, 16 workers claim and complete (each a durable, fenced ack)."""
    bus = mem.service.bus
    workers = [f"w{i}" for i in range(AGENTS - 4)]
    queue = bus.open(["p0", "p1", "p2", "p3", *workers], kind="queue", principal=P)
    enqueued = [0] * 4
    done = [0] * len(workers)
    stop = threading.Event()
    errors: list[str] = []

    def producer(index: int) -> None:
        try:
            while not stop.is_set():
                bus.send(queue.id, f"task {index}-{enqueued[index]}", sender=f"p{index}", token=queue.token, principal=P)
                enqueued[index] += 1
        except Exception as exc:
            errors.append(repr(exc))

    def worker(index: int) -> None:
        name = workers[index]
        try:
            while not stop.is_set():
                got = bus.claim(queue.id, worker=name, token=queue.token, lease_s=30, wait_s=0.2, principal=P)
                if got is not None:
                    bus.complete(queue.id, got.attempt_token, worker=name, token=queue.token, result="ok", principal=P)
                    done[index] += 1
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=worker, args=(i,)) for i in range(len(workers))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "completed_per_s": round(sum(done) / elapsed, 1),
        "enqueued_per_s": round(sum(enqueued) / elapsed, 1),
        "errors": errors[:3],
    }


# -- long-poll ----------------------------------------------------------------------------------

REMOTE_SENDER = """
import sys, time
from memmesh import Memory
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL
url, data_dir, conv, token, count = sys.argv[1:6]
settings = load_settings(None, overrides={"data_dir": data_dir, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
with Memory(url, settings) as m:
    bus = m.service.bus
    for i in range(int(count)):
        line = sys.stdin.readline()  # the reader is waiting: send now
        if not line:
            break
        print(time.time(), flush=True)
        bus.send(conv, f"ping {i}", sender="a", token=token, principal=LOCAL_PRINCIPAL)
"""


def long_poll(mem: Memory, url: str, workdir: Path, samples: int) -> dict[str, Any]:
    bus = mem.service.bus
    conv = bus.open(["a", "b"], principal=P)
    t = conv.token

    # same process: the sender thread starts its send just after the reader blocks
    lat_local: list[float] = []
    for i in range(samples):
        marks: dict[str, float] = {}

        def send(i: int = i, marks: dict[str, float] = marks) -> None:
            time.sleep(0.005)
            marks["sent"] = time.perf_counter()
            bus.send(conv.id, f"local {i}", sender="a", token=t, principal=P)

        sender = threading.Thread(target=send)
        sender.start()
        got = bus.unread(conv.id, agent="b", token=t, wait_s=5, principal=P)
        seen = time.perf_counter()
        sender.join()
        assert got.messages, "long-poll returned empty"
        lat_local.append((seen - marks["sent"]) * 1000)
        bus.ack(conv.id, agent="b", token=t, all=True, principal=P)

    # another process sends; wall clock on both sides
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", REMOTE_SENDER, url, str(workdir), conv.id, t, str(samples)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lat_remote: list[float] = []
    for _ in range(samples):
        result: dict[str, Any] = {}

        def read(result: dict[str, Any] = result) -> None:
            result["got"] = bus.unread(conv.id, agent="b", token=t, wait_s=10, principal=P)
            result["seen"] = time.time()

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.01)
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        sent_at = float(proc.stdout.readline())  # type: ignore[union-attr]
        reader.join()
        assert result["got"].messages
        lat_remote.append((result["seen"] - sent_at) * 1000)
        bus.ack(conv.id, agent="b", token=t, all=True, principal=P)
    proc.stdin.close()  # type: ignore[union-attr]
    proc.wait(30)

    # empty polls: overshoot past the timeout, and CPU while idle
    overshoot = []
    cpu_before = time.process_time()
    idle_start = time.perf_counter()
    for _ in range(5):
        start = time.perf_counter()
        bus.unread(conv.id, agent="b", token=t, wait_s=0.5, principal=P)
        overshoot.append((time.perf_counter() - start - 0.5) * 1000)
    idle_cpu = (time.process_time() - cpu_before) / (time.perf_counter() - idle_start)
    return {
        "in_process_p50_ms": round(pct(lat_local, 0.5), 2),
        "in_process_p99_ms": round(pct(lat_local, 0.99), 2),
        "cross_process_p50_ms": round(pct(lat_remote, 0.5), 2),
        "cross_process_p99_ms": round(pct(lat_remote, 0.99), 2),
        "empty_poll_overshoot_max_ms": round(max(overshoot), 1),
        "idle_poll_cpu_percent": round(idle_cpu * 100, 2),
        "samples": samples,
    }


# -- rehydration --------------------------------------------------------------------------------


def rehydration(mem: Memory, repeat: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "conformance"))
    from test_sessions import FACT, synthetic_session  # the same session the test rehydrates

    sessions = mem.service.sessions
    sid = f"bench-{uuid.uuid4().hex[:8]}"
    turns = synthetic_session()
    start = time.perf_counter()
    for offset in range(0, len(turns), 100):
        sessions.append_many(sid, [{"role": r, "content": c} for r, c in turns[offset : offset + 100]], principal=P)
    append_s = time.perf_counter() - start
    times = []
    got = None
    for _ in range(repeat):
        start = time.perf_counter()
        got = sessions.rehydrate(sid, budget_tokens=4000, query="how often does the Orion cluster rotate credentials?", principal=P)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "messages": len(turns),
        "append_738_s": round(append_s, 2),
        "p50_ms": round(pct(times, 0.5), 1),
        "p99_ms": round(pct(times, 0.99), 1),
        "tokens_used": got.tokens_used if got else None,
        "fact_from_turn_41_included": bool(got and FACT in got.context),
    }


# -- backends -----------------------------------------------------------------------------------


@contextmanager
def postgres(dsn: str | None) -> Iterator[Callable[[], str]]:
    """A factory of fresh database URLs on the given server, or on the test cluster."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if dsn is None:
        script = Path(__file__).resolve().parent.parent / "scripts" / "pg_test_server.py"
        dsn = subprocess.run([sys.executable, str(script), "ensure"], capture_output=True, text=True, check=True).stdout.split("\n")[-2]
    created: list[str] = []
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if k != "dbname" and v not in (None, "")}

    def fresh() -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"postgresql:///{name}?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))

    try:
        yield fresh
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_backend(name: str, fresh_url: Callable[[], str], workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    parts = set(args.only.split(",")) if args.only else {"chat", "queue", "poll", "rehydrate"}
    for label, action in (
        ("chat", lambda m: chat_throughput(m, args.seconds)),
        ("queue", lambda m: queue_throughput(m, args.seconds)),
    ):
        if label not in parts:
            continue
        mem = open_memory(fresh_url(), workdir)
        try:
            out[label] = action(mem)
        finally:
            mem.close()
        print(f"{name:9} {label:6} {out[label]}", flush=True)
    url = fresh_url()
    mem = open_memory(url, workdir)
    try:
        if "poll" in parts:
            out["long_poll"] = long_poll(mem, url, workdir, args.samples)
            print(f"{name:9} poll   {out['long_poll']}", flush=True)
        if "rehydrate" in parts:
            out["rehydrate_keyword_only"] = rehydration(mem, args.repeat)
            print(f"{name:9} rehyd  {out['rehydrate_keyword_only']}", flush=True)
    finally:
        mem.close()
    if args.minilm:
        mem = open_memory(fresh_url(), workdir, embed=True)
        try:
            out["rehydrate_minilm"] = rehydration(mem, args.repeat)
            print(f"{name:9} rehyd+ {out['rehydrate_minilm']}", flush=True)
        finally:
            mem.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/bus.json"))
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    parser.add_argument("--samples", type=int, default=200, help="long-poll wake-ups measured per mode")
    parser.add_argument("--repeat", type=int, default=20, help="rehydrations timed")
    parser.add_argument("--minilm", action="store_true", help="also rehydrate with the MiniLM embedder (slow to set up)")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated parts to run: chat,queue,poll,rehydrate (default all)")
    parser.add_argument("--pg-dsn", default=os.environ.get("MEMMESH_BENCH_PG_DSN"))
    args = parser.parse_args()
    random.seed(7)
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_start": os.getloadavg()},
        "agents": AGENTS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        counter = iter(range(1000))
        if not args.skip_sqlite:
            report["sqlite"] = run_backend("sqlite", lambda: f"sqlite:///{workdir / f'bus-{next(counter)}.db'}", workdir, args)
        if not args.skip_pg:
            with postgres(args.pg_dsn) as fresh:
                report["postgres"] = run_backend("postgres", fresh, workdir, args)
    report["machine"]["load_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"load average {report['machine']['load_start']} → {report['machine']['load_end']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
