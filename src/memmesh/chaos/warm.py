"""A warm spare for a chaos node's next start: a process that has already imported what
``memmesh serve`` needs and waits on stdin for the command line to run.

Why: on a shared 2-core machine most of a node's start is Python importing the HTTP app
(FastAPI, pydantic models, the route modules): about 1.3 s of CPU, 7-15 s of wall time when
the machine is busy. None of that is what a chaos cycle tests. What it tests starts when
the process opens the store after a SIGKILL (WAL recovery, the schema check, the outbox
resuming from each peer's durable cursor): the spare does all of that only after it is
told to go, exactly as ``memmesh serve`` does, so a restart from a spare is the same
crash recovery, minus the imports. The spare is spawned while the node still runs (its
imports overlap the cycle's writes), and it is a fresh process: nothing is shared with
the one that was killed.

Protocol: one JSON line on stdin, ``{"argv": [...], "env": {...}}``; the spare sets the
environment, then runs the memmesh CLI's ``main`` with ``argv``. End of input without a
line means "not needed": it exits 0.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

CLI = "memmesh.interfaces.cli.app"
"""The module ``python -m`` would run: the spare runs its ``main`` (the same entry point)."""
PRELOAD = (CLI, "memmesh.interfaces.http.server", "uvicorn", "uvicorn.protocols.http.h11_impl", "uvicorn.lifespan.on")
"""What ``memmesh serve`` imports before it opens the store (the import cost the spare pays early)."""


def main() -> None:
    """Import, then wait for the command line on stdin and run it."""
    for name in PRELOAD:
        importlib.import_module(name)
    line = sys.stdin.readline()
    if not line.strip():
        return
    order = json.loads(line)
    if "env" in order:  # the node's whole environment as of its start (a setting may have changed since the spawn)
        os.environ.clear()
        os.environ.update(order["env"])
    sys.argv = ["memmesh", *order["argv"]]
    importlib.import_module(CLI).main()


if __name__ == "__main__":
    main()
