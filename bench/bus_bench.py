"""Bus benchmark (issues 17 and 24): throughput, long-poll latency, rehydration.

On SQLite (a file) and PostgreSQL (``--pg-dsn`` / ``$MEMMESH_BENCH_PG_DSN``, else the test
cluster of ``scripts/pg_test_server.py``), through the public ``Memory`` API:

- **chat**: 20 agents in 10 conversations (threads of one process sharing one store), each
  sending to its partner and reading + acking what it received; reported as durable
  enqueue + ack per second (a message counts once it is acked by its reader);
- **queue**: 20 agents: 4 producers enqueue tasks one per write, 16 workers claim (lease),
  then complete (the fenced ack) each; reported as tasks enqueued + acked per second; run as
  threads of this process, then (``--processes 1,2,4``) spread over N OS processes each with
  its own ``Memory`` on the same store, as a deployment runs workers (one Python process is
  GIL-bound: on 2 cores the one-process run measures the harness as much as the queue);
  with ``--batch 1,10`` also in batches (labels ``queue_b10``, ``queue_b10_2p``): producers
  send N tasks per write (``send_many``), workers lease up to N per claim (``claim_many``)
  and ack them in one write (``complete_many``); each task is still durable when sent and
  when acked, and fenced alone;
- **long-poll**: a reader blocked in ``unread(wait_s=…)`` and a sender in the same process,
  then in another process: latency from just before ``send`` to the reader holding the
  message, p50/p99; an empty poll's overshoot past its timeout; CPU used while idle-polling;
- **rehydration** of a 738-message session within 4,000 tokens with a query (keyword-only
  store, and with the offline MiniLM embedder when installed), p50/p99.

PostgreSQL runs, unless ``--pg-dsn`` or ``--shared-pg`` says otherwise, on a private cluster
started for the run and removed after, in each ``--pg-durability`` mode: ``disk`` (fsync and
synchronous_commit on: PostgreSQL's defaults) and ``crash`` (fsync off: each commit reaches
the OS, like SQLite's synchronous=NORMAL). The throughput parts report CPU time per operation
of this process and of the server's processes (psutil), the rate that CPU allows on 2 cores
(the number that means something on a loaded machine), and the statements the server ran
per operation (pg_stat_statements, loaded into the private cluster).

Prints a table and writes JSON (with the load average at start and end):

    python bench/bus_bench.py --only chat,queue --seconds 10 --out bench/results/bus.json
    python bench/bus_bench.py --only queue --processes 1,2,4 --seconds 10 --skip-pg
    python bench/bus_bench.py --out bench/results/bus.json [--seconds 5] [--skip-pg] [--pg-durability disk]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
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

import memmesh
from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL as P

AGENTS = 20
SERVER_PIDS: list[int] = []
"""The PostgreSQL postmaster this run measures (its children's CPU counts as server CPU)."""


def server_cpu() -> dict[str, float]:
    """CPU seconds (user + system) used so far by the measured PostgreSQL server, by kind of
    process: the client backends (serving statements) and the rest (WAL writer, checkpointer,
    autovacuum, …). Counts the postmaster and every child alive now (the pool's backends
    live through a whole run)."""
    import psutil

    totals: dict[str, float] = {"backends": 0.0, "other": 0.0}
    for pid in SERVER_PIDS:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                try:
                    times = proc.cpu_times()
                    title = " ".join(proc.cmdline())
                except psutil.NoSuchProcess:
                    continue
                kind = "backends" if "[local]" in title or "127.0.0.1" in title else "other"
                totals[kind] += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return totals


@contextmanager
def cpu_meter(out: dict[str, Any], ops: Callable[[], int]) -> Iterator[None]:
    """Adds CPU per operation to ``out``: this process (every thread) and the database
    server, in microseconds per op, and the ops/s that 2 fully used cores would allow.
    CPU time, unlike wall-clock rate, means something on a loaded machine."""
    client0, server0 = time.process_time(), server_cpu()
    yield
    server1 = server_cpu()
    client = time.process_time() - client0
    server = sum(server1.values()) - sum(server0.values())
    n = max(1, ops())
    out["ops"] = n
    out["client_cpu_us_per_op"] = round(client / n * 1e6, 1)
    if SERVER_PIDS:
        out["server_cpu_us_per_op"] = round(server / n * 1e6, 1)
        out["server_backends_cpu_us_per_op"] = round((server1["backends"] - server0["backends"]) / n * 1e6, 1)
    out["cpu_bound_ops_per_s_on_2_cores"] = round(2 / ((client + server) / n), 0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


SQLITE_SYNCHRONOUS = ["NORMAL"]  # --sqlite-synchronous, passed to the multi-process children too


def open_memory(url: str, workdir: Path, embed: bool = False, synchronous: str | None = None) -> Memory:
    overrides: dict[str, Any] = {
        "data_dir": str(workdir),
        "storage": {"pool_size": 40, "synchronous": synchronous or SQLITE_SYNCHRONOUS[0]},
    }
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
    cpu: dict[str, Any] = {}
    with cpu_meter(cpu, lambda: sum(acked)):
        start = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    return {
        "acked_per_s": round(sum(acked) / elapsed, 1),
        "sent_per_s": round(sum(sent) / elapsed, 1),
        **cpu,
        "errors": errors[:3],
    }


def _producer_loop(
    bus: Any, queue_id: str, token: str, index: int, stop: Any, enqueued: list[int], errors: list[str], batch: int = 1
) -> None:
    """Enqueue ``batch`` tasks per write until ``stop`` (a threading or multiprocessing Event)."""
    try:
        while not stop.is_set():
            if batch > 1:
                bodies = [f"task {index}-{enqueued[index] + k}" for k in range(batch)]
                enqueued[index] += len(bus.send_many(queue_id, bodies, sender=f"p{index}", token=token, principal=P))
                continue
            bus.send(queue_id, f"task {index}-{enqueued[index]}", sender=f"p{index}", token=token, principal=P)
            enqueued[index] += 1
    except Exception as exc:
        errors.append(repr(exc))


def _batch_worker_loop(bus: Any, queue_id: str, token: str, name: str, index: int, stop: Any, done: list[int], batch: int) -> None:
    """Lease up to ``batch`` tasks per claim (waiting up to 0.2 s), ack them in one write."""
    while not stop.is_set():
        got = bus.claim_many(queue_id, worker=name, token=token, limit=batch, lease_s=30, wait_s=0.2, principal=P)
        if got:
            results = [{"attempt_token": d.attempt_token, "result": "ok"} for d in got]
            done[index] += bus.complete_many(queue_id, results, worker=name, token=token, principal=P).completed


def _worker_loop(
    bus: Any,
    queue_id: str,
    token: str,
    name: str,
    index: int,
    stop: Any,
    done: list[int],
    errors: list[str],
    claim_next: bool,
    batch: int = 1,
) -> None:
    """Claim (waiting up to 0.2 s) and complete until ``stop``; with ``claim_next`` a busy
    worker's complete also leases its next task (one write per task); with ``batch`` > 1,
    batches of tasks (see _batch_worker_loop)."""
    got = None
    try:
        if batch > 1:
            _batch_worker_loop(bus, queue_id, token, name, index, stop, done, batch)
        while not stop.is_set():
            if got is not None and not claim_next:  # the loop before claim_next: complete, then claim
                bus.complete(queue_id, got.attempt_token, worker=name, token=token, result="ok", principal=P)
                done[index] += 1
                got = None
            if got is None:
                got = bus.claim(queue_id, worker=name, token=token, lease_s=30, wait_s=0.2, principal=P)
                continue
            got = bus.complete(
                queue_id, got.attempt_token, worker=name, token=token, result="ok", principal=P, claim_next=True, lease_s=30
            ).next
            done[index] += 1
    except Exception as exc:
        errors.append(repr(exc))


def _queue_roles() -> tuple[list[str], list[str]]:
    return ["p0", "p1", "p2", "p3"], [f"w{i}" for i in range(AGENTS - 4)]


def queue_throughput(
    mem: Memory, seconds: float, claim_next: bool = True, batch: int = 1, pin: bool = False, trace: bool = False
) -> dict[str, Any]:
    """4 producers enqueue, 16 workers claim and complete (each a durable, fenced ack), all
    threads of this one process (one interpreter: the GIL serialises their Python). With
    ``pin`` its Python threads are kept on one CPU for the run (memmesh.pin_to_one_cpu);
    with ``trace`` the writer's statements are counted (SQLite), which costs ~20 % of the
    rate: a traced run's rate is not comparable with an untraced one."""
    bus = mem.service.bus
    producers, workers = _queue_roles()
    queue = bus.open([*producers, *workers], kind="queue", principal=P)
    enqueued = [0] * len(producers)
    done = [0] * len(workers)
    stop = threading.Event()
    errors: list[str] = []
    threads = [
        threading.Thread(target=_producer_loop, args=(bus, queue.id, queue.token, i, stop, enqueued, errors, batch))
        for i in range(len(producers))
    ]
    threads += [
        threading.Thread(target=_worker_loop, args=(bus, queue.id, queue.token, w, i, stop, done, errors, claim_next, batch))
        for i, w in enumerate(workers)
    ]
    cpu: dict[str, Any] = {}
    traced = _trace_writer(mem) if trace else None
    pinned = memmesh.pin_to_one_cpu() if pin else None
    with cpu_meter(cpu, lambda: sum(done)):
        start = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    if pin:
        memmesh.unpin()
    statements = _untrace_writer(mem, traced, sum(done))
    return {
        **statements,
        "processes": 1,
        "batch": batch,
        "pinned_cpu": pinned,
        "completed_per_s": round(sum(done) / elapsed, 1),
        "enqueued_per_s": round(sum(enqueued) / elapsed, 1),
        **cpu,
        "errors": errors[:3],
        "error_count": len(errors),
    }


def _trace_writer(mem: Memory) -> dict[str, int] | None:
    """SQLite: count the statements the writer connection runs (its trace callback), by kind."""
    writer = getattr(mem.service.store, "_writer", None)
    if writer is None or mem.service.bus.sql.postgres:
        return None
    counts: dict[str, int] = {}

    def seen(sql: str) -> None:
        key = " ".join(sql.split()[:4])[:48]
        counts[key] = counts.get(key, 0) + 1

    writer.set_trace_callback(seen)
    return counts


def _untrace_writer(mem: Memory, counts: dict[str, int] | None, tasks: int) -> dict[str, Any]:
    """The writer's statements per task (SQLite; an INSERT into a table with triggers is
    reported twice by the trace callback, once for its trigger program), the top kinds."""
    if counts is None or not tasks:
        return {}
    mem.service.store._writer.set_trace_callback(None)  # type: ignore[attr-defined]
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:10]
    return {
        "writer_statements_per_task": round(sum(counts.values()) / tasks, 2),
        "writer_statements_top": {k: round(n / tasks, 2) for k, n in top},
    }


def _queue_child(
    url: str,
    workdir: str,
    queue_id: str,
    token: str,
    producers: list[int],
    workers: list[tuple[int, str]],
    claim_next: bool,
    batch: int,
    synchronous: str,
    cpu: int | None,
    ready: Any,
    go: Any,
    stop: Any,
    release: Any,
    pipe: Any,
) -> None:
    """One OS process of the multi-process queue run: its own Memory on the shared store,
    its share of the producers and workers as threads, its counts and CPU sent back; its
    Python threads kept on ``cpu`` when given."""
    if cpu is not None:
        memmesh.pin_to_one_cpu(cpu)
    mem = open_memory(url, Path(workdir), synchronous=synchronous)
    bus = mem.service.bus
    enqueued = [0] * 4
    done = [0] * (AGENTS - 4)
    errors: list[str] = []
    threads = [threading.Thread(target=_producer_loop, args=(bus, queue_id, token, i, stop, enqueued, errors, batch)) for i in producers]
    threads += [
        threading.Thread(target=_worker_loop, args=(bus, queue_id, token, w, i, stop, done, errors, claim_next, batch)) for i, w in workers
    ]
    ready.set()
    go.wait()
    cpu0 = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = time.process_time() - cpu0
    pipe.send({"enqueued": sum(enqueued), "done": sum(done), "cpu_s": cpu, "errors": errors})
    release.wait(120)  # the store (and its server backends, whose CPU is counted) stays open until then
    mem.close()
    pipe.close()


def queue_throughput_processes(
    url: str, workdir: Path, seconds: float, processes: int, claim_next: bool = True, batch: int = 1, pin: bool = False
) -> dict[str, Any]:
    """The queue run with its 4 producers and 16 workers spread round-robin over
    ``processes`` OS processes, each with its own ``Memory`` on the same store (as a real
    deployment runs workers): counted the same way; client CPU is every child's CPU while
    it ran (time.process_time, sent back over a pipe with its counts). With ``pin`` process
    k keeps its Python threads on CPU k modulo the CPUs this process may use."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    mem = open_memory(url, workdir)
    try:
        producers, workers = _queue_roles()
        queue = mem.service.bus.open([*producers, *workers], kind="queue", principal=P)
    finally:
        mem.close()
    go, stop, release = ctx.Event(), ctx.Event(), ctx.Event()
    cpus = sorted(os.sched_getaffinity(0)) if pin else []
    children = []
    for k in range(processes):
        mine_p = [i for i in range(len(producers)) if i % processes == k]
        mine_w = [(i, w) for i, w in enumerate(workers) if (i + len(producers)) % processes == k]
        ready = ctx.Event()
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_queue_child,
            args=(
                url,
                str(workdir),
                queue.id,
                queue.token,
                mine_p,
                mine_w,
                claim_next,
                batch,
                SQLITE_SYNCHRONOUS[0],
                cpus[k % len(cpus)] if pin else None,
                ready,
                go,
                stop,
                release,
                child_end,
            ),
            daemon=True,
        )
        proc.start()
        child_end.close()
        children.append((proc, ready, parent_end))
    for _proc, ready, _pipe in children:
        if not ready.wait(120):
            raise RuntimeError("a queue bench process did not start in 120 s")
    results: list[dict[str, Any]] = []
    server0 = server_cpu()
    start = time.perf_counter()
    go.set()
    time.sleep(seconds)
    stop.set()
    for _proc, _ready, pipe in children:
        results.append(pipe.recv())
    elapsed = time.perf_counter() - start
    server1 = server_cpu()
    release.set()
    for proc, _ready, _pipe in children:
        proc.join(60)
        if proc.is_alive():  # never leave a child writing into the run's folder
            proc.kill()
            proc.join(10)
    done = sum(r["done"] for r in results)
    client = sum(r["cpu_s"] for r in results)
    server = sum(server1.values()) - sum(server0.values())
    errors = [e for r in results for e in r["errors"]]
    n = max(1, done)
    out: dict[str, Any] = {
        "processes": processes,
        "batch": batch,
        "pinned": pin,
        "completed_per_s": round(done / elapsed, 1),
        "enqueued_per_s": round(sum(r["enqueued"] for r in results) / elapsed, 1),
        "ops": done,
        "client_cpu_us_per_op": round(client / n * 1e6, 1),
    }
    if SERVER_PIDS:
        out["server_cpu_us_per_op"] = round(server / n * 1e6, 1)
        out["server_backends_cpu_us_per_op"] = round((server1["backends"] - server0["backends"]) / n * 1e6, 1)
    out["cpu_bound_ops_per_s_on_2_cores"] = round(2 / ((client + server) / n), 0)
    out["errors"] = errors[:3]
    out["error_count"] = len(errors)
    return out


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


DURABILITY = {
    "disk": {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"},
    "crash": {"fsync": "off", "full_page_writes": "on", "synchronous_commit": "on"},
}
"""The private bench cluster's settings. ``disk``: PostgreSQL's defaults, every acknowledged
commit is flushed to disk (survives power loss; bounded by the disk's flush rate, shared by
concurrent commits). ``crash``: every acknowledged commit is written to the operating
system before it returns (survives a crash of PostgreSQL or of memmesh, not of the machine),
the durability SQLite's ``synchronous=NORMAL`` gives the SQLite numbers beside it. The shared
test cluster has ``synchronous_commit`` off too, which is neither."""


@contextmanager
def postgres(dsn: str | None, private: bool, durability: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh database URLs on the given server, or on a private durable cluster
    made by ``scripts/pg_test_server.py`` (stopped at the end), or on the shared test cluster."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    script = Path(__file__).resolve().parent.parent / "scripts" / "pg_test_server.py"
    folder = Path(tempfile.mkdtemp(prefix="memmesh-bus-bench-pg-")) if dsn is None and private else None
    if dsn is None:
        where = ["--dir", str(folder)] if folder else []
        dsn = subprocess.run([sys.executable, str(script), "ensure", *where], capture_output=True, text=True, check=True).stdout.split(
            "\n"
        )[-2]
    with psycopg.connect(dsn, autocommit=True) as conn:
        if folder is not None:
            os.chmod(folder, 0o755)
            for key, value in DURABILITY[durability].items():
                conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    if folder is not None:  # a restart loads pg_stat_statements (statement counts per operation)
        subprocess.run([sys.executable, str(script), "stop", "--dir", str(folder)], capture_output=True, check=True)
        subprocess.run([sys.executable, str(script), "start", "--dir", str(folder)], capture_output=True, check=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if folder is not None:  # (known once the library is loaded) planning time per statement too
            conn.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
            conn.execute("SELECT pg_reload_conf()")
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(DURABILITY["disk"]),)).fetchall())
    try:
        SERVER_PIDS[:] = [int(Path(data_dir, "postmaster.pid").read_text().split()[0])]
    except OSError:  # a server on another machine: only client CPU is measured
        SERVER_PIDS[:] = []
    print(f"postgres  {'private' if folder else 'given/shared'} cluster, {settings}, server pid {SERVER_PIDS}", flush=True)
    created: list[str] = []
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if k != "dbname" and v not in (None, "")}

    def fresh() -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        if folder is not None:
            with psycopg.connect(dsn, dbname=name, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
        return f"postgresql:///{name}?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))

    try:
        yield fresh
    finally:
        if folder is not None:
            subprocess.run([sys.executable, str(script), "stop", "--dir", str(folder)], capture_output=True, check=False)
            shutil.rmtree(folder, ignore_errors=True)
        else:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for name in created:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def statements_reset(url: str) -> None:
    """Forget the statement counts so far (schema set-up, opening the conversations)."""
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone():
                conn.execute("SELECT pg_stat_statements_reset()")


def commits(url: str) -> int | None:
    """Transactions committed so far in the run's database (pg_stat_database.xact_commit;
    None on SQLite): with the ops done, the transactions per enqueue + ack."""
    if not url.startswith("postgresql"):
        return None
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row is not None else None


def statements_per_op(url: str, ops: int) -> list[dict[str, Any]]:
    """What the server ran per operation (pg_stat_statements, private cluster only): calls,
    mean time and rows of each statement, busiest first."""
    if not url.startswith("postgresql"):
        return []
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone():
            return []
        found = conn.execute(
            "SELECT query, calls, total_exec_time, rows, plans, total_plan_time, shared_blks_hit + shared_blks_read, wal_records "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 20"
        ).fetchall()
    return [
        {
            "calls_per_op": round(calls / max(1, ops), 3),
            "mean_ms": round(total / max(1, calls), 3),
            "rows_per_call": round(rows / max(1, calls), 2),
            "plans_per_call": round(plans / max(1, calls), 2),
            "plan_mean_ms": round(plan_total / max(1, plans), 3),
            "blocks_per_call": round(blocks / max(1, calls), 1),
            "wal_records_per_call": round(wal / max(1, calls), 1),
            "query": " ".join(query.split())[:110],
        }
        for query, calls, total, rows, plans, plan_total, blocks, wal in found
    ]


def run_backend(name: str, fresh_url: Callable[[], str], workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    parts = set(args.only.split(",")) if args.only else {"chat", "queue", "poll", "rehydrate"}
    runs: list[tuple[str, str, Callable[[Memory, str], dict[str, Any]]]] = [("chat", "chat", lambda m, u: chat_throughput(m, args.seconds))]
    claim_next = not args.no_claim_next
    own_memory: set[str] = set()  # labels of multi-process runs: each process opens its own Memory
    pins = {"off": [False], "on": [True], "both": [False, True]}[args.pin]
    for b, pin in [(int(x), pin) for x in args.batch.split(",") if x.strip() for pin in pins]:
        tag, pinned = ("" if b == 1 else f"_b{b}"), ("_pinned" if pin else "")
        runs.append(
            (
                "queue",
                f"queue{tag}{pinned}",
                lambda m, u, b=b, pin=pin: queue_throughput(m, args.seconds, claim_next, b, pin, args.statements),
            )
        )
        for n in [int(x) for x in args.processes.split(",") if x.strip()]:
            if n > 1:
                own_memory.add(f"queue{tag}_{n}p{pinned}")
                runs.append(
                    (
                        "queue",
                        f"queue{tag}_{n}p{pinned}",
                        lambda m, u, n=n, b=b, pin=pin: queue_throughput_processes(u, workdir, args.seconds, n, claim_next, b, pin),
                    )
                )
    for part, label, action in runs:
        if part not in parts:
            continue
        url = fresh_url()
        mem = None if label in own_memory else open_memory(url, workdir)
        try:
            statements_reset(url)
            commits0 = commits(url)
            out[label] = action(mem, url)  # type: ignore[arg-type]
            statements = statements_per_op(url, out[label].get("ops", 0))
        finally:
            if mem is not None:
                mem.close()
        if commits0 is not None:  # read once the run's connections closed (a backend reports its counts as it exits)
            time.sleep(0.2)
            out[label]["transactions_per_op"] = round(((commits(url) or 0) - commits0) / max(1, out[label].get("ops", 0)), 2)
        print(f"{name:9} {label:6} {out[label]}", flush=True)
        if statements:
            out[label]["statements"] = statements
            for row in statements[: args.top]:
                print(
                    f"{'':16}{row['calls_per_op']:6.2f}/op {row['mean_ms']:7.3f} ms  {row['rows_per_call']:6.2f} rows  "
                    f"{row['plans_per_call']:4.2f} plans × {row['plan_mean_ms']:6.3f} ms {row['blocks_per_call']:6.1f} blks "
                    f"{row['wal_records_per_call']:5.1f} wal  {row['query'][:70]}"
                )
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
    parser.add_argument("--no-claim-next", action="store_true", help="queue workers complete, then claim (two writes per task)")
    parser.add_argument(
        "--processes",
        default="1,2",
        help="queue part: comma-separated OS process counts to spread producers and workers over (1 = threads of this process)",
    )
    parser.add_argument(
        "--batch",
        default="1",
        help="queue part: comma-separated batch sizes (1 = one task per send, claim and ack; N = send_many, claim_many, complete_many)",
    )
    parser.add_argument(
        "--sqlite-synchronous", default="NORMAL", choices=["NORMAL", "FULL"], help="SQLite's storage.synchronous for the runs"
    )
    parser.add_argument(
        "--pin",
        choices=["off", "on", "both"],
        default="both",
        help="queue part: run with the process's Python threads free on every CPU (off), kept on one CPU each "
        "(on: memmesh.pin_to_one_cpu), or both",
    )
    parser.add_argument(
        "--statements", action="store_true", help="queue part (SQLite, one process): count the writer's statements (slows the run ~20 %%)"
    )
    parser.add_argument("--top", type=int, default=8, help="PostgreSQL statements printed per throughput part")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated parts to run: chat,queue,poll,rehydrate (default all)")
    parser.add_argument("--pg-dsn", default=os.environ.get("MEMMESH_BENCH_PG_DSN"))
    parser.add_argument(
        "--shared-pg",
        action="store_true",
        help="use the shared test cluster (fsync off) instead of a private durable one made for the run",
    )
    parser.add_argument(
        "--pg-durability",
        default="disk,crash",
        help="private cluster modes to run, comma-separated: disk (fsync per commit) and/or crash (write per commit)",
    )
    args = parser.parse_args()
    SQLITE_SYNCHRONOUS[0] = args.sqlite_synchronous
    random.seed(7)
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_start": os.getloadavg()},
        "agents": AGENTS,
        "sqlite_synchronous": args.sqlite_synchronous,
    }
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        counter = iter(range(1000))
        if not args.skip_sqlite:
            report["sqlite"] = run_backend("sqlite", lambda: f"sqlite:///{workdir / f'bus-{next(counter)}.db'}", workdir, args)
        if not args.skip_pg:
            private = args.pg_dsn is None and not args.shared_pg
            for mode in args.pg_durability.split(",") if private else ["given"]:
                key = "postgres" if mode in ("disk", "given") else f"postgres_{mode}"
                with postgres(args.pg_dsn, private, mode) as fresh:
                    report[key] = {"durability": mode, **run_backend(key, fresh, workdir, args)}
    report["machine"]["load_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"load average {report['machine']['load_start']} → {report['machine']['load_end']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
