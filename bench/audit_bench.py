"""Audit log benchmark (issues 16 and 24): durable appends, verification, overhead per write.

Measures on real SQLite files (the default durability, synchronous=NORMAL: an acknowledged
append survives a process crash; ``--full`` also measures synchronous=FULL, which survives
power loss):

- durable appends: ``service.audit.record`` one at a time, each its own committed
  transaction (1 thread), and from 4 threads (group commit shares the COMMIT): appends/s and
  per-append latency p50/p99;
- verify: builds a log of ``--verify-size`` entries (rows computed with the real chain
  functions and bulk-inserted, since only verification is timed), signs a checkpoint over it
  and times ``audit verify`` (chain + RFC 6962 tree + signatures);
- overhead per memory write: ``Memory.add`` (keyword-only, so the write itself is as cheap as
  it gets and the audit's share as large as it gets) on an audited store vs the same store
  type with the audit unwrapped, interleaved in blocks so load changes hit both alike.

With ``--pg``, appends are also measured on PostgreSQL: by default on a private cluster made
for the run in each ``--pg-durability`` mode (``disk``: PostgreSQL's defaults, every
acknowledged append on disk; ``crash``: fsync off, written to the OS per commit; ``shared``:
the test cluster, durable in neither sense), from each of ``--pg-threads``, with the
server's CPU per append read from /proc.

Prints a summary with the load average and writes JSON.

    python bench/audit_bench.py --verify-size 1000000 --out bench/results/audit.json
    python bench/audit_bench.py --only overhead --writes 8000   # just the per-write overhead
    python bench/audit_bench.py --only appends --appends 5000 --pg --pg-durability disk,crash --pg-threads 8,32
    python bench/audit_bench.py --only appends --appends 6000 --pg --pg-durability disk --pg-threads 8 --pg-processes 2
    python bench/audit_bench.py --only appends --appends 6000 --pg --pg-durability disk --pg-threads 8,32 --pg-processes 2 --pg-group on,off

The overhead is reported as process CPU and as the writing thread's CPU (which leaves out
the checkpointer), per write; the figure to quote is the median and interquartile range of
the per-pair ratio over many short alternating block pairs (``--block`` writes each, 1 by
default: the two stores take turns write by write, and ``--writes 8000`` is 8,000 pairs), which
two runs reproduce within half a point even on a loaded machine (see docs/benchmarks.md).
``--only instructions`` counts instructions instead (valgrind's callgrind), which do not depend
on the load at all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from memmesh import Memory
from memmesh.audit import chain, parallel
from memmesh.audit.capture import unwrap
from memmesh.audit.notes import init_key
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def open_memory(
    workdir: Path, name: str, *, synchronous: str = "NORMAL", signed: bool = True, embedder: str = "none", url: str | None = None
) -> Memory:
    audit = {"signing_key_file": str(workdir / "signing.key"), "checkpoint_dir": str(workdir / f"ck-{name}")} if signed else {}
    settings = load_settings(
        None,
        overrides={"data_dir": str(workdir), "embeddings": {"provider": embedder}, "storage": {"synchronous": synchronous}, "audit": audit},
        env={},
    )
    return Memory(url or f"sqlite:///{workdir / f'{name}.db'}", settings)


def bench_appends(
    workdir: Path,
    n: int,
    synchronous: str,
    threads: int = 8,
    url: str | None = None,
    pg_mode: str = "",
    processes: int = 1,
    group: bool = True,
) -> dict:
    mem = open_memory(workdir, f"appends-{synchronous}", synchronous=synchronous, url=url)
    server = server_cpu()
    audit = mem.service.audit
    if not group:  # PostgreSQL as before the group commit: one transaction per append
        audit._grouped = lambda: False  # type: ignore[method-assign]
    audit.start()  # the checkpointer runs as in `serve`
    latencies = []
    cpu_each = []  # this thread's CPU per append: what the append costs, whatever the load
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        t, c = time.perf_counter(), time.thread_time()
        audit.record("bench.append", principal=LOCAL_PRINCIPAL, target=f"t{i}", namespace="bench", detail={"i": i})
        latencies.append((time.perf_counter() - t) * 1000)
        cpu_each.append((time.thread_time() - c) * 1000)
    single, single_cpu = time.perf_counter() - start, time.process_time() - cpu

    threaded: list[float] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = []
        for i in range(n // threads):
            t = time.perf_counter()
            audit.record("bench.append", principal=LOCAL_PRINCIPAL, target=f"w{k}-{i}", namespace="bench")
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            threaded.extend(mine)

    start, cpu, batches = time.perf_counter(), time.process_time(), audit.group.batches
    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    multi, multi_cpu = time.perf_counter() - start, time.process_time() - cpu
    transactions = audit.group.batches - batches if group and url else len(threaded)
    server_used = server_cpu() - server
    spread = bench_processes(url, workdir, n, processes, threads, group) if url and processes > 1 else {}
    audit.stop()
    report = audit.verify(principal=LOCAL_PRINCIPAL)
    mem.close()
    assert report.ok, report.problems
    return {
        "backend": "postgres" if url else "sqlite",
        "synchronous": synchronous if not url else f"postgres {pg_mode}" + ("" if group else " (no group commit)"),
        "appends": n,
        "single_thread_per_s": round(n / single),
        "single_cpu_us_per_append": round(1e6 * single_cpu / n, 1),
        "single_p50_ms": round(statistics.median(latencies), 3),
        "single_p99_ms": round(pct(latencies, 0.99), 3),
        "single_cpu_p50_ms": round(statistics.median(cpu_each), 3),
        "single_cpu_p99_ms": round(pct(cpu_each, 0.99), 3),
        "single_cpu_bound_per_s": round(n / single_cpu),
        "threads": threads,
        "threads_per_s": round(len(threaded) / multi),
        "threads_p50_ms": round(statistics.median(threaded), 3),
        "threads_p99_ms": round(pct(threaded, 0.99), 3),
        "threads_cpu_us_per_append": round(1e6 * multi_cpu / max(1, len(threaded)), 1),
        "threads_transactions_per_append": round(transactions / max(1, len(threaded)), 3),
        **spread,
        "checkpoints_checked": report.checkpoints_checked,
        **({"server_cpu_us_per_append": round(1e6 * server_used / (n + len(threaded)), 1)} if url and SERVER_PIDS else {}),
    }


APPENDER_CHILD = """
import json, resource, sys, threading, time
from memmesh import Memory
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL
url, data, tag, each, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
settings = load_settings(None, overrides={"data_dir": data, "embeddings": {"provider": "none"}}, env={})
mem = Memory(url, settings)
audit = mem.service.audit
if sys.argv[6] == "off":
    audit._grouped = lambda: False
audit.record("bench.warm", principal=LOCAL_PRINCIPAL, target=tag)  # the pool and the cached head
latencies, lock = [], threading.Lock()
def worker(k):
    mine = []
    for i in range(each):
        t = time.perf_counter()
        audit.record("bench.append", principal=LOCAL_PRINCIPAL, target=f"{tag}-{k}-{i}", namespace="bench")
        mine.append((time.perf_counter() - t) * 1000)
    with lock:
        latencies.extend(mine)
print("ready", flush=True)
sys.stdin.readline()
before, batches = resource.getrusage(resource.RUSAGE_SELF), audit.group.batches
workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
for t in workers:
    t.start()
for t in workers:
    t.join()
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
batches = audit.group.batches - batches if sys.argv[6] == "on" else len(latencies)
mem.close()
print(json.dumps({"latencies": latencies, "cpu_s": cpu, "transactions": batches}), flush=True)
"""
"""One appender process of :func:`bench_processes`: ``threads`` threads, ``each`` appends per
thread, started together with its siblings on a line on stdin."""


def bench_processes(url: str, workdir: Path, n: int, processes: int, threads: int, group: bool = True) -> dict:
    """``n`` appends from ``processes`` OS processes of ``threads`` threads each (one process's
    threads share one GIL, and the in-process turn orders them; processes do not share
    either, so client CPU can use both cores): the rate, latencies and client and server CPU
    per append. The processes open the store and warm up first; the clock starts when all
    are ready and stops when the last is done."""
    each = max(1, n // (processes * threads))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER_CHILD, url, str(workdir), f"p{k}", str(each), str(threads), "on" if group else "off"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(processes)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready", "an appender process did not start"
    server = server_cpu()
    start = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    found = [json.loads(child.communicate(timeout=1800)[0].strip().splitlines()[-1]) for child in children]
    wall = time.perf_counter() - start
    server_used = server_cpu() - server
    latencies = [x for f in found for x in f["latencies"]]
    return {
        "processes": processes,
        "processes_threads_each": threads,
        "processes_per_s": round(len(latencies) / wall),
        "processes_p50_ms": round(statistics.median(latencies), 3),
        "processes_p99_ms": round(pct(latencies, 0.99), 3),
        "processes_client_cpu_us_per_append": round(1e6 * sum(f["cpu_s"] for f in found) / len(latencies), 1),
        "processes_transactions_per_append": round(sum(f["transactions"] for f in found) / len(latencies), 3),
        **({"processes_server_cpu_us_per_append": round(1e6 * server_used / len(latencies), 1)} if SERVER_PIDS else {}),
    }


SERVER_PIDS: list[int] = []
"""The private PostgreSQL cluster's postmaster (its backends' CPU is read from /proc)."""


def server_cpu() -> float:
    """CPU seconds used so far by the private cluster's processes, the exited ones included (0
    when there is none)."""
    total = 0.0
    for pid in SERVER_PIDS:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for proc in [pid, *map(int, children)]:
            try:
                fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks = int(fields[11]) + int(fields[12])
            if proc == pid:  # and the backends that exited (their CPU moved to the postmaster's reaped children)
                ticks += int(fields[13]) + int(fields[14])
            total += ticks / os.sysconf("SC_CLK_TCK")
    return total


PG_DURABILITY = {
    "disk": {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"},
    "crash": {"fsync": "off", "full_page_writes": "on", "synchronous_commit": "on"},
}
"""Private cluster modes (as bench/bus_bench.py): ``disk`` = PostgreSQL's defaults, every
acknowledged commit flushed to disk; ``crash`` = written to the OS per commit (survives a
crash of PostgreSQL or memmesh, like SQLite's synchronous=NORMAL). ``shared`` = the shared
test cluster, whose fsync and synchronous_commit are off: neither."""


@contextlib.contextmanager
def private_postgres(mode: str) -> Iterator[Callable[[], str]]:
    """A private cluster made by scripts/pg_test_server.py in ``mode`` (stopped and removed
    after): a factory of fresh databases on it."""
    import shutil

    import psycopg

    script = Path(__file__).resolve().parent.parent / "scripts" / "pg_test_server.py"
    folder = Path(tempfile.mkdtemp(prefix="memmesh-audit-bench-pg-"))
    try:
        done = subprocess.run([sys.executable, str(script), "ensure", "--dir", str(folder)], capture_output=True, text=True, check=True)
        dsn = done.stdout.strip().splitlines()[-1]
        os.chmod(folder, 0o755)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for key, value in PG_DURABILITY[mode].items():
                conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
        subprocess.run([sys.executable, str(script), "stop", "--dir", str(folder)], capture_output=True, check=True)
        subprocess.run([sys.executable, str(script), "start", "--dir", str(folder)], capture_output=True, check=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
            names = [*PG_DURABILITY[mode], "commit_delay", "commit_siblings", "wal_writer_delay", "wal_sync_method"]
            shown = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (names,)).fetchall())
        print(f"postgres private cluster ({mode}): {shown}", flush=True)
        SERVER_PIDS[:] = [int(Path(data_dir, "postmaster.pid").read_text().split()[0])]
        params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items() if k != "dbname" and v not in (None, "")}
        made = []

        def fresh() -> str:
            name = f"auditbench{len(made)}"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            made.append(name)
            return f"postgresql:///{name}?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(params.items()))

        yield fresh
    finally:
        SERVER_PIDS[:] = []
        subprocess.run([sys.executable, str(script), "stop", "--dir", str(folder)], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the project's test PostgreSQL (scripts/pg_test_server.py), dropped after."""
    import psycopg

    script = Path(__file__).resolve().parent.parent / "scripts" / "pg_test_server.py"
    done = subprocess.run([sys.executable, str(script), "ensure"], capture_output=True, text=True, timeout=900, check=True)
    admin = done.stdout.strip().splitlines()[-1]
    name = f"mm_auditbench_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(admin).items() if k != "dbname" and v not in (None, "")}
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(params.items()))
    try:
        yield f"postgresql:///{name}" + (f"?{query}" if query else "")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_verify(workdir: Path, size: int) -> dict:
    mem = open_memory(workdir, f"verify-{size}")
    store = unwrap(mem.service.store)
    build_start = time.perf_counter()
    prev = chain.GENESIS
    batch = []
    with store.write() as tx:
        for idx in range(size):
            at = f"2026-01-01T00:00:{idx % 60:02d}.{idx % 1_000_000:06d}Z"
            detail = chain.detail_text({"digest": f"{idx:064x}"})
            digest = chain.entry_hash(prev, idx, at, "key:0123456789ab agent:bench", "memory.add", "bench/ns", f"id-{idx}", detail)
            batch.append((idx, at, "key:0123456789ab agent:bench", "memory.add", "bench/ns", f"id-{idx}", detail, digest.hex()))
            prev = digest
            if len(batch) == 50_000:
                tx.conn.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
                batch = []
        if batch:
            tx.conn.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
    built = time.perf_counter() - build_start
    start = time.perf_counter()
    made = mem.service.audit.checkpoint()
    signing = time.perf_counter() - start
    assert made is not None and made.size == size
    passes = {}
    for name, workers in (("one_process", 1), ("split", None)):
        passes[name] = timed_verify(mem, workers)
    mem.close()
    for found in passes.values():
        assert found.pop("report_ok") and found.pop("report_size") == size
    return {
        "entries": size,
        "build_s": round(built, 2),
        "first_checkpoint_s": round(signing, 2),
        "db_bytes": os.path.getsize(workdir / f"verify-{size}.db"),
        **{f"{name}_{k}": v for name, found in passes.items() for k, v in found.items()},
    }


def timed_verify(mem: Memory, workers: int | None) -> dict:
    """One ``audit verify``: wall, CPU of this process and of the worker processes, and the
    rusage counters that say why wall exceeds CPU (blocks read and major faults: I/O;
    involuntary context switches: the scheduler gave the core to another process: load)."""
    original = parallel.default_workers
    if workers is not None:
        parallel.default_workers = lambda: workers
    try:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        wall = time.perf_counter() - start
        me2, kids2 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        parallel.default_workers = original
    cpu_self = (me2.ru_utime + me2.ru_stime) - (me.ru_utime + me.ru_stime)
    cpu_kids = (kids2.ru_utime + kids2.ru_stime) - (kids.ru_utime + kids.ru_stime)
    return {
        "report_ok": report.ok,
        "report_size": report.size,
        "processes": report.workers,
        "s": round(wall, 2),
        "cpu_s": round(cpu_self + cpu_kids, 2),
        "cpu_main_s": round(cpu_self, 2),
        "blocks_read": (me2.ru_inblock - me.ru_inblock) + (kids2.ru_inblock - kids.ru_inblock),
        "major_faults": (me2.ru_majflt - me.ru_majflt) + (kids2.ru_majflt - kids.ru_majflt),
        "voluntary_switches": (me2.ru_nvcsw - me.ru_nvcsw) + (kids2.ru_nvcsw - kids.ru_nvcsw),
        "involuntary_switches": (me2.ru_nivcsw - me.ru_nivcsw) + (kids2.ru_nivcsw - kids.ru_nivcsw),
        "entries_per_s": round(report.size / wall),
    }


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile), interpolated (``statistics.quantiles``)."""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def median_interval(values: list[float]) -> tuple[float, float]:
    """A 95 % confidence interval of the median (distribution-free: the order statistics
    ``n/2 ± 0.98·√n``): how far two runs' medians may fall apart by chance alone."""
    ordered = sorted(values)
    half = 0.98 * len(ordered) ** 0.5
    low = max(0, int(len(ordered) / 2 - half))
    high = min(len(ordered) - 1, int(len(ordered) / 2 + half))
    return ordered[low], ordered[high]


def mean_ratio_interval(audited: list[float], plain: list[float], rounds: int = 200) -> tuple[float, tuple[float, float]]:
    """The overhead as the ratio of the two arms' total CPU (%), and a bootstrap 95 % interval
    of it (pairs resampled ``rounds`` times, a fixed seed: the same data give the same interval)."""
    import random

    pick = random.Random(16).choices
    indexes = range(len(audited))
    found = []
    for _ in range(rounds):
        chosen = pick(indexes, k=len(audited))
        found.append(100 * (sum(audited[i] for i in chosen) / sum(plain[i] for i in chosen) - 1))
    found.sort()
    return 100 * (sum(audited) / sum(plain) - 1), (found[int(0.025 * rounds)], found[int(0.975 * rounds) - 1])


def bench_overhead(workdir: Path, n: int, embedder: str = "none", block: int = 1, warmup: int = 200) -> dict:
    """``n`` keyword-only ``Memory.add`` on an audited store and as many on the same store type
    with the audit unwrapped, alternating in blocks of ``block`` writes (by default one: the
    two stores take turns write by write; audited first in even pairs, plain first in odd
    ones), after ``warmup`` unmeasured writes on each.

    The figure to quote is the median of the per-pair ratio (the audited block's writer-thread
    CPU over the plain block's run just before or after it) with its 95 % interval and the
    interquartile range of the pairs. Neighbouring writes see the same CPU frequency, cache and
    competing load, and the median of thousands of pairs ignores the pairs a burst of other
    work hit; long blocks let a burst land in one arm only and leave few pairs to take a median
    of. The ratio of the means is reported too: it includes the rare costs a median leaves out
    (a WAL checkpoint, a garbage collection), with a bootstrap 95 % interval."""
    audited = open_memory(workdir, f"overhead-audited-{embedder}", embedder=embedder)
    plain = open_memory(workdir, f"overhead-plain-{embedder}", signed=False, embedder=embedder)
    plain.service.store = unwrap(plain.service.store)  # the same service, without the audit
    audited.service.audit.start()
    times: dict[str, list[float]] = {"audited": [], "plain": []}
    cpu: dict[str, list[float]] = {"audited": [], "plain": []}  # process CPU per write, per block (µs)
    tcpu: dict[str, list[float]] = {"audited": [], "plain": []}  # this thread's CPU per write (no checkpointer, no GC of others)
    blocks = max(1, n // block)
    for number in range(-max(1, warmup // block), blocks):
        order = [("audited", audited), ("plain", plain)] if number % 2 == 0 else [("plain", plain), ("audited", audited)]
        for name, mem in order:
            used, mine = time.process_time(), time.thread_time()
            spent = []
            for i in range(block):
                t = time.perf_counter()
                mem.add(f"block {number} write {i} about the bench and some words", namespace=f"ns{i % 5}")
                spent.append((time.perf_counter() - t) * 1000)
            if number >= 0:
                cpu[name].append((time.process_time() - used) * 1e6 / block)
                tcpu[name].append((time.thread_time() - mine) * 1e6 / block)
                times[name].extend(spent)
    audited.service.audit.stop()
    entries = len(audited.service.audit.entries(principal=LOCAL_PRINCIPAL, limit=1000, since=max(0, n - 10)).entries)
    assert entries > 0
    audited.close()
    plain.close()
    mean_a, mean_p = statistics.fmean(times["audited"]), statistics.fmean(times["plain"])
    med_a, med_p = statistics.median(times["audited"]), statistics.median(times["plain"])
    cpu_a, cpu_p = statistics.median(cpu["audited"]), statistics.median(cpu["plain"])
    tcpu_a, tcpu_p = statistics.median(tcpu["audited"]), statistics.median(tcpu["plain"])
    # per-pair ratios: each audited block against the plain block run next to it
    pairs = [100 * (a / p - 1) for a, p in zip(tcpu["audited"], tcpu["plain"], strict=True) if p > 0]
    process_pairs = [100 * (a / p - 1) for a, p in zip(cpu["audited"], cpu["plain"], strict=True) if p > 0]
    q1, q2, q3 = quartiles(pairs)
    p1, p2, p3 = quartiles(process_pairs)
    low, high = median_interval(pairs)
    mean_ratio, (mean_low, mean_high) = mean_ratio_interval(tcpu["audited"], tcpu["plain"])
    return {
        "embedder": embedder,
        "writes_each": blocks * block,
        "block_writes": block,
        "blocks_each": blocks,
        "plain_mean_ms": round(mean_p, 3),
        "audited_mean_ms": round(mean_a, 3),
        "plain_p50_ms": round(med_p, 3),
        "audited_p50_ms": round(med_a, 3),
        "overhead_mean_pct": round(100 * (mean_a - mean_p) / mean_p, 1),
        "overhead_p50_pct": round(100 * (med_a - med_p) / med_p, 1),
        "plain_cpu_us": round(cpu_p, 1),
        "audited_cpu_us": round(cpu_a, 1),
        "overhead_cpu_pct": round(100 * (cpu_a - cpu_p) / cpu_p, 1),
        "plain_thread_cpu_us": round(tcpu_p, 1),
        "audited_thread_cpu_us": round(tcpu_a, 1),
        "overhead_thread_cpu_pct": round(100 * (tcpu_a - tcpu_p) / tcpu_p, 1),
        "overhead_thread_cpu_pair_median_pct": round(q2, 2),
        "overhead_thread_cpu_pair_q1_pct": round(q1, 2),
        "overhead_thread_cpu_pair_q3_pct": round(q3, 2),
        "overhead_thread_cpu_pair_iqr_pct": round(q3 - q1, 2),
        "overhead_thread_cpu_pair_median_ci95_pct": [round(low, 2), round(high, 2)],
        "overhead_thread_cpu_mean_ratio_pct": round(mean_ratio, 2),
        "overhead_thread_cpu_mean_ratio_ci95_pct": [round(mean_low, 2), round(mean_high, 2)],
        "overhead_cpu_pair_median_pct": round(p2, 2),
        "overhead_cpu_pair_iqr_pct": round(p3 - p1, 2),
        "thread_cpu_us_per_block": {name: [round(v, 1) for v in values] for name, values in tcpu.items()},
    }


def bench_breakdown(workdir: Path, writes: int, block: int = 1) -> dict:
    """Where the audit's CPU per write goes: the same keyword-only writes on three stores,
    taking turns in blocks of ``block`` writes (the order rotating, as the overhead does):
    unaudited; audited with the append switched off (what remains is the capture layer: the
    audited transaction, noting each change); and the whole audit (adds the chain hashing, the
    timestamp, the head bookkeeping, the INSERT and the page it adds to each commit). Each is
    the median of its blocks' writer-thread CPU over the unaudited block of the same turn. The
    append is switched off by replacing ``AuditLog.append_local`` (SQLite's whole append, one
    call since session 8) for the duration of a block only (diagnosis, not a configuration).
    For the INSERT's own share use ``--only instructions`` and callgrind's per-function counts."""
    from memmesh.audit import log as audit_log

    names = ["plain", "capture only", "audited"]
    mems = {name: open_memory(workdir, f"breakdown-{i}", signed=name != "plain") for i, name in enumerate(names)}
    mems["plain"].service.store = unwrap(mems["plain"].service.store)
    append = audit_log.AuditLog.append_local
    cpu: dict[str, list[float]] = {name: [] for name in names}
    try:
        for number in range(-max(1, 200 // block), max(1, writes // block)):
            for name in names[number % 3 :] + names[: number % 3]:
                audit_log.AuditLog.append_local = (lambda self, tx, items: None) if name == "capture only" else append  # type: ignore[method-assign]
                mine = time.thread_time()
                for i in range(block):
                    mems[name].add(f"block {number} write {i} about the bench and some words", namespace=f"ns{i % 5}")
                if number >= 0:  # the first blocks warm the caches
                    cpu[name].append((time.thread_time() - mine) * 1e6 / block)
    finally:
        audit_log.AuditLog.append_local = append  # type: ignore[method-assign]
        for mem in mems.values():
            mem.close()
    found = {}
    for name in names:
        over = [100 * (us / base - 1) for us, base in zip(cpu[name], cpu["plain"], strict=True) if base > 0]
        found[name] = {"thread_cpu_us": round(statistics.median(cpu[name]), 1), "over_plain_pct": round(statistics.median(over), 2)}
    return found


def instructions_child(n: int, out: str) -> None:
    """Run under callgrind (``--instr-atstart=no``): ``n`` keyword-only adds on an unaudited and
    an audited store, twice each, counting only the writes (``callgrind_control`` switches the
    counting on, zeroes it before each block and dumps it after); prints JSON."""
    import glob
    import re

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        init_key(workdir / "signing.key", "bench-audit")
        mems = {"plain": open_memory(workdir, "ir-plain", signed=False), "audited": open_memory(workdir, "ir-audited")}
        mems["plain"].service.store = unwrap(mems["plain"].service.store)
        for mem in mems.values():
            for i in range(300):
                mem.add(f"warm-up write {i} about the bench and some words", namespace=f"ns{i % 5}")

        def ctl(*args: str) -> None:
            subprocess.run(["callgrind_control", *args, str(os.getpid())], check=True, capture_output=True)

        ctl("-i", "on")
        found: dict[str, list[float]] = {name: [] for name in mems}
        for rnd in range(2):
            for name, mem in mems.items():
                ctl("-z")
                for i in range(n):
                    mem.add(f"block {rnd} write {i} about the bench and some words", namespace=f"ns{i % 5}")
                ctl("-d", f"{name}-{rnd}")
                newest = max(glob.glob(f"{out}.*"), key=os.path.getmtime)
                total = re.search(r"^(?:summary|totals): (\d+)", Path(newest).read_text(), re.M)
                assert total is not None, f"no instruction total in {newest}"
                found[name].append(int(total.group(1)) / n)
        for mem in mems.values():
            mem.close()
    print(json.dumps(found))


def bench_instructions(n: int) -> dict:
    """Instructions per memory write (user space, valgrind's callgrind), unaudited vs audited:
    unlike CPU time, the same on a loaded machine and a quiet one, so before/after comparisons
    of the audit's own code hold at any load. Leaves out the kernel (the WAL page the entry adds
    to each commit is written there) and runs SHA-256 without the CPU's SHA extensions
    (valgrind hides them), so the hashing weighs more here than on the real CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "cg.out")
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable, __file__]
        done = subprocess.run(
            [*command, "--instructions-child", str(n), out],
            capture_output=True,
            text=True,
            check=True,
        )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    plain, audited = min(found["plain"]), min(found["audited"])
    return {
        "writes_each": n,
        "plain_instructions_per_write": round(plain),
        "audited_instructions_per_write": round(audited),
        "overhead_instructions_per_write": round(audited - plain),
        "overhead_instructions_pct": round(100 * (audited / plain - 1), 2),
        "rounds_instructions_per_write": {name: [round(v) for v in values] for name, values in found.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=10_000)
    parser.add_argument("--verify-size", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--block", type=int, default=1, help="writes per block in the overhead's alternating blocks (1: turn by turn)")
    parser.add_argument("--embedded-writes", type=int, default=0, help="also measure the overhead with the MiniLM embedder")
    parser.add_argument("--full", action="store_true", help="also measure appends with synchronous=FULL")
    parser.add_argument("--pg", action="store_true", help="also measure appends on PostgreSQL (scripts/pg_test_server.py)")
    parser.add_argument("--threads", type=int, default=8, help="appending threads in the group-commit run")
    parser.add_argument(
        "--pg-durability",
        default="disk,crash",
        help="PostgreSQL runs, comma-separated: disk / crash (a private cluster made for the run), shared (the test cluster: not durable)",
    )
    parser.add_argument("--pg-threads", default="8,32", help="appending threads in the PostgreSQL group runs, comma-separated")
    parser.add_argument(
        "--pg-processes",
        type=int,
        default=1,
        help="also append from this many OS processes (each with the run's threads), so client CPU is not one GIL",
    )
    parser.add_argument(
        "--pg-group",
        default="on",
        help="PostgreSQL runs with the group commit on, off (one transaction per append, as before it) or both: on,off",
    )
    parser.add_argument(
        "--only",
        choices=["appends", "overhead", "verify", "breakdown", "instructions"],
        action="append",
        help="run only these parts (repeatable); instructions (valgrind's callgrind) runs only when named",
    )
    parser.add_argument("--instruction-writes", type=int, default=200, help="writes per store and round under callgrind")
    parser.add_argument("--instructions-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("bench/results/audit.json"))
    args = parser.parse_args()
    if args.instructions_child:
        instructions_child(int(args.instructions_child[0]), args.instructions_child[1])
        return
    load_before = os.getloadavg()
    results: dict = {"load_before": [round(x, 2) for x in load_before]}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        init_key(workdir / "signing.key", "bench-audit")
        parts = set(args.only or ["appends", "overhead", "verify"])
        results["appends"] = [bench_appends(workdir, args.appends, "NORMAL", args.threads)] if "appends" in parts else []
        if args.full and "appends" in parts:
            results["appends"].append(bench_appends(workdir, args.appends, "FULL", args.threads))
        if args.pg and "appends" in parts:
            for mode in args.pg_durability.split(","):
                with contextlib.ExitStack() as stack:
                    fresh = stack.enter_context(private_postgres(mode)) if mode != "shared" else None
                    for threads in [int(t) for t in args.pg_threads.split(",")]:
                        for grouped in args.pg_group.split(","):
                            url = fresh() if fresh is not None else stack.enter_context(postgres_database())
                            results["appends"].append(
                                bench_appends(
                                    workdir,
                                    args.appends,
                                    "NORMAL",
                                    threads,
                                    url=url,
                                    pg_mode=mode,
                                    processes=args.pg_processes,
                                    group=grouped == "on",
                                )
                            )
        for row in results["appends"]:
            print(
                f"appends ({row['backend']}, {row['synchronous']}): {row['single_thread_per_s']}/s one thread "
                f"(p50 {row['single_p50_ms']} ms, "
                f"p99 {row['single_p99_ms']} ms; CPU per append p50 {row['single_cpu_p50_ms']} ms, p99 {row['single_cpu_p99_ms']} ms, "
                f"{row['single_cpu_bound_per_s']}/s if the process had its core); {row['threads_per_s']}/s from {row['threads']} threads "
                f"(p50 {row['threads_p50_ms']} ms, p99 {row['threads_p99_ms']} ms)"
                + f"; client CPU {row['threads_cpu_us_per_append']} µs per append from threads"
                + (f", {row['threads_transactions_per_append']} transactions per append" if row["backend"] == "postgres" else "")
                + (f"; server CPU {row['server_cpu_us_per_append']} µs per append" if "server_cpu_us_per_append" in row else "")
            )
            if "processes" in row:
                print(
                    f"  from {row['processes']} processes × {row['processes_threads_each']} threads: {row['processes_per_s']}/s "
                    f"(p50 {row['processes_p50_ms']} ms, p99 {row['processes_p99_ms']} ms); client CPU "
                    f"{row['processes_client_cpu_us_per_append']} µs per append, "
                    f"{row['processes_transactions_per_append']} transactions per append"
                    + (f", server {row['processes_server_cpu_us_per_append']} µs" if "processes_server_cpu_us_per_append" in row else "")
                )
        results["overhead"] = [bench_overhead(workdir, args.writes, block=args.block)] if "overhead" in parts else []
        if args.embedded_writes and "overhead" in parts:
            results["overhead"].append(bench_overhead(workdir, args.embedded_writes, "minilm", block=args.block))
        for o in results["overhead"]:
            print(
                f"memory write ({o['embedder']} embedder): {o['plain_mean_ms']} ms without audit, {o['audited_mean_ms']} ms with it: "
                f"+{o['overhead_mean_pct']} % mean, +{o['overhead_p50_pct']} % p50; CPU {o['plain_cpu_us']} vs {o['audited_cpu_us']} µs "
                f"per write: +{o['overhead_cpu_pct']} %; writer thread CPU {o['plain_thread_cpu_us']} vs {o['audited_thread_cpu_us']} µs: "
                f"+{o['overhead_thread_cpu_pct']} %\n  audit overhead, writer-thread CPU, "
                f"{o['blocks_each']} block pairs of {o['block_writes']} writes: "
                f"median {o['overhead_thread_cpu_pair_median_pct']:+} %, IQR {o['overhead_thread_cpu_pair_q1_pct']:+} to "
                f"{o['overhead_thread_cpu_pair_q3_pct']:+} % ({o['overhead_thread_cpu_pair_iqr_pct']} points), median's 95 % interval "
                f"{o['overhead_thread_cpu_pair_median_ci95_pct'][0]:+} to {o['overhead_thread_cpu_pair_median_ci95_pct'][1]:+} %; "
                f"ratio of the means {o['overhead_thread_cpu_mean_ratio_pct']:+} % (95 % interval "
                f"{o['overhead_thread_cpu_mean_ratio_ci95_pct'][0]:+} to {o['overhead_thread_cpu_mean_ratio_ci95_pct'][1]:+} %); "
                "process CPU: median "
                f"{o['overhead_cpu_pair_median_pct']:+} %, IQR {o['overhead_cpu_pair_iqr_pct']} points"
            )
        if "breakdown" in parts:
            results["breakdown"] = bench_breakdown(workdir, args.writes, args.block)
            print(
                "audit overhead by part (writer-thread CPU per write, median of blocks; over plain: median of the turns' ratios): "
                + "; ".join(f"{name} {v['thread_cpu_us']} µs ({v['over_plain_pct']:+} %)" for name, v in results["breakdown"].items())
            )
        if "instructions" in parts:
            results["instructions"] = found = bench_instructions(args.instruction_writes)
            print(
                f"instructions per memory write (callgrind, user space): {found['plain_instructions_per_write']:,} without audit, "
                f"{found['audited_instructions_per_write']:,} with it: +{found['overhead_instructions_per_write']:,} "
                f"(+{found['overhead_instructions_pct']} %; the lower of two rounds, each: "
                + ", ".join(f"{name} {' / '.join(f'{v:,}' for v in vs)}" for name, vs in found["rounds_instructions_per_write"].items())
                + ")"
            )
        if "verify" in parts:
            results["verify"] = bench_verify(workdir, args.verify_size)
            v = results["verify"]
            for name in ("one_process", "split"):
                print(
                    f"verify {v['entries']} entries, {name.replace('_', ' ')} ({v[name + '_processes']} processes): "
                    f"{v[name + '_s']} s wall, {v[name + '_cpu_s']} s CPU (main {v[name + '_cpu_main_s']} s); "
                    f"blocks read {v[name + '_blocks_read']}, major faults {v[name + '_major_faults']}, "
                    f"involuntary switches {v[name + '_involuntary_switches']}, voluntary {v[name + '_voluntary_switches']}"
                )
            print(f"first checkpoint over them (reads and hashes all): {v['first_checkpoint_s']} s")
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average before {results['load_before']}, after {results['load_after']} (2 cores)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"benchmark": "audit", "machine": platform.machine(), "python": platform.python_version(), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
