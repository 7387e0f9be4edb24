"""A task queue served by workers in several OS processes (issue 24: a deployment on 2 cores
runs its workers in their own processes, each with its own ``Memory`` on the same store).

Two processes each run a producer and four workers (threads; ``complete(claim_next=True)``
loops, as ``bench/bus_bench.py --processes 2`` does): every task is completed exactly once,
no call fails (on SQLite the processes share the one writer lock: the busy timeout waits,
it does not error), and the queue ends with every task done.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.conformance.queue_nodes import run_queue_nodes

from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.model import LOCAL_PRINCIPAL as P

PER_PRODUCER = 120
WORKERS = 4

NODE = textwrap.dedent(
    """
    import json, sys, threading, time
    from memmesh import Memory
    from memmesh.config import load_settings
    from memmesh.model import LOCAL_PRINCIPAL as P
    url, data_dir, queue, token, me, count, workers = sys.argv[1:8]
    settings = load_settings(None, overrides={"data_dir": data_dir, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    done, errors, stop = [], [], threading.Event()
    with Memory(url, settings) as m:
        bus = m.service.bus

        def produce():
            try:
                for i in range(int(count)):
                    bus.send(queue, f"{me}:{i}", sender=f"p{me}", token=token, principal=P)
            except Exception as exc:
                errors.append(repr(exc))

        def work(name):
            got = None
            try:
                while not stop.is_set():
                    if got is None:
                        got = bus.claim(queue, worker=name, token=token, lease_s=60, wait_s=0.2, principal=P)
                        continue
                    fin = bus.complete(queue, got.attempt_token, worker=name, token=token, principal=P, claim_next=True, lease_s=60)
                    done.append(fin.body)
                    got = fin.next
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=work, args=(f"w{me}{k}",)) for k in range(int(workers))]
        for t in threads:
            t.start()
        produce()
        sys.stdout.write("produced\\n")
        sys.stdout.flush()
        sys.stdin.readline()  # the parent saw every task done (or gave up)
        stop.set()
        for t in threads:
            t.join()
    print(json.dumps({"done": done, "errors": errors}))
    """
)


def test_workers_in_two_processes_complete_every_task_once(backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path) -> None:
    mem = open_memory(backend_url, clock=system_clock)
    bus = mem.service.bus
    nodes = ["a", "b"]
    names = [f"p{n}" for n in nodes] + [f"w{n}{k}" for n in nodes for k in range(WORKERS)]
    q = bus.open(names, kind="queue", principal=P)
    results = run_queue_nodes(NODE, backend_url, tmp_path, bus, q, nodes, PER_PRODUCER, WORKERS, wait_s=90)
    errors = [e for r in results for e in r["errors"]]
    assert errors == [], errors
    done = sorted(b for r in results for b in r["done"])
    assert done == sorted(f"{n}:{i}" for n in nodes for i in range(PER_PRODUCER)), "a task was lost or completed twice"
