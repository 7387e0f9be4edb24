"""``audit verify`` of a large SQLite log over several processes.

One pass over a million entries is ~4 s of CPU in one Python process (two SHA-256 per
entry for the chain and the leaf, one per tree node, plus the encoding). Every link is
checkable from the stored hashes alone, and an RFC 6962 tree splits at multiples of a power
of two, so the log ``[start, end)`` is cut at multiples of ``C = 2**k`` (about one range per
core) and each range is checked by its own process (:mod:`.range_worker`), which also returns
the compact range of its leaves at its end and at each checkpoint inside it. Joined here:
the nodes of a range that starts at a multiple of ``C`` simply follow those of the tree
before it (its size is a multiple of ``C``), so every checkpoint's root is recomputed
exactly, as in the one-process pass.

Only the answer "everything holds" is taken from the processes. Anything else (a worker
that found a bad row, a root that differs, a worker that failed) makes :func:`verify_parallel`
return None and the caller runs the one-process pass (:func:`.verify.verify_log`), which
names the finding and the first bad index exactly as before: splitting the work can make
verification faster, never change its verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from memmesh.audit.chain import GENESIS, Frontier, node_hash
from memmesh.audit.notes import CheckpointFile, Verifier
from memmesh.audit.verify import VerifyReport, _signed, finish
from memmesh.store.audit_sql import Anchor

MIN_ENTRIES = 100_000
"""Below this many entries one process is faster than starting others (~30 ms each)."""

MAX_WORKERS = 8

WORKER = Path(__file__).with_name("range_worker.py")


def default_workers() -> int:
    """The cores this process may run on (at most :data:`MAX_WORKERS`)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def split(start: int, end: int, workers: int) -> tuple[int, list[tuple[int, int]]]:
    """``[start, end)`` cut at multiples of a power of two ``C`` ≥ the length / ``workers``:
    returns ``(C, ranges)``; the first range may be shorter (it ends at the first multiple
    of ``C`` above ``start``), every later one starts at a multiple of ``C``."""
    length = end - start
    chunk = 1
    while chunk * workers < length:
        chunk *= 2
    ranges = []
    a = start
    while a < end:
        b = min(end, (a // chunk + 1) * chunk)
        ranges.append((a, b))
        a = b
    return chunk, ranges


def _launch(args: dict[str, Any]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-I", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(args).encode())
    proc.stdin.close()
    return proc


def _answer(proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    if proc.wait() != 0:
        return None
    try:
        found = json.loads(out)
    except ValueError:
        return None
    return found if isinstance(found, dict) and found.get("ok") is True else None


def _last_index(conn: Any) -> int | None:
    row = conn.execute("SELECT idx FROM audit_log ORDER BY idx DESC LIMIT 1").fetchone()
    return row[0] if row is not None and type(row[0]) is int else None


def verify_parallel(
    path: str,
    conn: Any,
    anchor: Anchor | None,
    found: CheckpointFile,
    verifier: Verifier | None,
    *,
    workers: int | None = None,
    min_entries: int | None = None,
) -> VerifyReport | None:
    """The report of a log that verifies, checked by several processes; None when the log is
    small, only one core is available, or anything at all is wrong (then the caller runs the
    one-process pass, which names the finding). ``conn`` is the caller's read snapshot: it
    fixes the anchor and the last entry; entries appended meanwhile are left to later runs."""
    count = workers if workers is not None else default_workers()
    report = VerifyReport()
    checkpoints = _signed(found, verifier, report)
    last = _last_index(conn)
    start = anchor.size if anchor is not None else 0
    least = MIN_ENTRIES if min_entries is None else min_entries
    if count < 2 or report.problems or last is None or last + 1 - start < least:
        return None
    end = last + 1
    try:
        tree = Frontier.from_hex(start, anchor.frontier) if anchor is not None else Frontier()
    except ValueError:
        return None
    if anchor is not None and start in checkpoints and tree.root() != checkpoints[start].root:
        return None
    report.latest_checkpoint = max(checkpoints) if checkpoints else None
    report.first_index = start
    chunk, ranges = split(start, end, count)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, (a, b) in enumerate(ranges):
            first = i == 0
            args = {
                "path": path,
                "start": a,
                "end": b,
                "prev": (anchor.last_hash if anchor is not None else GENESIS.hex()) if first else None,
                "frontier": list(tree.to_hex()) if first else [],
                "base": start if first else 0,
                "sizes": sorted(s for s in checkpoints if a < s <= b),
            }
            procs.append(_launch(args))
        answers = [_answer(p) for p in procs]
    except OSError:  # no process could be started (limits, no interpreter): one process it is
        return None
    finally:
        for proc in procs:  # only ever left running when the parent failed meanwhile
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i, ((a, b), answer) in enumerate(zip(ranges, answers, strict=True)):
        if answer is None:
            return None
        before = [] if i == 0 else tree.nodes
        for size_text, nodes in answer["at"].items():
            size = int(size_text)
            if Frontier(size, before + [bytes.fromhex(n) for n in nodes]).root() != checkpoints[size].root:
                return None
            report.checkpoints_checked += 1
        nodes = [bytes.fromhex(n) for n in answer["nodes"]]
        if i == 0:
            tree = Frontier(b, nodes)
        elif b - a == chunk and len(nodes) == 1:  # a whole range is one perfect subtree: merge it in
            node, n, merged = nodes[0], tree.size // chunk, list(tree.nodes)
            while n & 1:
                node = node_hash(merged.pop(), node)
                n >>= 1
            tree = Frontier(b, [*merged, node])
        else:  # the last, partial range
            tree = Frontier(b, tree.nodes + nodes)
    report.workers = len(procs)
    return finish(report, start, end)
