"""Keeping a process's Python threads on one CPU (Linux), for many-threaded embedded use.

One interpreter runs one thread's Python at a time (the GIL). When its threads run on two
CPUs, every hand-over of the GIL is a wake-up across CPUs: a thread that lets the GIL go
for a short SQLite statement finds another CPU's thread holding it when the statement
returns, and waits for it. With 20 threads sending, claiming and completing queue tasks in
one process, that cost 2-3x the CPU per task of the same threads kept on one CPU, where a
hand-over is a plain switch (docs/benchmarks.md, session 20). The same holds for any
Python program with many busy threads; David Beazley's "Understanding the Python GIL"
(2010) measured it first.

Only the interpreter's own threads are pinned (and those they start later inherit it):
native thread pools keep every CPU. onnxruntime's pool, made when the embedder loads, is
created under :func:`all_cpus`, so a pinned process still embeds on every core.

Nothing pins by itself: a library must not move its host's threads. A program calls
:func:`pin_to_one_cpu` (``memmesh.pin_to_one_cpu``) when its threads mostly wait on
memmesh; ``unpin`` gives them every CPU back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memmesh.errors import ConfigError

_lock = threading.Lock()
_wide: set[int] | None = None
"""The CPUs the process could use before it was pinned (None while it is not pinned)."""


def pin_to_one_cpu(cpu: int | None = None) -> int:
    """Keep every Python thread of this process (and the threads they start later) on
    ``cpu``, by default the CPU the calling thread runs on now; returns the CPU.

    Raises ConfigError where the system cannot pin threads (not Linux) or ``cpu`` is not
    one this process may use."""
    global _wide
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError("pinning threads to a CPU needs Linux (os.sched_setaffinity); leave it out on this system")
    with _lock:
        allowed = _wide if _wide is not None else os.sched_getaffinity(0)
        chosen = _current_cpu(allowed) if cpu is None else cpu
        if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen not in allowed:
            raise ConfigError(f"cpu {cpu!r} is not one this process may use: give one of {sorted(allowed)}")
        _set_python_threads({chosen})
        _wide = set(allowed)
        return chosen


def unpin() -> None:
    """Give every Python thread back the CPUs the process had before :func:`pin_to_one_cpu`."""
    global _wide
    with _lock:
        if _wide is None:
            return
        _set_python_threads(_wide)
        _wide = None


def pinned_cpu() -> int | None:
    """The CPU this process's Python threads are kept on, or None when they are not pinned."""
    with _lock:
        if _wide is None:
            return None
        mine = os.sched_getaffinity(0)
        return next(iter(mine)) if len(mine) == 1 else None


@contextmanager
def all_cpus() -> Iterator[None]:
    """Run the block on every CPU the process had before it was pinned: a native thread
    pool created inside it (onnxruntime's) inherits that, not the pin. A no-op unpinned."""
    with _lock:
        wide = set(_wide) if _wide is not None else None
    if wide is None:
        yield
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, wide)
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)


def _set_python_threads(cpus: set[int]) -> None:
    """Set the affinity of the calling thread and of every live Python thread."""
    os.sched_setaffinity(0, cpus)
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        try:
            os.sched_setaffinity(thread.native_id, cpus)
        except ProcessLookupError:  # it ended meanwhile
            continue


def _current_cpu(allowed: set[int]) -> int:
    """The CPU the calling thread runs on (field 39 of /proc/thread-self/stat), if allowed."""
    try:
        stat = Path("/proc/thread-self/stat").read_text()
        cpu = int(stat.rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return min(allowed)
    return cpu if cpu in allowed else min(allowed)
