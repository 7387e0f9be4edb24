"""The bus and workers part of ``/metrics``: open conversations, tasks by state (the dead
letters among them) and, when ``bus.workers_status_file`` names a supervisor's status file,
each worker's state and restarts. Store-wide numbers, so only for callers that see the
whole store."""

from __future__ import annotations

from memmesh.model import Principal
from memmesh.service import Service
from memmesh.workers.supervisor import read_status

STATES = ("running", "backoff", "failed", "exited", "stopped")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def bus_metrics(service: Service, who: Principal) -> bytes:
    """Prometheus text lines (empty for a namespace-limited caller)."""
    if who.prefixes() is not None:
        return b""
    counts = service.bus.counts()
    lines = [
        "# HELP memmesh_bus_conversations_open Conversations not archived",
        "# TYPE memmesh_bus_conversations_open gauge",
        f"memmesh_bus_conversations_open {counts['conversations_open']}",
        "# HELP memmesh_bus_tasks Queue tasks by state (dead = the dead-letter list)",
        "# TYPE memmesh_bus_tasks gauge",
        *(f'memmesh_bus_tasks{{state="{s}"}} {counts[f"tasks_{s}"]}' for s in ("ready", "leased", "done", "dead")),
    ]
    path = service.bus.policy.workers_status_file
    if path is not None:
        status = read_status(path)
        workers = status.get("workers", [])
        lines += [
            "# HELP memmesh_workers_supervisor_up 1 when `memmesh workers run` is running",
            "# TYPE memmesh_workers_supervisor_up gauge",
            f"memmesh_workers_supervisor_up {1 if status.get('running') else 0}",
            "# HELP memmesh_workers Supervised workers by state (failed = past the restart intensity limit)",
            "# TYPE memmesh_workers gauge",
            *(f'memmesh_workers{{state="{s}"}} {sum(1 for w in workers if w.get("state") == s)}' for s in STATES),
            "# HELP memmesh_worker_restarts Restarts of each supervised worker",
            "# TYPE memmesh_worker_restarts gauge",
            *(f'memmesh_worker_restarts{{worker="{_label(w["name"])}"}} {int(w.get("restarts", 0))}' for w in workers),
            "# HELP memmesh_worker_failed 1 when the worker was given up after too many restarts",
            "# TYPE memmesh_worker_failed gauge",
            *(f'memmesh_worker_failed{{worker="{_label(w["name"])}"}} {1 if w.get("state") == "failed" else 0}' for w in workers),
        ]
    return ("\n".join(lines) + "\n").encode()
