"""How long a ``memmesh`` command takes from start to exit, most of it loading Python.

Every CLI call is a new process, so what it imports before doing its work is paid on every
call (an agent's hook that runs ``memmesh recall`` on each prompt pays it each time). Each
command below runs ``--runs`` times in a fresh process against a small SQLite store (one
memory, embeddings off so that only start-up is measured; ``recall`` is keyword-only there),
alternating commands so a change of machine speed hits them all alike; the median and the
fastest run are reported, and the time of ``python -c pass`` as the floor.

    python bench/cli_startup.py [--runs 15] [--out bench/results/cli_startup.json]

Compare versions in one run: ``--src A/src B/src`` alternates them run by run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "memmesh --version": ["-m", "memmesh.interfaces.cli.app", "--version"],
    "memmesh get ID": ["-m", "memmesh.interfaces.cli.app", "get", "{id}"],
    "memmesh list": ["-m", "memmesh.interfaces.cli.app", "list", "-n", "demo"],
    "memmesh recall": ["-m", "memmesh.interfaces.cli.app", "recall", "tuna", "-n", "demo"],
    "memmesh stats": ["-m", "memmesh.interfaces.cli.app", "stats"],
    "memmesh bus --help": ["-m", "memmesh.interfaces.cli.app", "bus", "--help"],
}


def environment(src: Path, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memmesh.toml").write_text("", encoding="utf-8")  # no user config file applies
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        PYTHONPATH=str(src),
        MEMMESH_DB=str(folder / "cli.db"),
        MEMMESH_DATA_DIR=str(folder),
        MEMMESH_CONFIG=str(folder / "memmesh.toml"),
        MEMMESH_EMBEDDINGS_PROVIDER="none",
    )
    return env


def seed(env: dict[str, str]) -> str:
    """One memory to get, list and recall; its id."""
    command = [sys.executable, "-m", "memmesh.interfaces.cli.app", "store", "the cat likes tuna", "-n", "demo", "--json"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return str(json.loads(out)["id"])


def measure(srcs: list[Path], runs: int) -> dict[str, dict[str, dict[str, float]]]:
    """Median and fastest milliseconds of each command, by src folder."""
    with tempfile.TemporaryDirectory() as tmp:
        envs = {src: environment(src, Path(tmp) / str(i)) for i, src in enumerate(srcs)}
        ids = {src: seed(env) for src, env in envs.items()}
        times: dict[Path, dict[str, list[float]]] = {src: {name: [] for name in COMMANDS} for src in srcs}
        for _ in range(runs):
            for name, args in COMMANDS.items():
                for src, env in envs.items():
                    command = [sys.executable, *(a.format(id=ids[src]) for a in args)]
                    start = time.perf_counter()
                    subprocess.run(command, env=env, capture_output=True, check=True)
                    times[src][name].append(time.perf_counter() - start)
    return {
        str(src): {name: {"median_ms": round(statistics.median(t) * 1000), "min_ms": round(min(t) * 1000)} for name, t in rows.items()}
        for src, rows in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--src", type=Path, nargs="+", default=[ROOT / "src"], help="src folders of the memmesh versions to measure")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cli_startup.json", help="JSON output path")
    args = parser.parse_args()
    results = measure([src.resolve() for src in args.src], args.runs)
    width = max(len(name) for name in COMMANDS)
    for src, rows in results.items():
        print(f"{src}\n{'command':<{width}}  median ms  fastest ms")
        for name, row in rows.items():
            print(f"{name:<{width}}  {row['median_ms']:>9}  {row['min_ms']:>10}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = {"runs": args.runs, "load_1min": load, "machine": platform.machine(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"load average {load}; written to {args.out}")


if __name__ == "__main__":
    main()
