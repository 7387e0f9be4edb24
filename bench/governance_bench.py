"""Governance benchmark: what the per-write standard check costs, and the approval path.

Through the public Python API on a keyword-only SQLite store (so the numbers are the
store's and the check's, not the embedder's), ``--writes`` single ``add`` calls each in:

- ``no_standard``: no standard anywhere (the check finds none: one indexed lookup);
- ``allow``: a standard on the parent namespace that allows writes (inheritance walked);
- ``mode_off``: ``governance.mode = off`` (no check at all; the baseline);

then, with ``write = approve``: queueing ``--writes`` writes (each answered with a pending
id) and approving them one by one (each applied through the write path). Prints a table and
writes JSON.

    python bench/governance_bench.py [--writes 500] [--out bench/results/governance.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.errors import PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL, Principal

WRITER = Principal(agent_id="bench-writer", role="writer", namespaces=["*"])


def open_memory(folder: Path, mode: str) -> Memory:
    settings = load_settings(
        None,
        overrides={"data_dir": str(folder), "embeddings": {"provider": "none"}, "governance": {"mode": mode}},
        env={"MEMMESH_CONFIG": ""},
    )
    return Memory(f"sqlite:///{folder / f'{mode}-{uuid.uuid4().hex[:6]}.db'}", settings)


def timed_writes(mem: Memory, n: int, namespace: str) -> list[float]:
    seconds = []
    for i in range(n):
        start = time.perf_counter()
        mem.service.add({"content": f"bench note {i} {uuid.uuid4().hex}", "namespace": namespace}, principal=WRITER)
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
        "per_second": round(len(ordered) / sum(ordered), 1),
    }


def run(writes: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, mode, standard in (("mode_off", "off", False), ("no_standard", "enforce", False), ("allow", "enforce", True)):
            with open_memory(folder, mode) as mem:
                if standard:
                    mem.service.governance.set_standard("team", governance={"write": "allow"}, principal=LOCAL_PRINCIPAL)
                timed_writes(mem, 20, "team/notes/warmup")
                results[label] = summary(timed_writes(mem, writes, "team/notes"))
        with open_memory(folder, "enforce") as mem:
            mem.service.governance.set_standard("team", governance={"write": "approve"}, principal=LOCAL_PRINCIPAL)
            ids, queue_s = [], []
            for i in range(writes):
                start = time.perf_counter()
                try:
                    mem.service.add({"content": f"queued {i} {uuid.uuid4().hex}", "namespace": "team/notes"}, principal=WRITER)
                except PendingApprovalError as queued:
                    ids.append(queued.details["pending_id"])
                queue_s.append(time.perf_counter() - start)
            approve_s = []
            for pending_id in ids:
                start = time.perf_counter()
                assert mem.service.governance.approve(pending_id, principal=LOCAL_PRINCIPAL).status == "applied"
                approve_s.append(time.perf_counter() - start)
            assert mem.stats().total == writes
            results["queue"] = summary(queue_s)
            results["approve"] = summary(approve_s)
    base = results["mode_off"]["p50_ms"]
    for label in ("no_standard", "allow"):
        results[label]["overhead_p50_pct"] = round((results[label]["p50_ms"] - base) / base * 100, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("bench/results/governance.json"))
    args = parser.parse_args()
    results = run(args.writes)
    print(f"{'case':<12} {'p50 ms':>8} {'p95 ms':>8} {'per s':>8} {'overhead':>9}")
    for label, row in results.items():
        overhead = f"{row['overhead_p50_pct']:+.1f}%" if "overhead_p50_pct" in row else ""
        print(f"{label:<12} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['per_second']:>8} {overhead:>9}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "governance", "at": datetime.now(UTC).isoformat(), "python": platform.python_version(), "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
