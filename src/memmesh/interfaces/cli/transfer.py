"""export (memmesh JSON Lines) and import (that, or another memory store's files and tables), with progress bars."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from memmesh.errors import InvalidInputError, MemmeshError
from memmesh.interfaces.cli.context import JSON_OPTION, app, console, counting_progress, err_console, print_json, printable, state
from memmesh.io.importers import LegacyTable, detect_format
from memmesh.io.importers.reports import ImportReport
from memmesh.model import LOCAL_PRINCIPAL, Principal
from memmesh.service import Service
from memmesh.transfer import ImportOptions, Transfer, read_import_file
from memmesh.wording import count


def stops_cleanly_on_ctrl_c(command: Callable[..., None]) -> Callable[..., None]:
    """Run a whole command inside :func:`interrupted_import` (reading and checking the
    source included), keeping its signature for Typer."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        with interrupted_import():
            command(*args, **kwargs)

    return run


@contextmanager
def interrupted_import() -> Iterator[None]:
    """Ctrl-C during an import: one line and exit 130, not a traceback. Each batch is one
    transaction, so what was committed is whole and what was not is absent; running the same
    import again (idempotent) finishes it."""
    asked = threading.Event()  # Ctrl-C inside a SQL function surfaces as a storage error
    previous = signal.getsignal(signal.SIGINT)

    def on_ctrl_c(signum: int, frame: Any) -> None:
        asked.set()
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    except (KeyboardInterrupt, MemmeshError) as exc:
        if isinstance(exc, MemmeshError) and not asked.is_set():
            raise
        err_console.print(
            "import interrupted (Ctrl-C): every batch written so far is complete, nothing is half-written; "
            "run the same command again to finish (it skips what is already there)",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130) from None
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)


@app.command("export")
def export(
    out: Path = typer.Option(None, "--out", "-o", help="File to write (default: stdout)."),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Only this namespace and below."),
) -> None:
    """Write every memory (with history) and link as JSON Lines: a lossless copy.

    A file is written whole or not at all (an interrupted export leaves no partial file)."""
    transfer = state.service().transfer
    if out is not None:
        transfer.check_export_target(out)
    with counting_progress(out is None) as bar:
        task = bar.add_task("exporting", total=transfer.count_exportable(principal=LOCAL_PRINCIPAL))
        if out is None:
            for line in transfer.export_lines(namespace, principal=LOCAL_PRINCIPAL):
                sys.stdout.write(line + "\n")
            return
        transfer.export(out, namespace, progress=lambda n: bar.advance(task, n), principal=LOCAL_PRINCIPAL)
    err_console.print(f"exported to {out}")


class ImportFormat(StrEnum):
    auto = "auto"
    jsonl = "jsonl"
    mcp_memory = "mcp-memory"
    mem0 = "mem0"
    mem0_history = "mem0-history"
    sql = "sql"
    basic_memory = "basic-memory"


@app.command("import")
@stops_cleanly_on_ctrl_c
def import_(
    source: str = typer.Argument(
        ...,
        help="A file ('-' for stdin); a database URL for --format sql (sqlite:///…, postgresql://…); a folder for basic-memory.",
    ),
    fmt: ImportFormat = typer.Option(ImportFormat.auto, "--format", "-f", help="Source format (auto: from the URL or the content)."),
    namespace: str = typer.Option(
        None,
        "--namespace",
        "-n",
        help=(
            "Target namespace (mcp-memory: mcp; basic-memory: basic-memory; mem0: base, default mem0; "
            "sql: the one namespace when there is no --tenant-col)."
        ),
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and count; write nothing."),
    tier: str = typer.Option("long", "--tier", help="Tier of imported memories (not jsonl, which keeps its own)."),
    spot: int = typer.Option(3, "--spot-check", min=0, max=1000, help="Recall this many imported records afterwards to check them."),
    table: str = typer.Option(None, "--table", help="sql: the legacy table (schema.table allowed)."),
    id_col: str = typer.Option("id", "--id-col", help="sql: the row id column (ids become legacy:<table>:<namespace digest>:<id>)."),
    content_col: str = typer.Option("content", "--content-col", help="sql: the memory text column."),
    tenant_col: str = typer.Option(None, "--tenant-col", help="sql: the tenant column (one namespace per tenant)."),
    namespace_template: str = typer.Option("workspace:{tenant}", "--namespace-template", help="sql: namespace of a tenant's rows."),
    kind: str = typer.Option("fact", "--kind", help="sql: kind of the memories."),
    written_by: str = typer.Option("import", "--source", help="sql: the memories' source (who wrote them), e.g. agent."),
    mark_col: str = typer.Option(None, "--mark-col", help="sql: column set to the migration time on migrated rows (skipped next time)."),
    add_mark_column: bool = typer.Option(
        False, "--add-mark-column", help="sql: create the mark column (--mark-col, default migrated_at) when the table lacks it."
    ),
    check_only: bool = typer.Option(False, "--check-only", help="sql: report what would happen; change nothing anywhere."),
    id_prefix: str = typer.Option(None, "--id-prefix", help="sql: id prefix instead of legacy:<table>."),
    batch_size: int = typer.Option(500, "--batch-size", min=1, max=100_000, help="sql: rows per read and per write."),
    key: str = typer.Option(None, "--key", help="Import as this API key: records outside its namespaces are rejected (counted as failed)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Import memories from a file or database, idempotently: a re-run writes nothing.

    Formats: memmesh's own JSON Lines export, the MCP memory server's memory.jsonl, mem0's
    exported memories JSON or its history db, a basic-memory project folder, or a legacy SQL
    table (per-tenant report).
    Exits 1 when any record failed (the report lists each with its reason).
    """
    sql_given = [
        name
        for name, value, default in (
            ("--table", table, None),
            ("--tenant-col", tenant_col, None),
            ("--mark-col", mark_col, None),
            ("--check-only", check_only, False),
            ("--add-mark-column", add_mark_column, False),
            ("--id-prefix", id_prefix, None),
            ("--id-col", id_col, "id"),
            ("--content-col", content_col, "content"),
            ("--namespace-template", namespace_template, "workspace:{tenant}"),
            ("--kind", kind, "fact"),
            ("--source", written_by, "import"),
        )
        if value != default
    ]
    state.name_flags()  # an option that does not apply to the source is a usage error of this command
    text = _TextSource(source)
    chosen = fmt.value if fmt is not ImportFormat.auto else detect_format(source, table=table, read_text=text.read)
    if chosen != "sql" and sql_given:
        verb = "applies" if len(sql_given) == 1 else "apply"
        raise InvalidInputError(f"{', '.join(sql_given)} only {verb} to --format sql (this source is {chosen})", usage=True)
    if chosen == "jsonl":
        if key is not None:
            raise InvalidInputError(
                "--key does not apply to a memmesh JSON Lines restore: it restores every namespace as it was", usage=True
            )
        if namespace:
            raise InvalidInputError(
                "--namespace does not apply to a memmesh JSON Lines import: it restores each memory's namespace", usage=True
            )
        _import_jsonl(text, dry_run, as_json)
        return
    spec = LegacyTable(
        url=source,
        table=table or "",
        id_col=id_col,
        content_col=content_col,
        tenant_col=tenant_col,
        namespace_template=namespace_template,
        namespace=namespace,
        kind=kind,
        source=written_by,
        tier=tier,
        mark_col=mark_col,
        id_prefix=id_prefix,
        add_mark_col=add_mark_column,
    )
    options = ImportOptions(
        format=chosen,
        namespace=namespace,
        tier=tier,
        dry_run=dry_run,
        sample=spot,
        check_only=check_only,
        batch_size=batch_size,
        legacy=spec,
    )

    def run(service: Service, read_only: bool, progress: Callable[[int], None], principal: Principal) -> ImportReport:
        """One pass of the chosen importer (``read_only``: a dry run, for real or as a rehearsal)."""
        chosen_options = replace(options, dry_run=read_only)
        return service.transfer.import_source(source, chosen_options, read_text=text.read, progress=progress, principal=principal)  # type: ignore[return-value]

    if key is not None:  # the key lives in the store, so the store must exist already
        service = state.service()
        principal = service.authenticate(key, require=True)
    elif dry_run or check_only:
        service, principal = state.dry_run_service(), LOCAL_PRINCIPAL
    else:  # a new store is made only after a read-only rehearsal shows the source can be imported
        service = state.writing_service(rehearse=lambda stand_in: run(stand_in, True, lambda n: None, LOCAL_PRINCIPAL))
        principal = LOCAL_PRINCIPAL
    with counting_progress(as_json or not err_console.is_terminal) as bar:
        task = bar.add_task("importing" + (" (dry run)" if dry_run or check_only else ""), total=None)
        report = run(service, dry_run, lambda n: bar.advance(task, n), principal)
    if as_json:
        print_json(report)
    else:
        render_import_report(report)
    if report.totals.failed:
        raise typer.Exit(1)


class _TextSource:
    """A text source read once, on first need ('-' is stdin)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._text: str | None = None

    def read(self) -> str:
        if self._text is None:
            if self.source == "-":
                self._text = sys.stdin.read()
            else:
                self._text = read_import_file(Path(self.source), self.source)
        return self._text


def _import_jsonl(text: _TextSource, dry_run: bool, as_json: bool) -> None:
    records = Transfer.parse_jsonl(text.read())
    with counting_progress(as_json) as bar:
        task = bar.add_task("importing", total=len(records))
        # A real import is rehearsed on an empty stand-in first: a record that would be refused creates no store.
        service = (
            state.dry_run_service()
            if dry_run
            else state.writing_service(rehearse=lambda stand_in: stand_in.transfer.import_jsonl(records, principal=LOCAL_PRINCIPAL))
        )
        report = service.transfer.import_jsonl(records, dry_run=dry_run, progress=lambda n: bar.advance(task, n), principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(report)
    else:
        console.print(
            f"{count(report.memories_written, 'memory')} and {count(report.links_written, 'link')} written, "
            f"{report.memories_skipped + report.links_skipped} already present" + (" (dry run)" if dry_run else "")
        )


def render_import_report(report: ImportReport) -> None:
    """The per-tenant table, totals, skip reasons, failures and the spot check, for people."""
    title = f"import {report.format} from {report.source}" + (" (dry run: nothing written)" if report.dry_run else "")
    table = Table(title=Text(printable(title)))  # a file name or tenant is text, not markup ("notes[old].json")
    for column in ("tenant", "namespace", "migrated", "skipped", "failed"):
        table.add_column(column, justify="right" if column in ("migrated", "skipped", "failed") else "left")
    for row in report.tenants:
        table.add_row(Text(printable(row.tenant or "-")), row.namespace or "-", str(row.migrated), str(row.skipped), str(row.failed))
    t = report.totals
    table.add_row("[bold]total[/]", "", f"[bold]{t.migrated}[/]", f"[bold]{t.skipped}[/]", f"[bold]{t.failed}[/]")
    console.print(table)
    for change in report.source_changes:
        console.print(change, markup=False, highlight=False)
    verb = "would write" if report.dry_run else "wrote"
    console.print(
        f"{verb}: {t.added} added, {t.updated} updated, {t.deleted} deleted, {count(t.links_written, 'link')}"
        + (f" ({count(t.links_skipped, 'link')} skipped)" if t.links_skipped else "")
    )
    for reason, times in report.skipped_reasons.items():
        console.print(f"skipped {times}: {reason}", markup=False, highlight=False)
    for failure in report.failures[:50]:
        err_console.print(
            f"failed {failure.id}" + (f" (tenant {failure.tenant})" if failure.tenant else "") + f": {failure.reason}",
            markup=False,
            highlight=False,
        )
    if len(report.failures) > 50:
        err_console.print(f"… and {count(len(report.failures) - 50, 'more failure')} (use --json for all)")
    if report.spot_check is not None and report.spot_check.sampled:
        check = report.spot_check
        console.print(
            f"spot check: recalled {check.found} of {check.sampled} sampled records"
            + (f"; not found: {', '.join(check.missing)}" if check.missing else ""),
            markup=False,
            highlight=False,
        )
