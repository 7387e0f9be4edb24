"""Run a queue's producers and workers in real OS processes (the multi-process queue tests).

Each node is ``python -c <script> url data_dir queue token node count workers``: it starts its
workers, produces its tasks, prints ``produced``, waits for a line on stdin, stops its workers
and prints one JSON line of results. The parent waits until the queue holds ``total`` done
tasks (or gives up after ``wait_s``), then stops every node and returns their JSON results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from memmesh.model import LOCAL_PRINCIPAL as P


def run_queue_nodes(
    script: str, url: str, data_dir: Path, bus: Any, queue: Any, nodes: list[str], count: int, workers: int, wait_s: float = 120
) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, str(data_dir), queue.id, queue.token, n, str(count), str(workers)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in nodes
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "produced\n", proc.stderr.read() if proc.stderr else line
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if len(bus.tasks(queue.id, token=queue.token, principal=P, state="done", limit=1000)) >= count * len(nodes):
                break
            time.sleep(0.1)
        results = []
        for proc in procs:
            out, err = proc.communicate("stop\n", timeout=60)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
