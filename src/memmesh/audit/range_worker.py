"""Check one range of a SQLite audit log in a separate process (``audit verify`` of a large log).

Each link of the chain can be checked from the stored hashes alone (``hash[i]`` must equal
``sha256(hash[i-1] || canonical(entry i))``, and ``hash[i-1]`` is in row ``i-1``), and the
RFC 6962 tree splits at multiples of a power of two, so a long log is verified by several
processes at once, each over its own range (:mod:`memmesh.audit.parallel` splits and joins).

Run as a script (``python -I range_worker.py``), not imported by the package: it uses the
standard library only, so a worker starts in tens of milliseconds instead of importing
memmesh (seconds on a loaded machine), and no process is forked from a threaded server.
Arguments are one JSON object on stdin; the answer is one JSON object on stdout:

- ``ok``: every row of ``[start, end)`` is present, in order, and matches its hash;
- ``nodes``: the compact range of the range's leaves appended to ``frontier`` (hex), at the
  end, and ``at``: the same at each size in ``sizes`` (the checkpoints inside the range).

Rows are checked by :class:`memmesh.audit.walk.ChainWalk`, the same loop as the one-process
pass (a stdlib-only module, loaded from this directory so the script imports nothing from
memmesh); ``tests/audit/test_parallel_verify.py`` holds the two passes to the same result, and
any disagreement makes the caller fall back to the one-process pass, never to a wrong verdict.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__:  # imported as memmesh.audit.range_worker (type checkers, tests)
    from memmesh.audit.walk import ChainWalk
else:  # run as a script: load the sibling stdlib-only module without importing memmesh
    sys.path.append(str(Path(__file__).resolve().parent))
    from walk import ChainWalk  # type: ignore[import-not-found,no-redef]

FETCH = 20_000


def check_range(path: str, start: int, end: int, prev_hex: str | None, frontier: list[str], base: int, sizes: list[int]) -> dict[str, Any]:
    """Verify rows ``[start, end)`` of the log at ``path``; see the module docstring.

    ``prev_hex`` is the hash before ``start`` (None: read it from row ``start - 1``, which
    the range before checks), ``frontier`` the compact range of ``base`` leaves the range's
    leaves are appended to: the real tree before ``start`` for the first range, an empty one
    (``base`` 0) for a range that starts at a multiple of a power of two at least its length,
    whose nodes then simply follow the nodes of the tree before it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = 1")  # it only reads (a WAL reader never blocks the writer)
        conn.execute("BEGIN")
        if prev_hex is None:
            found = conn.execute("SELECT hash FROM audit_log WHERE idx = ?", (start - 1,)).fetchone()
            if found is None or not isinstance(found[0], str):
                return {"ok": False, "nodes": [], "at": {}}
            prev_hex = found[0]
        try:
            prev = bytes.fromhex(prev_hex)
        except ValueError:
            return {"ok": False, "nodes": [], "at": {}}
        walk = ChainWalk(prev, [bytes.fromhex(n) for n in frontier], base, start)
        cursor = conn.execute(
            "SELECT idx, at, actor, action, namespace, target, detail, hash FROM audit_log WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        at = {str(size): [x.hex() for x in walk.nodes] for size in walk.run(_pages(cursor), stops=set(sizes))}
        if walk.failure is not None or walk.expected != end:
            return {"ok": False, "nodes": [], "at": {}}
        return {"ok": True, "nodes": [x.hex() for x in walk.nodes], "at": at}
    finally:
        conn.close()


def _pages(cursor: sqlite3.Cursor) -> Iterator[Any]:
    """The rows of ``cursor``, read a page at a time (a range is up to millions of rows)."""
    while page := cursor.fetchmany(FETCH):
        yield from page


def main() -> None:
    """One range: arguments as JSON on stdin, the answer as JSON on stdout."""
    args = json.load(sys.stdin)
    result = check_range(args["path"], args["start"], args["end"], args["prev"], args["frontier"], args["base"], args["sizes"])
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
