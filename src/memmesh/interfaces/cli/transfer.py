"""export / import in memmesh's JSON Lines format, with progress bars."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.progress import Progress

from memmesh.errors import InvalidInputError
from memmesh.interfaces.cli.context import JSON_OPTION, app, console, err_console, print_json, state
from memmesh.io.jsonl import count_exportable, export_lines, import_records, parse_lines


@app.command("export")
def export(
    out: Path = typer.Option(None, "--out", "-o", help="File to write (default: stdout)."),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Only this namespace and below."),
) -> None:
    """Write every memory (with history) and link as JSON Lines: a lossless copy."""
    service = state.service()
    handle = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        with Progress(console=err_console, disable=out is None, transient=True) as bar:
            task = bar.add_task("exporting", total=count_exportable(service))
            for line in export_lines(service, namespace):
                handle.write(line + "\n")
                if line.startswith('{"type": "memory"'):
                    bar.advance(task)
    finally:
        if out:
            handle.close()
    if out:
        err_console.print(f"exported to {out}")


@app.command("import")
def import_(
    source: Path = typer.Argument(..., help="A memmesh JSON Lines export ('-' for stdin)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and count; write nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Import a JSON Lines export; every line is checked first, and a re-import writes nothing."""
    if str(source) == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from None
    records = parse_lines(lines)
    with Progress(console=err_console, disable=as_json, transient=True) as bar:
        task = bar.add_task("importing", total=len(records))
        report = import_records(state.service(), records, dry_run=dry_run, progress=lambda n: bar.advance(task, n))
    if as_json:
        print_json(report)
    else:
        console.print(f"{report.memories_written} memories and {report.links_written} links written, "
                      f"{report.memories_skipped + report.links_skipped} already present" + (" (dry run)" if dry_run else ""))
