"""Issue 16: the audit overhead benchmark's figures are what its docs say they are.

``bench/audit_bench.py --only overhead`` is how the ≤ 10 % target is judged (docs/benchmarks.md):
a short real run (two SQLite stores, write-by-write turns) must report the median per-pair
ratio inside its own interquartile range and 95 % interval, the ratio of the means with a
bootstrap interval, and per-block CPU that the reported figures can be recomputed from.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "audit_bench.py"


def test_overhead_bench_reports_median_iqr_and_intervals_it_can_be_checked_against(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--only", "overhead", "--writes", "60", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "block pairs of 1 writes: median" in done.stdout
    found = json.loads(out.read_text())["results"]["overhead"][0]
    assert found["block_writes"] == 1 and found["blocks_each"] == 60
    blocks = found["thread_cpu_us_per_block"]
    assert len(blocks["audited"]) == len(blocks["plain"]) == 60
    pairs = [100 * (a / p - 1) for a, p in zip(blocks["audited"], blocks["plain"], strict=True)]
    assert abs(statistics.median(pairs) - found["overhead_thread_cpu_pair_median_pct"]) < 0.1  # (per-block CPU is rounded in the JSON)
    median = found["overhead_thread_cpu_pair_median_pct"]
    assert found["overhead_thread_cpu_pair_q1_pct"] <= median <= found["overhead_thread_cpu_pair_q3_pct"]
    low, high = found["overhead_thread_cpu_pair_median_ci95_pct"]
    assert low <= median <= high
    assert found["overhead_thread_cpu_pair_iqr_pct"] >= 0
    mean_low, mean_high = found["overhead_thread_cpu_mean_ratio_ci95_pct"]
    assert mean_low <= mean_high  # (a bootstrap interval need not hold its point estimate: not asserted)
    total = 100 * (sum(blocks["audited"]) / sum(blocks["plain"]) - 1)
    assert abs(total - found["overhead_thread_cpu_mean_ratio_pct"]) < 0.5
