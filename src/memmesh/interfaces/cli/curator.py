"""``memmesh curator run|rollback|runs``: reversible housekeeping of the store.

Only parsing and rendering: what a run changes, how it is recorded and put back, and every
check (``--max-ops`` at least 1, an unknown run) are the curator core's (``service.curator``).
"""

from __future__ import annotations

import typer
from rich.table import Table

from memmesh.curator import CuratorReport, RollbackReport
from memmesh.interfaces.cli.context import JSON_OPTION, app, console, id_column, print_json, state
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.wording import count

curator_app = typer.Typer(
    help="The curator: consolidate near-duplicates, link contradictions, auto-tag, forget by policy, adjust priority; "
    "every run can be rolled back.",
    no_args_is_help=True,
)
app.add_typer(curator_app, name="curator")


@curator_app.command("run")
def run(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would change; change nothing (the run is still recorded)."),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Curate only this namespace (and those below it)."),
    max_ops: int = typer.Option(None, "--max-ops", help="Most writes this run makes (default: \\[curator] max_ops); at least 1."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the curator once and print its report (as JSON with --json; fields in docs/curator.md)."""
    service = state.dry_run_service() if dry_run else state.service()
    report = service.curator.run(dry_run=dry_run, namespace=namespace, max_ops=max_ops, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(report)
        return
    _report_lines(report)


@curator_app.command("rollback")
def rollback(
    run_id: str = typer.Argument(..., help="The run to undo (its run_id; see `memmesh curator runs`)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Put back exactly what a curator run changed."""
    report = state.service().curator.rollback(run_id, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(report)
        return
    _rollback_lines(report)


@curator_app.command("runs")
def runs(
    limit: int = typer.Option(20, "--limit", help="At most this many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List recorded curator runs."""
    found = state.service().curator.runs(limit=limit, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    table = Table("started", "dry run", "namespace", "writes", "rolled back")
    id_column(table, [r.id for r in found], "run id")
    for r in found:
        table.add_row(
            r.started_at.isoformat(timespec="seconds"),
            "yes" if r.dry_run else "no",
            r.namespace or "(all)",
            str(r.report.get("operations_attempted", "")),
            r.rolled_back_at.isoformat(timespec="seconds") if r.rolled_back_at else "",
            r.id,
        )
    console.print(table)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def _report_lines(report: CuratorReport) -> None:
    a = report.autonomy
    _say(f"curator run {report.run_id}{' (dry run: nothing changed)' if report.dry_run else ''}")
    _say(f"  scanned {report.memories_scanned}, eligible {report.memories_eligible}, in {report.cycle_duration_ms} ms")
    _say(f"  duplicate clusters {a.clusters_formed}, consolidated {a.memories_consolidated}")
    _say(f"  contradictions {report.contradictions_found}, auto-tagged {report.auto_tagged}")
    _say(f"  forgotten {a.memories_forgotten}, priority adjustments {a.priority_adjustments}")
    _say(f"  writes {report.operations_attempted}, skipped by --max-ops {report.operations_skipped_cap}")
    for error in [*report.errors, *a.errors]:
        _say(f"  note: {error}")
    if not report.dry_run and report.operations_attempted:
        _say(f"  undo with: memmesh curator rollback {report.run_id}")


def _rollback_lines(report: RollbackReport) -> None:
    _say(f"curator run {report.run_id} rolled back: {count(report.restored, 'change')} put back")
    for conflict in report.conflicts:
        _say(f"  kept: {conflict}")
