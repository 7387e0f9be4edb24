"""``memmesh workers run|status``: supervise shard worker processes (memmesh.workers)."""

from __future__ import annotations

from pathlib import Path

import typer

from memmesh.interfaces.cli.context import JSON_OPTION, TextTable, app, console, print_json
from memmesh.workers.supervisor import Supervisor, load_config, read_status

workers_app = typer.Typer(help="Run and watch shard workers: restart with back-off, heartbeats, status.", no_args_is_help=True)
app.add_typer(workers_app, name="workers")

CONFIG = typer.Option(..., "--config", "-c", help="The workers TOML file (\\[supervisor] and \\[\\[worker]] entries).")


@workers_app.command("run")
def run(config: Path = CONFIG) -> None:
    """Start every worker and keep them running until SIGTERM / Ctrl-C (then stop them)."""
    supervisor = Supervisor(load_config(config))
    raise typer.Exit(supervisor.run())


@workers_app.command("status")
def status(config: Path = CONFIG, as_json: bool = JSON_OPTION) -> None:
    """Each worker's state; exit 1 when the supervisor is down or a worker has failed."""
    found = read_status(load_config(config).supervisor.status_file)  # type: ignore[arg-type]
    healthy = bool(found.get("running")) and not any(w.get("state") == "failed" for w in found.get("workers", []))
    if as_json:
        print_json({**found, "healthy": healthy})
    else:
        if found.get("error"):
            console.print(found["error"], markup=False)
        table = TextTable("worker", "state", "pid", "restarts", "last exit", "heartbeat age", "error")
        for w in found.get("workers", []):
            age = w.get("last_heartbeat_age_s")
            table.add_row(
                w["name"],
                w["state"],
                str(w.get("pid") or ""),
                str(w.get("restarts", 0)),
                str(w.get("last_exit") if w.get("last_exit") is not None else ""),
                f"{age:.1f} s" if age is not None else "",
                w.get("last_error") or "",
            )
        console.print(table)
    if not healthy:
        raise typer.Exit(1)
