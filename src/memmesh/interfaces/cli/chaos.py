"""``memmesh chaos`` and ``memmesh ship-gate``: the release proof, from the terminal.

Parsing and rendering only; the harness lives in :mod:`memmesh.chaos`.
"""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

import typer

from memmesh.interfaces.cli.context import JSON_OPTION, app, console, err_console, print_json

CHECK_FAILED = 3
"""Exit code of a run whose check failed (something acknowledged lost, a delete undone, digests
apart, a phase failed): distinct from 1, bad options or a harness that could not run."""


def _stop_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C, so the nodes it started are stopped and its tmpfs
    mounts unmounted instead of being left behind."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _progress(line: str) -> None:
    err_console.print(line, markup=False, highlight=False)


@app.command("chaos")
def chaos(
    fault: str = typer.Option(
        ...,
        "--fault",
        help="Comma list of kill_primary_mid_write, partition_minority, slow_peer, disk_full, clock_skew; a+b injects both in one cycle.",
    ),
    nodes: int = typer.Option(3, "--nodes", help="Nodes in the mesh (3 or more)."),
    quorum_writes: int = typer.Option(
        None,
        "--quorum-writes",
        help="W: nodes holding a write before its 201 (default a majority, N//2 + 1); at W = N a stale read fails the run.",
    ),
    combine: bool = typer.Option(False, "--combine", help="Inject all the --fault faults in the same cycle, each on its own node."),
    cycles: int = typer.Option(5, "--cycles", help="Fault cycles per fault class."),
    writes: int = typer.Option(50, "--writes", help="Writes per cycle (every 10th operation also deletes an acknowledged memory)."),
    clients: int = typer.Option(4, "--clients", help="Concurrent writing clients."),
    converge_timeout: float = typer.Option(60.0, "--converge-timeout", help="Seconds to wait for convergence after each heal."),
    disk_method: str = typer.Option(
        "auto", "--disk-method", help="disk_full by 'tmpfs' (a filled tmpfs per store), 'rlimit' (file-size limit) or 'auto'."
    ),
    workdir: Path = typer.Option(None, "--workdir", help="Where nodes, logs and chaos-cycles.jsonl go (default: a new temp dir)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Prove a mesh loses nothing: real nodes, quorum writes, a fault every cycle, then a check.

    Starts real nodes on 127.0.0.1, writes through the quorum, injects FAULT every cycle,
    heals, and checks that every acknowledged write is on every node. Fails if anything
    acknowledged is lost, a deleted memory came back, the nodes' digests differ or (at
    W = N) a read returned a value older than an acknowledged write (exit 3; 2 = bad options).
    """
    from memmesh.chaos.runner import ChaosConfig, run_chaos

    config = ChaosConfig(
        faults=[f.strip() for f in fault.split(",") if f.strip()],
        workdir=workdir or Path(tempfile.mkdtemp(prefix="memmesh-chaos-")),
        nodes=nodes,
        quorum_writes=quorum_writes,
        combine=combine,
        cycles=cycles,
        writes=writes,
        clients=clients,
        converge_timeout_s=converge_timeout,
        disk_method=disk_method,
    )
    _stop_on_sigterm()
    report = run_chaos(config, log=_progress)
    (config.workdir / "chaos-report.json").write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        print_json(report)
    else:
        s = report["summary"]
        for name, f in report["faults"].items():
            console.print(
                f"{name}: cycles {f['cycles']}  acked {f['writes_acked']}/{f['writes_attempted']}  lost {f['acked_lost']}  "
                f"bound {f['convergence_bound']:.3f}  converge p50 {f['time_to_converge_p50']}s p99 {f['time_to_converge_p99']}s  "
                f"reads {f['history']['reads_answered']} stale {f['history']['stale_reads']}",
                markup=False,
            )
        console.print(f"{'PASS' if s['pass'] else 'FAIL'}  report {config.workdir / 'chaos-report.json'}", markup=False)
        for reason in s["reasons"]:
            console.print(f"  {reason}", markup=False)
    if not report["summary"]["pass"]:
        raise typer.Exit(CHECK_FAILED)


@app.command("ship-gate")
def ship_gate(
    out: Path = typer.Option(..., "--out", help="Folder for phase1-<node>.json, phase2/3/4.json and summary.json."),
    quick: bool = typer.Option(False, "--quick", help="Phase 4 with 2 cycles x 30 writes per fault (minutes, not an hour)."),
    pg_url: str = typer.Option(
        None, "--pg-url", envvar="MEMMESH_SHIP_GATE_PG_URL", help="An empty PostgreSQL database for phase 3 (postgresql://…)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the four-phase release gate locally (functional, federation, migration, chaos).

    Writes one JSON report per phase and a summary; exits 3 unless every phase passes.
    """
    from memmesh.chaos.shipgate import run_ship_gate

    _stop_on_sigterm()
    summary = run_ship_gate(out, quick=quick, pg_url=pg_url, log=_progress)
    if as_json:
        print_json(summary)
    else:
        for name, phase in summary["phases"].items():
            console.print(f"{name}: {'PASS' if phase['pass'] else 'FAIL'}", markup=False)
            for reason in phase["reasons"]:
                console.print(f"  {reason}", markup=False)
        console.print(f"{'PASS' if summary['pass'] else 'FAIL'}  reports in {out}", markup=False)
    if not summary["pass"]:
        raise typer.Exit(CHECK_FAILED)
