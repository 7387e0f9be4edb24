"""Every benchmark under ``bench/`` still starts: ``--help`` imports the whole script.

Benchmarks run by hand, not in CI, so an import broken by a refactor went unseen:
``bench/import_bench.py`` imported ``ImportReport`` from where it no longer lived and could
not start for sessions. Importing each script (as ``--help`` does) keeps them runnable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_a_benchmark_script_starts(script: str) -> None:
    run = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120, cwd=BENCH.parent)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage:" in run.stdout, run.stdout[:500]
