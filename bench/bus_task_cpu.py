"""CPU per queued task of one thread doing send, claim, complete in a loop (issue 24).

No thread waits or hands over to another here, so the CPU a task costs is the bus's own
work per task (validation, models, fencing, audit and history, the notifier, the group
commit, the statements): the ceiling of every topology's one-task-per-call rate. Two loops,
each through the public ``Memory`` API on a fresh store (``synchronous = NORMAL``):

- ``plain``: ``send``, ``claim`` (no wait), ``complete``: three writes per task;
- ``claim_next``: ``send``, then ``complete(..., claim_next=True)`` leases the next task as
  it acks this one (two writes per task).

    python bench/bus_task_cpu.py [--tasks 2000] [--pg] [--out bench/results/bus_task_cpu.json]
    python bench/bus_task_cpu.py --profile plain [--sort tottime]   # cProfile's top entries

Compare versions in one run: ``--src A/src B/src --pairs 3`` runs each version in a fresh
process, alternating, and records the load average beside each run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOOPS = ("plain", "claim_next")


def _plain(bus: Any, queue: Any, principal: Any, tasks: int) -> None:
    """send, claim, complete: each task alone."""
    for i in range(tasks):
        bus.send(queue.id, f"task {i}", sender="p0", token=queue.token, principal=principal)
        got = bus.claim(queue.id, worker="w0", token=queue.token, lease_s=30, principal=principal)
        bus.complete(queue.id, got.attempt_token, worker="w0", token=queue.token, result="ok", principal=principal)


def _claim_next(bus: Any, queue: Any, principal: Any, tasks: int) -> None:
    """send the next task, then ack the one in hand while leasing the next (one write)."""
    bus.send(queue.id, "task first", sender="p0", token=queue.token, principal=principal)
    got = bus.claim(queue.id, worker="w0", token=queue.token, lease_s=30, principal=principal)
    for i in range(tasks):
        bus.send(queue.id, f"task {i}", sender="p0", token=queue.token, principal=principal)
        got = bus.complete(
            queue.id, got.attempt_token, worker="w0", token=queue.token, result="ok", principal=principal, claim_next=True, lease_s=30
        ).next
    bus.complete(queue.id, got.attempt_token, worker="w0", token=queue.token, result="ok", principal=principal)


RUNNERS: dict[str, Callable[[Any, Any, Any, int], None]] = {"plain": _plain, "claim_next": _claim_next}


@contextmanager
def store_urls(pg: bool) -> Iterator[Callable[[], str]]:
    """Fresh store URLs: SQLite files in a temporary folder, or databases on the PostgreSQL
    test cluster (``scripts/pg_test_server.py ensure``), dropped at the end."""
    if not pg:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            counter = iter(range(1_000_000))
            yield lambda: f"sqlite:///{Path(tmp) / f'bus-{next(counter)}.db'}"
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from bus_bench import postgres

    with postgres(None, private=False, durability="given") as fresh:
        yield fresh


def measure(loop: str, tasks: int, warmup: int, pg: bool, profile: str | None = None, rounds: int = 5) -> dict[str, Any]:
    """CPU and wall time per task of ``tasks`` tasks through ``loop`` in ``rounds`` equal
    rounds, after ``warmup`` tasks on the same queue (first-call imports and caches are not
    what is measured). The fastest round says most on a shared machine (others' work only
    ever adds to a round's CPU: cache misses, a slower clock); the median is reported too."""
    from memmesh import Memory
    from memmesh.clock import system_clock
    from memmesh.config import load_settings
    from memmesh.model import LOCAL_PRINCIPAL

    per_round = max(1, tasks // rounds)
    cpus: list[float] = []
    walls: list[float] = []
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as data, store_urls(pg) as fresh:
        overrides = {"data_dir": data, "storage": {"synchronous": "NORMAL"}, "embeddings": {"provider": "none"}}
        settings = load_settings(None, overrides=overrides, env={"MEMMESH_CONFIG": ""})
        with Memory(fresh(), settings, clock=system_clock) as mem:
            bus = mem.service.bus
            queue = bus.open(["p0", "w0"], kind="queue", principal=LOCAL_PRINCIPAL)
            run = RUNNERS[loop]
            run(bus, queue, LOCAL_PRINCIPAL, warmup)
            if profile:
                profiler = cProfile.Profile()
                profiler.runcall(run, bus, queue, LOCAL_PRINCIPAL, tasks)
                pstats.Stats(profiler).sort_stats(profile).print_stats(int(os.environ.get("TOP", "30")))
                return {"loop": loop, "profiled": tasks}
            for _ in range(rounds):
                cpu0, wall0 = time.process_time(), time.perf_counter()
                run(bus, queue, LOCAL_PRINCIPAL, per_round)
                cpus.append(time.process_time() - cpu0)
                walls.append(time.perf_counter() - wall0)
    return {
        "loop": loop,
        "backend": "postgres" if pg else "sqlite",
        "tasks": per_round * rounds,
        "cpu_us_per_task": round(min(cpus) / per_round * 1e6, 1),
        "cpu_us_per_task_median": round(statistics.median(cpus) / per_round * 1e6, 1),
        "tasks_per_s": round(per_round / statistics.median(walls), 1),
    }


def compare(srcs: list[Path], pairs: int, argv: list[str]) -> list[dict[str, Any]]:
    """Each version in a fresh process per run, alternating; the load average beside each."""
    runs: list[dict[str, Any]] = []
    for pair in range(pairs):
        for src in srcs:
            env = {**os.environ, "PYTHONPATH": str(src)}
            load = os.getloadavg()
            out = subprocess.run([sys.executable, __file__, *argv, "--child"], env=env, capture_output=True, text=True, check=True)
            for row in json.loads(out.stdout.splitlines()[-1]):
                runs.append({"pair": pair, "src": str(src), "load_1_5_15": [round(x, 2) for x in load], **row})
                print(
                    f"pair {pair}  {src}  {row['loop']:<10}  CPU/task fastest {row['cpu_us_per_task']:>7} µs, "
                    f"median {row['cpu_us_per_task_median']:>7} µs  {row['tasks_per_s']:>7} tasks/s  load {load[0]:.2f}"
                )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks measured per loop (default 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="tasks run first, not measured (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the tasks are measured in (default 5; the fastest is reported)")
    parser.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated loops to run: {', '.join(LOOPS)}")
    parser.add_argument("--pg", action="store_true", help="on the PostgreSQL test cluster instead of SQLite")
    parser.add_argument("--profile", choices=LOOPS, help="run this loop once under cProfile and print its top entries")
    parser.add_argument("--sort", default="tottime", help="cProfile's sort key with --profile (tottime, cumtime, …)")
    parser.add_argument("--src", type=Path, nargs="+", help="src folders of the memmesh versions to compare, alternating")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of the versions with --src (default 3)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bus_task_cpu.json", help="JSON output path")
    args = parser.parse_args()
    loops = [loop for loop in args.loops.split(",") if loop]
    if args.profile:
        print(measure(args.profile, args.tasks, args.warmup, args.pg, profile=args.sort))
        return 0
    if args.child:
        print(json.dumps([measure(loop, args.tasks, args.warmup, args.pg, rounds=args.rounds) for loop in loops]))
        return 0
    argv = ["--tasks", str(args.tasks), "--warmup", str(args.warmup), "--rounds", str(args.rounds), "--loops", ",".join(loops)]
    argv += ["--pg"] if args.pg else []
    srcs = [src.resolve() for src in args.src] if args.src else [ROOT / "src"]
    report = {"load_start": os.getloadavg(), "runs": compare(srcs, args.pairs if args.src else 1, argv), "load_end": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"load average {report['load_start']} → {report['load_end']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
